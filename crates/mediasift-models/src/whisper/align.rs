//! Word timestamps from the cross-attention of Whisper's alignment heads, computed as
//! CTranslate2's `align` and faster-whisper's `find_alignment` do: the window's text is run
//! through the decoder once, each alignment head's attention over the audio frames is
//! normalised across tokens and median-filtered, the heads are averaged, and dynamic time
//! warping finds the monotonic path through (token, frame); a word starts at the frame where
//! the path reaches its first token.

use candle_core::{D, IndexOp, Tensor};
use tokenizers::Tokenizer;

use super::model::{DecoderState, Whisper};
use super::tokens::SpecialTokens;

type Result<T> = candle_core::Result<T>;

/// Encoder frames per second (20 ms each).
const TOKENS_PER_SECOND: f64 = 50.0;
const MEDIAN_FILTER_WIDTH: usize = 7;
/// Python's `string.punctuation`.
const PUNCTUATION: &str = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";
/// Languages written without spaces: words split at every complete character.
const NO_SPACE_LANGUAGES: [&str; 6] = ["zh", "ja", "th", "lo", "my", "yue"];

/// One word of a window's text: its tokens, times in seconds from the window start, and the
/// mean probability of its tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct WordTiming {
    pub word: String,
    pub tokens: Vec<u32>,
    pub start: f64,
    pub end: f64,
    pub probability: f64,
}

/// What aligning a window needs besides its text.
pub struct AlignInput<'a> {
    pub model: &'a Whisper,
    /// The decoder's state over the window's audio, before any token.
    pub fresh: &'a DecoderState,
    pub sp: &'a SpecialTokens,
    pub tokenizer: &'a Tokenizer,
    pub language: &'a str,
    /// `<|startoftranscript|> [<|lang|> <|transcribe|>]` (no previous-text prompt).
    pub sot_sequence: &'a [u32],
    /// Mel frames of the window that hold audio (the rest is padding).
    pub num_frames: usize,
    /// (decoder layer, head) pairs whose cross-attention follows the timing.
    pub heads: &'a [(usize, usize)],
}

/// Words of `text_tokens` (text only, no timestamps) with their times and probabilities.
pub fn find_alignment(input: &AlignInput<'_>, text_tokens: &[u32]) -> Result<Vec<WordTiming>> {
    if text_tokens.is_empty() {
        return Ok(Vec::new());
    }
    let sp = input.sp;
    let sot_len = input.sot_sequence.len();
    let n = text_tokens.len();
    let mut tokens = input.sot_sequence.to_vec();
    tokens.push(sp.no_timestamps);
    tokens.extend_from_slice(text_tokens);
    tokens.push(sp.eot);

    let mut state = input.fresh.clone();
    let ids = Tensor::new(tokens.as_slice(), input.fresh.device())?.unsqueeze(0)?;
    let (hidden, scores) = input
        .model
        .decoder
        .forward_capturing(&ids, &mut state, input.heads)?;
    // The probability of each text token given the tokens before it, over text tokens only.
    let logits = input.model.decoder.logits(&hidden.narrow(1, sot_len, n)?)?;
    let logits = logits.i(0)?.narrow(1, 0, sp.eot as usize)?;
    let probs = crate::vecmath::softmax_last_dim(&logits)?.to_vec2::<f32>()?;
    let token_probs: Vec<f64> = text_tokens
        .iter()
        .zip(&probs)
        .map(|(&t, row)| row.get(t as usize).map_or(0.0, |&p| f64::from(p)))
        .collect();

    let frames = (input.num_frames / 2).max(1);
    let mut heads = Vec::with_capacity(scores.len());
    for s in &scores {
        let s = s.narrow(D::Minus1, 0, frames.min(s.dim(D::Minus1)?))?;
        heads.push(crate::vecmath::softmax_last_dim(&s)?.to_vec2::<f32>()?);
    }
    let weights = attention_matrix(heads);
    let matrix: Vec<Vec<f32>> = weights.into_iter().skip(sot_len).take(n + 1).collect();
    let path = negative_dtw(&matrix);

    let mut with_eot = text_tokens.to_vec();
    with_eot.push(sp.eot);
    let (words, word_tokens) = split_to_word_tokens(input.tokenizer, sp, input.language, &with_eot);
    if word_tokens.len() <= 1 {
        return Ok(Vec::new());
    }
    // The frame at which the path first reaches each token row.
    let mut jump_times = Vec::with_capacity(n + 1);
    let mut last_row = None;
    for &(i, j) in &path {
        if last_row != Some(i) {
            jump_times.push(j as f64 / TOKENS_PER_SECOND);
            last_row = Some(i);
        }
    }
    let mut boundaries = vec![0usize];
    for t in &word_tokens[..word_tokens.len() - 1] {
        boundaries.push(boundaries[boundaries.len() - 1] + t.len());
    }
    let at = |k: usize| jump_times.get(k).copied().unwrap_or(0.0);
    Ok(words
        .into_iter()
        .zip(word_tokens)
        .zip(boundaries.windows(2))
        .map(|((word, tokens), b)| {
            let p = &token_probs[b[0].min(n)..b[1].min(n)];
            WordTiming {
                word,
                tokens,
                start: at(b[0]),
                end: at(b[1]),
                probability: if p.is_empty() {
                    f64::NAN
                } else {
                    p.iter().sum::<f64>() / p.len() as f64
                },
            }
        })
        .collect())
}

