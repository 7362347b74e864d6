//! Words placed into a window's segments, with faster-whisper's corrections: words at sentence
//! ends and right after a pause are kept to twice the median word length, punctuation joins its
//! word, and a segment's bounds follow its first and last words unless they run far past them.

use serde::Serialize;

use super::align::{WordTiming, merge_punctuations};

/// Marks joined to the word after them.
pub const PREPEND_PUNCTUATIONS: &str = "\"'“¿([{-";
/// Marks joined to the word before them.
pub const APPEND_PUNCTUATIONS: &str = "\"'.。,，!！?？:：”)]}、";
const SENTENCE_END_MARKS: &str = ".。!！?？";

/// One word of a transcript: text (with its leading space), times in seconds, and the mean
/// probability of its tokens.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Word {
    pub word: String,
    pub start: f64,
    pub end: f64,
    pub probability: f64,
}

/// A segment of one window as split at its timestamp tokens.
#[derive(Debug, Clone)]
pub struct Piece {
    pub start: f64,
    pub end: f64,
    /// Its tokens, timestamps included.
    pub tokens: Vec<u32>,
    pub words: Vec<Word>,
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

fn median(mut xs: Vec<f64>) -> Option<f64> {
    if xs.is_empty() {
        return None;
    }
    xs.sort_by(f64::total_cmp);
    let mid = xs.len() / 2;
    Some(if xs.len() % 2 == 1 {
        xs[mid]
    } else {
        (xs[mid - 1] + xs[mid]) / 2.0
    })
}

/// Puts the aligned words of a window (times from the window start at `time_offset`) into its
/// pieces, in order, and adjusts word and piece bounds. `last_speech` is the end of the speech
/// before the window; returns the end of the window's last piece with words.
pub fn assign_words(
    pieces: &mut [Piece],
    mut alignment: Vec<WordTiming>,
    eot: u32,
    time_offset: f64,
    mut last_speech: f64,
) -> f64 {
    let durations: Vec<f64> = alignment
        .iter()
        .map(|w| w.end - w.start)
        .filter(|&d| d != 0.0)
        .collect();
    let has_durations = !durations.is_empty();
    let median_duration = median(durations).unwrap_or(0.0).min(0.7);
    let max_duration = median_duration * 2.0;
    if has_durations {
        // A word at a sentence boundary is at most twice the median word long.
        for i in 1..alignment.len() {
            if alignment[i].end - alignment[i].start > max_duration {
                if SENTENCE_END_MARKS.contains(alignment[i].word.as_str()) {
                    alignment[i].end = alignment[i].start + max_duration;
                } else if SENTENCE_END_MARKS.contains(alignment[i - 1].word.as_str()) {
                    alignment[i].start = alignment[i].end - max_duration;
                }
            }
        }
    }
    merge_punctuations(&mut alignment, PREPEND_PUNCTUATIONS, APPEND_PUNCTUATIONS);

    let mut next = 0;
    for piece in pieces.iter_mut() {
        let text_tokens = piece.tokens.iter().filter(|&&t| t < eot).count();
        let mut saved = 0;
        let mut words: Vec<Word> = Vec::new();
        while next < alignment.len() && saved < text_tokens {
            let timing = &alignment[next];
            if !timing.word.is_empty() {
                words.push(Word {
                    word: timing.word.clone(),
                    start: round2(time_offset + timing.start),
                    end: round2(time_offset + timing.end),
                    probability: timing.probability,
                });
            }
            saved += timing.tokens.len();
            next += 1;
        }
        if let (Some(_), Some(_)) = (words.first(), words.last()) {
            bound_first_words(&mut words, last_speech, median_duration, max_duration);
            let (first, last) = (0, words.len() - 1);
            // The piece's start unless the first word starts well before it.
            if piece.start < words[first].end && piece.start - 0.5 > words[first].start {
                words[first].start = (words[first].end - median_duration)
                    .min(piece.start)
                    .max(0.0);
            } else {
                piece.start = words[first].start;
            }
            if piece.end > words[last].start && piece.end + 0.5 < words[last].end {
                words[last].end = (words[last].start + median_duration).max(piece.end);
            } else {
                piece.end = words[last].end;
            }
            last_speech = piece.end;
        }
        piece.words = words;
    }
    last_speech
}

/// After a pause, the first word (and the second) are at most twice the median word long.
fn bound_first_words(words: &mut [Word], last_speech: f64, median: f64, max_duration: f64) {
    let long_first = words[0].end - words[0].start > max_duration
        || (words.len() > 1 && words[1].end - words[0].start > max_duration * 2.0);
    if words[0].end - last_speech > median * 4.0 && long_first {
        if words.len() > 1 && words[1].end - words[1].start > max_duration {
            let boundary = (words[1].end / 2.0).max(words[1].end - max_duration);
            words[0].end = boundary;
            words[1].start = boundary;
        }
        words[0].start = (words[0].end - max_duration).max(0.0);
    }
}

/// End of the last word of the pieces, else the last piece's end.
pub fn last_end(pieces: &[Piece]) -> Option<f64> {
    pieces
        .iter()
        .rev()
        .find_map(|p| p.words.last().map(|w| w.end))
        .or_else(|| pieces.last().map(|p| p.end))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timing(word: &str, tokens: &[u32], start: f64, end: f64) -> WordTiming {
        WordTiming {
            word: word.into(),
            tokens: tokens.to_vec(),
            start,
            end,
            probability: 0.9,
        }
    }

    #[test]
    fn words_fill_pieces_in_order_and_set_their_bounds() {
        // Two pieces: " Hello world." and " Bye", timestamps 50365.. around them.
        let eot = 50257;
        let mut pieces = vec![
            Piece {
                start: 10.0,
                end: 11.5,
                tokens: vec![50365, 1, 2, 3, 50440],
                words: Vec::new(),
            },
            Piece {
                start: 11.5,
                end: 12.5,
                tokens: vec![50440, 4, 50490],
                words: Vec::new(),
            },
        ];
        let alignment = vec![
            timing(" Hello", &[1], 0.1, 0.5),
            timing(" world", &[2], 0.5, 0.9),
            timing(".", &[3], 0.9, 0.9),
            timing(" Bye", &[4], 1.6, 2.0),
        ];
        let last = assign_words(&mut pieces, alignment, eot, 10.0, 0.0);
        let words: Vec<&str> = pieces[0].words.iter().map(|w| w.word.as_str()).collect();
        assert_eq!(words, [" Hello", " world."]);
        assert_eq!(pieces[1].words[0].word, " Bye");
        assert_eq!(
            (pieces[1].words[0].start, pieces[1].words[0].end),
            (11.6, 12.0)
        );
        // Piece bounds follow the words.
        assert_eq!((pieces[0].start, pieces[0].end), (10.1, 10.9));
        assert_eq!((pieces[1].start, pieces[1].end), (11.6, 12.0));
        assert_eq!(last, 12.0);
        assert_eq!(last_end(&pieces), Some(12.0));
    }

    #[test]
    fn a_long_word_after_a_pause_is_cut_to_twice_the_median() {
        let mut words = vec![
            Word {
                word: " So".into(),
                start: 1.0,
                end: 4.0,
                probability: 1.0,
            },
            Word {
                word: " yes".into(),
                start: 4.0,
                end: 4.3,
                probability: 1.0,
            },
        ];
        bound_first_words(&mut words, 0.0, 0.3, 0.6);
        assert!((words[0].start - 3.4).abs() < 1e-9);
        assert_eq!(words[0].end, 4.0);
    }
}
