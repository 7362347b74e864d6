//! Whisper's special tokens, language tokens and the tokens it must never emit.

use std::collections::BTreeSet;

use serde_json::Value;
use tokenizers::Tokenizer;

/// Ids of the special tokens, looked up in the tokenizer (English-only and multilingual models
/// number them differently).
#[derive(Debug, Clone)]
pub struct SpecialTokens {
    pub eot: u32,
    pub sot: u32,
    pub sot_prev: u32,
    pub sot_lm: u32,
    pub no_speech: u32,
    pub transcribe: u32,
    pub translate: u32,
    pub no_timestamps: u32,
    /// `<|0.00|>`; timestamps run to the end of the vocabulary in 20 ms steps.
    pub timestamp_begin: u32,
    pub timestamp_end: u32,
    /// (code, token id) of every language the model knows; empty for English-only models.
    pub languages: Vec<(String, u32)>,
    /// Never sampled: non-speech symbols from the config plus the task tokens.
    pub suppress: Vec<u32>,
    /// Not sampled as the first token (a blank, end of text).
    pub suppress_begin: Vec<u32>,
}

impl SpecialTokens {
    pub fn new(tokenizer: &Tokenizer, config: &Value, vocab_size: usize) -> Result<Self, String> {
        let id = |t: &str| {
            tokenizer
                .token_to_id(t)
                .ok_or_else(|| format!("the tokenizer has no {t} token"))
        };
        let no_speech = id("<|nospeech|>").or_else(|_| id("<|nocaptions|>"))?;
        let no_timestamps = id("<|notimestamps|>")?;
        let ids = |key: &str| -> Vec<u32> {
            config
                .get(key)
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_u64)
                        .filter_map(|v| u32::try_from(v).ok())
                        .collect()
                })
                .unwrap_or_default()
        };
        let eot = id("<|endoftext|>")?;
        let sot = id("<|startoftranscript|>")?;
        // English-only models have no language tokens in their vocabulary's special range.
        let multilingual = vocab_size >= 51865;
        let (transcribe, translate) = (id("<|transcribe|>")?, id("<|translate|>")?);
        let mut lang_ids = ids("lang_ids");
        if lang_ids.is_empty() {
            // Hugging Face checkpoints list them in generation_config.json only; in every
            // multilingual vocabulary they sit between <|startoftranscript|> and <|translate|>.
            lang_ids = (sot + 1..translate.min(transcribe)).collect();
        }
        let languages = if multilingual {
            lang_ids
                .into_iter()
                .filter_map(|i| {
                    let tok = tokenizer.id_to_token(i)?;
                    let code = tok.strip_prefix("<|")?.strip_suffix("|>")?.to_string();
                    Some((code, i))
                })
                .collect()
        } else {
            Vec::new()
        };
        let (sot_prev, sot_lm) = (id("<|startofprev|>")?, id("<|startoflm|>")?);
        let mut suppress: BTreeSet<u32> = ids("suppress_tokens").into_iter().collect();
        suppress.extend([transcribe, translate, sot, sot_prev, sot_lm, no_speech]);
        let mut suppress_begin = ids("begin_suppress_tokens");
        if suppress_begin.is_empty() {
            suppress_begin = vec![id("Ġ").unwrap_or(220), eot];
        }
        let vocab = u32::try_from(vocab_size).map_err(|e| e.to_string())?;
        Ok(SpecialTokens {
            eot,
            sot,
            sot_prev,
            sot_lm,
            no_speech,
            transcribe,
            translate,
            no_timestamps,
            timestamp_begin: no_timestamps + 1,
            timestamp_end: vocab - 1,
            languages,
            suppress: suppress.into_iter().collect(),
            suppress_begin,
        })
    }

    pub fn multilingual(&self) -> bool {
        !self.languages.is_empty()
    }

    pub fn language_token(&self, code: &str) -> Option<u32> {
        self.languages
            .iter()
            .find(|(c, _)| c == code)
            .map(|&(_, id)| id)
    }

    /// `<|startoftranscript|> [<|lang|> <|transcribe|>]`.
    pub fn sot_sequence(&self, language: Option<u32>) -> Vec<u32> {
        match language {
            Some(lang) if self.multilingual() => vec![self.sot, lang, self.transcribe],
            _ => vec![self.sot],
        }
    }

    pub fn is_timestamp(&self, token: u32) -> bool {
        token >= self.timestamp_begin
    }
}