/// Heads' attention [token][frame] → normalised across tokens per frame (zero mean, unit
/// variance), median-filtered along frames, averaged over heads.
fn attention_matrix(heads: Vec<Vec<Vec<f32>>>) -> Vec<Vec<f32>> {
    let count = heads.len().max(1) as f32;
    let mut sum: Vec<Vec<f32>> = Vec::new();
    for mut head in heads {
        let (rows, cols) = (head.len(), head.first().map_or(0, Vec::len));
        for f in 0..cols {
            let mean = head.iter().map(|r| r[f]).sum::<f32>() / rows as f32;
            let var = head.iter().map(|r| (r[f] - mean).powi(2)).sum::<f32>() / rows as f32;
            let std = var.sqrt();
            for r in head.iter_mut() {
                r[f] = (r[f] - mean) / std;
            }
        }
        let filtered: Vec<Vec<f32>> = head.iter().map(|r| median_filter(r)).collect();
        if sum.is_empty() {
            sum = filtered;
        } else {
            for (s, f) in sum.iter_mut().zip(filtered) {
                for (a, b) in s.iter_mut().zip(f) {
                    *a += b;
                }
            }
        }
    }
    for row in &mut sum {
        for v in row.iter_mut() {
            *v /= count;
        }
    }
    sum
}

/// Median of each width-7 window, edges reflected (`a b c | b a`).
fn median_filter(x: &[f32]) -> Vec<f32> {
    let rank = MEDIAN_FILTER_WIDTH / 2;
    let n = x.len();
    if n <= rank {
        return x.to_vec();
    }
    let mut window = [0f32; MEDIAN_FILTER_WIDTH];
    (0..n)
        .map(|j| {
            for (k, slot) in window.iter_mut().enumerate() {
                let mut read = (j as isize + k as isize - rank as isize).unsigned_abs();
                if read >= n {
                    read = (2 * n).saturating_sub(read + 2);
                }
                *slot = x[read];
            }
            window.sort_by(f32::total_cmp);
            window[rank]
        })
        .collect()
}

