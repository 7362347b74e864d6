//! The moderation decision of a fused record: `allow`, `review` or `block`, with every reason
//! that contributed. Configured in `[moderation]`.

use mediasift_core::ModerationConfig;
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    Allow,
    Review,
    Block,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Review => "review",
            Decision::Block => "block",
        }
    }
}

/// One reason for a decision.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Reason {
    pub decision: Decision,
    /// `nsfw`, `blocked_term`, `label`, `partial`.
    pub rule: &'static str,
    pub detail: String,
}

/// What the policy looks at.
#[derive(Debug, Clone, Default)]
pub struct Evidence<'a> {
    pub nsfw: Option<f64>,
    /// (where the text came from, text)
    pub texts: Vec<(&'a str, &'a str)>,
    pub labels: Vec<&'a str>,
    /// Modalities that failed or never reported.
    pub missing: Vec<String>,
}

pub fn decide(policy: &ModerationConfig, e: &Evidence<'_>) -> (Decision, Vec<Reason>) {
    let mut reasons = Vec::new();
    if let Some(score) = e.nsfw {
        if score >= policy.nsfw_block {
            reasons.push(Reason {
                decision: Decision::Block,
                rule: "nsfw",
                detail: format!("NSFW score {score:.3} >= {}", policy.nsfw_block),
            });
        } else if score >= policy.nsfw_review {
            reasons.push(Reason {
                decision: Decision::Review,
                rule: "nsfw",
                detail: format!("NSFW score {score:.3} >= {}", policy.nsfw_review),
            });
        }
    }
    for term in &policy.blocked_terms {
        for (source, text) in &e.texts {
            if contains_word(text, term) {
                reasons.push(Reason {
                    decision: Decision::Block,
                    rule: "blocked_term",
                    detail: format!("{term:?} in {source}"),
                });
            }
        }
    }
    for label in &policy.review_labels {
        if e.labels.iter().any(|l| l.eq_ignore_ascii_case(label)) {
            reasons.push(Reason {
                decision: Decision::Review,
                rule: "label",
                detail: format!("labelled {label:?}"),
            });
        }
    }
    if policy.review_partial && !e.missing.is_empty() {
        reasons.push(Reason {
            decision: Decision::Review,
            rule: "partial",
            detail: format!("no result for {}", e.missing.join(", ")),
        });
    }
    let decision = reasons
        .iter()
        .map(|r| r.decision)
        .max()
        .unwrap_or(Decision::Allow);
    (decision, reasons)
}

/// Case-insensitive whole-word (or whole-phrase) match.
fn contains_word(text: &str, term: &str) -> bool {
    let term = term.trim().to_lowercase();
    if term.is_empty() {
        return false;
    }
    let text = text.to_lowercase();
    let is_word = |c: char| c.is_alphanumeric() || c == '\'';
    text.match_indices(&term).any(|(i, m)| {
        let before = text[..i].chars().next_back().is_none_or(|c| !is_word(c));
        let after = text[i + m.len()..]
            .chars()
            .next()
            .is_none_or(|c| !is_word(c));
        before && after
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strongest_reason_wins_and_every_reason_is_kept() {
        let policy = ModerationConfig {
            blocked_terms: vec!["wizard".into()],
            review_labels: vec!["revolver".into()],
            ..ModerationConfig::default()
        };
        let e = Evidence {
            nsfw: Some(0.6),
            texts: vec![("transcript", "Seem to complain against the Wizard.")],
            labels: vec!["Revolver"],
            missing: vec![],
        };
        let (d, reasons) = decide(&policy, &e);
        assert_eq!(d, Decision::Block);
        let rules: Vec<_> = reasons.iter().map(|r| r.rule).collect();
        assert_eq!(rules, ["nsfw", "blocked_term", "label"]);
        // Whole words only: "wizardry" is not "wizard".
        let e = Evidence {
            texts: vec![("ocr", "wizardry")],
            ..Evidence::default()
        };
        assert_eq!(decide(&policy, &e).0, Decision::Allow);
        let e = Evidence {
            missing: vec!["audio".into()],
            ..Evidence::default()
        };
        assert_eq!(decide(&policy, &e).0, Decision::Review);
    }
}