/// Dynamic time warping over the negated matrix: the monotonic path from (0, 0) to the last
/// (row, column) that collects the most attention, as (row, column) pairs.
fn negative_dtw(x: &[Vec<f32>]) -> Vec<(usize, usize)> {
    let n = x.len();
    let m = x.first().map_or(0, Vec::len);
    let mut cost = vec![vec![f32::INFINITY; m + 1]; n + 1];
    let mut trace = vec![vec![-1i8; m + 1]; n + 1];
    cost[0][0] = 0.0;
    for j in 1..=m {
        for i in 1..=n {
            let (c0, c1, c2) = (cost[i - 1][j - 1], cost[i - 1][j], cost[i][j - 1]);
            let (c, t) = if c0 < c1 && c0 < c2 {
                (c0, 0)
            } else if c1 < c0 && c1 < c2 {
                (c1, 1)
            } else {
                (c2, 2)
            };
            cost[i][j] = -x[i - 1][j - 1] + c;
            trace[i][j] = t;
        }
    }
    for t in trace[0].iter_mut() {
        *t = 2;
    }
    for row in trace.iter_mut() {
        row[0] = 1;
    }
    let (mut i, mut j) = (n, m);
    let mut path = Vec::with_capacity(n + m);
    while i > 0 || j > 0 {
        path.push((i.wrapping_sub(1), j.wrapping_sub(1)));
        match trace[i][j] {
            0 => {
                i -= 1;
                j -= 1;
            }
            1 => i -= 1,
            _ => j -= 1,
        }
    }
    // The pairs with a -1 (row or column 0 of the padded matrices) are not cells.
    path.retain(|&(a, b)| a < n && b < m);
    path.reverse();
    path
}

/// Text of tokens as faster-whisper's `decode_with_timestamps` gives it (special tokens
/// dropped; only text tokens reach this).
fn decode(tokenizer: &Tokenizer, tokens: &[u32]) -> String {
    tokenizer.decode(tokens, true).unwrap_or_default()
}

/// Groups tokens into words: at complete characters for languages without spaces, else at
/// spaces and punctuation (faster-whisper's `split_to_word_tokens`).
pub fn split_to_word_tokens(
    tokenizer: &Tokenizer,
    sp: &SpecialTokens,
    language: &str,
    tokens: &[u32],
) -> (Vec<String>, Vec<Vec<u32>>) {
    let (subwords, subword_tokens) = split_on_unicode(tokenizer, tokens);
    if NO_SPACE_LANGUAGES.contains(&language) {
        return (subwords, subword_tokens);
    }
    let mut words: Vec<String> = Vec::new();
    let mut word_tokens: Vec<Vec<u32>> = Vec::new();
    for (subword, toks) in subwords.into_iter().zip(subword_tokens) {
        let special = toks.first().is_some_and(|&t| t >= sp.eot);
        let with_space = subword.starts_with(' ');
        // Python's `str in string.punctuation` is a substring test.
        let punctuation = PUNCTUATION.contains(subword.trim());
        match (words.last_mut(), word_tokens.last_mut()) {
            (Some(w), Some(t)) if !(special || with_space || punctuation) => {
                w.push_str(&subword);
                t.extend(toks);
            }
            _ => {
                words.push(subword);
                word_tokens.push(toks);
            }
        }
    }
    (words, word_tokens)
}

/// Splits wherever the tokens so far decode to complete characters (a token can carry part of
/// a multi-byte character).
fn split_on_unicode(tokenizer: &Tokenizer, tokens: &[u32]) -> (Vec<String>, Vec<Vec<u32>>) {
    let full: Vec<char> = decode(tokenizer, tokens).chars().collect();
    let mut words = Vec::new();
    let mut word_tokens = Vec::new();
    let mut current: Vec<u32> = Vec::new();
    let mut offset = 0usize;
    for &t in tokens {
        current.push(t);
        let decoded = decode(tokenizer, &current);
        let complete = match decoded.chars().position(|c| c == '\u{fffd}') {
            None => true,
            // A replacement character that is really in the text.
            Some(i) => full.get(offset + i) == Some(&'\u{fffd}'),
        };
        if complete {
            offset += decoded.chars().count();
            words.push(decoded);
            word_tokens.push(std::mem::take(&mut current));
        }
    }
    (words, word_tokens)
}

/// Joins entries `i` < `j` into entry `keep` (one of them); the other keeps an empty word and
/// no tokens.
fn join(alignment: &mut [WordTiming], i: usize, j: usize, keep: usize) {
    let word = format!("{}{}", alignment[i].word, alignment[j].word);
    let mut tokens = std::mem::take(&mut alignment[i].tokens);
    tokens.append(&mut alignment[j].tokens);
    let gone = if keep == i { j } else { i };
    alignment[gone].word.clear();
    alignment[keep].word = word;
    alignment[keep].tokens = tokens;
}

/// Attaches punctuation to its word: opening marks to the word after, closing marks to the
/// word before (the merged-away entry keeps an empty word and no tokens).
pub fn merge_punctuations(alignment: &mut [WordTiming], prepended: &str, appended: &str) {
    if alignment.len() < 2 {
        return;
    }
    let mut j = alignment.len() - 1;
    for i in (0..alignment.len() - 1).rev() {
        let previous = &alignment[i].word;
        if previous.starts_with(' ') && prepended.contains(previous.trim()) {
            join(alignment, i, j, j);
        } else {
            j = i;
        }
    }
    let mut i = 0;
    for j in 1..alignment.len() {
        if !alignment[i].word.ends_with(' ') && appended.contains(alignment[j].word.as_str()) {
            join(alignment, i, j, i);
        } else {
            i = j;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_filter_reflects_at_the_edges() {
        let x = [5.0, 1.0, 9.0, 2.0, 8.0, 3.0, 7.0, 4.0];
        let y = median_filter(&x);
        // j = 0 reads x[3], x[2], x[1], x[0], x[1], x[2], x[3] = 2 9 1 5 1 9 2 → median 2.
        assert_eq!(y[0], 2.0);
        // j = 3 reads x[0..7] = 5 1 9 2 8 3 7 → median 5.
        assert_eq!(y[3], 5.0);
        // j = 7 reads x[4], x[5], x[6], x[7], x[6], x[5], x[4] = 8 3 7 4 7 3 8 → median 7.
        assert_eq!(y[7], 7.0);
        assert_eq!(median_filter(&[1.0, 2.0]), vec![1.0, 2.0]);
    }

    #[test]
    fn dtw_follows_the_diagonal_of_attention() {
        // Token 0 attends to frames 0-1, token 1 to frames 2-4, token 2 to frame 5 (and away
        // from the others: zeros would tie, and ties go to the frame axis).
        let mut x = vec![vec![-1f32; 6]; 3];
        for (row, frames) in [(0, 0..2), (1, 2..5), (2, 5..6)] {
            for f in frames {
                x[row][f] = 1.0;
            }
        }
        let path = negative_dtw(&x);
        assert_eq!(path.first(), Some(&(0, 0)));
        assert_eq!(path.last(), Some(&(2, 5)));
        let first_frame = |row| path.iter().find(|p| p.0 == row).map(|p| p.1);
        assert_eq!(first_frame(1), Some(2));
        assert_eq!(first_frame(2), Some(5));
        // Monotonic in both coordinates.
        assert!(
            path.windows(2)
                .all(|w| w[1].0 >= w[0].0 && w[1].1 >= w[0].1)
        );
    }

    fn timing(word: &str, tokens: &[u32]) -> WordTiming {
        WordTiming {
            word: word.into(),
            tokens: tokens.to_vec(),
            start: 0.0,
            end: 0.0,
            probability: 1.0,
        }
    }

    #[test]
    fn punctuation_joins_its_word() {
        let mut a = vec![
            timing(" \"", &[1]),
            timing(" Hello", &[2]),
            timing(",", &[3]),
            timing(" world", &[4]),
            timing(".", &[5]),
        ];
        merge_punctuations(&mut a, "\"'“¿([{-", "\"'.。,，!！?？:：”)]}、");
        let words: Vec<&str> = a.iter().map(|w| w.word.as_str()).collect();
        assert_eq!(words, ["", " \" Hello,", "", " world.", ""]);
        assert_eq!(a[1].tokens, vec![1, 2, 3]);
        assert_eq!(a[3].tokens, vec![4, 5]);
    }
}
