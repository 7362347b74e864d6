//! Decoding one 30 s window: the logit rules Whisper relies on (suppressed tokens, a blank
//! first token, timestamp pairing and monotonicity, the timestamp-probability rule), greedy
//! decoding and temperature sampling, the no-speech probability and language detection.

use candle_core::{Device, Tensor};

use super::model::{DecoderState, Whisper};
use super::tokens::SpecialTokens;
use crate::vecmath::{log_sum_exp, max};

type Result<T> = candle_core::Result<T>;

/// What one decode of a window produced.
#[derive(Debug, Clone)]
pub struct WindowDecode {
    /// Sampled tokens, without the prompt and without the final end-of-text.
    pub tokens: Vec<u32>,
    /// Sum of the log-probabilities of the sampled tokens, end-of-text included.
    pub sum_logprob: f64,
    pub no_speech_prob: f32,
    pub temperature: f32,
}

impl WindowDecode {
    /// Average log-probability per token (end-of-text counted), as Whisper's thresholds use.
    pub fn avg_logprob(&self) -> f64 {
        self.sum_logprob / (self.tokens.len() + 1) as f64
    }
}

/// Decoding options for one window.
#[derive(Debug, Clone, Copy)]
pub struct DecodeOptions {
    pub temperature: f32,
    /// Latest allowed first timestamp, in 20 ms steps (Whisper uses 1.0 s = 50).
    pub max_initial_timestamp_index: u32,
    /// Sampled sequences at temperature > 0 (the most probable is kept).
    pub best_of: usize,
    /// Beam width at temperature 0 (1 = greedy).
    pub beam_size: usize,
    pub seed: u64,
}

/// Disables tokens in a logits row.
struct Disabled<'a>(&'a mut [f32]);

impl Disabled<'_> {
    fn token(&mut self, t: u32) {
        if let Some(v) = self.0.get_mut(t as usize) {
            *v = f32::NEG_INFINITY;
        }
    }
    fn range(&mut self, from: u32, to_exclusive: u32) {
        let end = (to_exclusive as usize).min(self.0.len());
        let start = (from as usize).min(end);
        self.0[start..end].fill(f32::NEG_INFINITY);
    }
}

/// Applies the rules to `logits` for the token after `sampled` (tokens sampled so far).
pub fn apply_rules(logits: &mut [f32], sampled: &[u32], sp: &SpecialTokens, max_initial: u32) {
    let mut d = Disabled(logits);
    for &t in &sp.suppress {
        d.token(t);
    }
    if sampled.is_empty() {
        for &t in &sp.suppress_begin {
            d.token(t);
        }
    }
    d.token(sp.no_timestamps);
    let ts_end = sp.timestamp_end + 1;
    let mut check_timestamp_mass = true;
    match sampled {
        [] => {
            // The first token is a timestamp, no later than `max_initial`.
            d.range(0, sp.timestamp_begin);
            d.range(sp.timestamp_begin + max_initial + 1, ts_end);
        }
        [.., last] => {
            let last_is_ts = sp.is_timestamp(*last);
            let penultimate_is_ts =
                sampled.len() < 2 || sp.is_timestamp(sampled[sampled.len() - 2]);
            if last_is_ts {
                if penultimate_is_ts {
                    // A pair just closed: text must follow.
                    d.range(sp.timestamp_begin, ts_end);
                    check_timestamp_mass = false;
                } else {
                    // An opening timestamp... or the end: no text.
                    d.range(0, sp.eot);
                }
            }
            // Timestamps never decrease, and a segment's closing timestamp comes after its
            // opening one: a segment of zero length would let the decoder loop in place
            // (Whisper's and CTranslate2's rule; without it, tiny.en repeated " The" in
            // zero-length steps to the end of a 5 s clip where faster-whisper stopped).
            if let Some(&prev) = sampled.iter().rev().find(|&&t| sp.is_timestamp(t)) {
                let reopening = last_is_ts && !penultimate_is_ts;
                d.range(sp.timestamp_begin, if reopening { prev } else { prev + 1 });
            }
        }
    }
    if check_timestamp_mass && !sampled.is_empty() {
        // When timestamps together outweigh every single text token, emit a timestamp.
        let lse = log_sum_exp(&logits[..]);
        let ts = &logits[sp.timestamp_begin as usize..];
        let ts_logprob = log_sum_exp(ts) - lse;
        let max_text = max(&logits[..sp.timestamp_begin as usize]) - lse;
        if ts_logprob > max_text {
            Disabled(logits).range(0, sp.timestamp_begin);
        }
    }
}

fn log_softmax_at(logits: &[f32], index: usize) -> f64 {
    f64::from(logits[index] - log_sum_exp(logits))
}

fn argmax(xs: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in xs.iter().enumerate() {
        if x > xs[best] {
            best = i;
        }
    }
    best
}

/// A small deterministic generator for temperature sampling (SplitMix64).
struct Rng(u64);

impl Rng {
    fn next_f64(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn sample(logits: &[f32], temperature: f32, rng: &mut Rng) -> usize {
    let scaled: Vec<f64> = logits
        .iter()
        .map(|&l| f64::from(l) / f64::from(temperature))
        .collect();
    let max = scaled.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let weights: Vec<f64> = scaled.iter().map(|&s| (s - max).exp()).collect();
    let total: f64 = weights.iter().sum();
    let mut r = rng.next_f64() * total;
    for (i, w) in weights.iter().enumerate() {
        r -= w;
        if r <= 0.0 && *w > 0.0 {
            return i;
        }
    }
    argmax(logits)
}

/// Row `row` of a [B, vocab] logits tensor as f32 values.
fn row(logits: &Tensor, row: usize) -> Result<Vec<f32>> {
    logits
        .get(row)?
        .to_dtype(candle_core::DType::F32)?
        .to_vec1::<f32>()
}

/// Decodes one window after `prompt`, from the decoder's state over the window's audio
/// before any token (`fresh`, from [`super::model::Decoder::start`]).
pub fn decode_window(
    model: &Whisper,
    fresh: &DecoderState,
    prompt: &[u32],
    sp: &SpecialTokens,
    opts: &DecodeOptions,
) -> Result<WindowDecode> {
    let device = fresh.device();
    let mut base = fresh.clone();
    let prompt_t = Tensor::new(prompt, device)?.unsqueeze(0)?;
    let hidden = model.decoder.forward(&prompt_t, &mut base)?;
    let sot_index = prompt.iter().position(|&t| t == sp.sot).unwrap_or(0);
    let sot_logits = row(&model.decoder.logits_at(&hidden, sot_index)?, 0)?;
    let no_speech_prob = log_softmax_at(&sot_logits, sp.no_speech as usize).exp() as f32;
    let first = row(&model.decoder.logits_at(&hidden, prompt.len() - 1)?, 0)?;
    // As CTranslate2: at most half the context, and no more steps than positions left after
    // the prompt (the last prompt token is the first step's input).
    let max_new = (model.config.max_target_positions / 2).min(
        model
            .config
            .max_target_positions
            .saturating_sub(prompt.len().saturating_sub(1)),
    );

    let ctx = Ctx {
        model,
        sp,
        opts,
        max_new,
        device,
    };
    let (tokens, sum_logprob) = if opts.temperature <= 0.0 && opts.beam_size > 1 {
        beam_search(&ctx, &base, first, opts.beam_size)?
    } else {
        let runs = if opts.temperature > 0.0 {
            opts.best_of.max(1)
        } else {
            1
        };
        let mut rng = Rng(opts.seed);
        let mut best: Option<(Vec<u32>, f64)> = None;
        for _ in 0..runs {
            let mut state = base.clone();
            let run = continue_decode(&ctx, &mut state, first.clone(), &mut rng)?;
            if best.as_ref().is_none_or(|b| run.1 > b.1) {
                best = Some(run);
            }
        }
        best.ok_or_else(|| candle_core::Error::Msg("no decode ran".into()))?
    };
    Ok(WindowDecode {
        tokens,
        sum_logprob,
        no_speech_prob,
        temperature: opts.temperature,
    })
}

/// What every decoding step of one window needs.
struct Ctx<'a> {
    model: &'a Whisper,
    sp: &'a SpecialTokens,
    opts: &'a DecodeOptions,
    max_new: usize,
    device: &'a Device,
}

/// Beam search at temperature 0, as CTranslate2 runs it for faster-whisper (patience 1, length
/// penalty 1). Each step ranks the `2·beam` best continuations of all hypotheses together; an
/// end-of-text among the first `beam` finishes that hypothesis and the next unfinished
/// continuation past the first `beam` takes its place. The search stops once `beam`
/// hypotheses have finished, or at the length limit, where the first `beam` continuations all
/// finish. The best by log-probability per token (end-of-text not counted) wins.
///
/// This differs from Whisper's Python decoder in small ways that change long transcripts:
/// there every hypothesis offers only its `beam + 1` best tokens, end-of-texts ranked past the
/// `beam` unfinished are kept too, and finished hypotheses beyond `beam` are dropped by raw
/// score.
fn beam_search(
    ctx: &Ctx<'_>,
    base: &DecoderState,
    first: Vec<f32>,
    beam: usize,
) -> Result<(Vec<u32>, f64)> {
    let sp = ctx.sp;
    let width = 2 * beam;
    let mut state = base.clone();
    let mut hyps: Vec<(Vec<u32>, f64)> = vec![(Vec::new(), 0.0)];
    let mut rows = vec![first];
    let mut finished: Vec<(Vec<u32>, f64)> = Vec::new();
    for step in 0..ctx.max_new {
        let last_step = step + 1 == ctx.max_new;
        // (score, parent, token), best first: the global best `width` are among each
        // hypothesis's own best `width`.
        let mut candidates: Vec<(f64, usize, u32)> = Vec::new();
        for (i, (tokens, score)) in hyps.iter().enumerate() {
            let logits = &mut rows[i];
            apply_rules(logits, tokens, sp, ctx.opts.max_initial_timestamp_index);
            let lse = f64::from(log_sum_exp(logits));
            for t in top_k(logits, width) {
                candidates.push((score + f64::from(logits[t]) - lse, i, t as u32));
            }
        }
        candidates.sort_by(|a, b| b.0.total_cmp(&a.0));
        candidates.truncate(width);
        let extend = |&(score, parent, token): &(f64, usize, u32)| {
            let mut tokens = hyps[parent].0.clone();
            if token != sp.eot {
                tokens.push(token);
            }
            (tokens, score)
        };
        let tokens: Vec<u32> = candidates.iter().map(|c| c.2).collect();
        let (ended, kept) = advance(&tokens, beam, sp.eot, last_step);
        finished.extend(ended.iter().map(|&k| extend(&candidates[k])));
        let next: Vec<(Vec<u32>, f64)> = kept.iter().map(|&k| extend(&candidates[k])).collect();
        let parents: Vec<usize> = kept.iter().map(|&k| candidates[k].1).collect();
        if last_step || finished.len() >= beam || next.is_empty() {
            break;
        }
        state = state.select(&parents)?;
        let last: Vec<u32> = next.iter().map(|(t, _)| t[t.len() - 1]).collect();
        let input = Tensor::new(last.as_slice(), ctx.device)?.unsqueeze(1)?;
        let hidden = ctx.model.decoder.forward(&input, &mut state)?;
        let logits = ctx.model.decoder.logits_at(&hidden, 0)?;
        rows = (0..next.len())
            .map(|r| row(&logits, r))
            .collect::<Result<_>>()?;
        hyps = next;
    }
    // Length penalty 1: the sum of log-probabilities over the number of tokens.
    let normalised = |(t, s): &(Vec<u32>, f64)| s / t.len().max(1) as f64;
    finished
        .into_iter()
        .max_by(|a, b| normalised(a).total_cmp(&normalised(b)))
        .ok_or_else(|| candle_core::Error::Msg("beam search produced nothing".into()))
}

/// One beam step's bookkeeping over the ranked candidate `tokens` (best first): which
/// candidates finish (an end-of-text among the first `beam`, or all of the first `beam` at the
/// last step) and which go on, in order. A finished slot passes to the next candidate past the
/// first `beam` that is not an end-of-text (CTranslate2's rule).
fn advance(tokens: &[u32], beam: usize, eot: u32, last_step: bool) -> (Vec<usize>, Vec<usize>) {
    let mut ended = Vec::new();
    let mut kept = Vec::new();
    let mut spare = beam;
    for k in 0..beam.min(tokens.len()) {
        let mut chosen = Some(k);
        if tokens[k] == eot || last_step {
            ended.push(k);
            chosen = (spare..tokens.len()).find(|&j| tokens[j] != eot);
            spare = chosen.map_or(tokens.len(), |j| j + 1);
        }
        kept.extend(chosen);
    }
    (ended, kept)
}

/// Indices of the `k` largest values, largest first.
fn top_k(xs: &[f32], k: usize) -> Vec<usize> {
    let mut best: Vec<usize> = Vec::with_capacity(k + 1);
    for (i, &x) in xs.iter().enumerate() {
        if x == f32::NEG_INFINITY {
            continue;
        }
        if best.len() < k || x > xs[best[best.len() - 1]] {
            let pos = best.partition_point(|&j| xs[j] >= x);
            best.insert(pos, i);
            best.truncate(k);
        }
    }
    best
}

fn continue_decode(
    ctx: &Ctx<'_>,
    state: &mut DecoderState,
    mut logits: Vec<f32>,
    rng: &mut Rng,
) -> Result<(Vec<u32>, f64)> {
    let (sp, opts, max_new) = (ctx.sp, ctx.opts, ctx.max_new);
    let mut tokens: Vec<u32> = Vec::new();
    let mut sum_logprob = 0.0;
    loop {
        apply_rules(&mut logits, &tokens, sp, opts.max_initial_timestamp_index);
        let next = if opts.temperature > 0.0 {
            sample(&logits, opts.temperature, rng)
        } else {
            argmax(&logits)
        };
        sum_logprob += log_softmax_at(&logits, next);
        let next = next as u32;
        if next == sp.eot || tokens.len() + 1 >= max_new {
            if next != sp.eot {
                tokens.push(next);
            }
            break;
        }
        tokens.push(next);
        let input = Tensor::new(&[next], ctx.device)?.unsqueeze(0)?;
        let hidden = ctx.model.decoder.forward(&input, state)?;
        logits = row(&ctx.model.decoder.logits_at(&hidden, 0)?, 0)?;
    }
    Ok((tokens, sum_logprob))
}

/// Language probabilities from the logits after `<|startoftranscript|>`, most probable first.
pub fn detect_language(
    model: &Whisper,
    fresh: &DecoderState,
    sp: &SpecialTokens,
) -> Result<Vec<(String, f32)>> {
    if !sp.multilingual() {
        return Ok(vec![("en".into(), 1.0)]);
    }
    let mut state = fresh.clone();
    let sot = Tensor::new(&[sp.sot], fresh.device())?.unsqueeze(0)?;
    let hidden = model.decoder.forward(&sot, &mut state)?;
    let logits = row(&model.decoder.logits_at(&hidden, 0)?, 0)?;
    let lang: Vec<f32> = sp
        .languages
        .iter()
        .map(|&(_, id)| logits[id as usize])
        .collect();
    let lse = log_sum_exp(&lang);
    let mut probs: Vec<(String, f32)> = sp
        .languages
        .iter()
        .zip(&lang)
        .map(|((code, _), &l)| (code.clone(), (l - lse).exp()))
        .collect();
    probs.sort_by(|a, b| b.1.total_cmp(&a.1));
    Ok(probs)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// tiny.en's numbering: text below 50256, timestamps from 50363 on.
    fn tokens() -> SpecialTokens {
        SpecialTokens {
            eot: 50256,
            sot: 50257,
            sot_prev: 50360,
            sot_lm: 50359,
            no_speech: 50361,
            transcribe: 50358,
            translate: 50357,
            no_timestamps: 50362,
            timestamp_begin: 50363,
            timestamp_end: 50363 + 1500,
            languages: Vec::new(),
            suppress: Vec::new(),
            suppress_begin: Vec::new(),
        }
    }

    /// Which of `candidates` the rules leave possible after `sampled`, with text far likelier
    /// than any timestamp (so that the timestamp-mass rule stays out of the way).
    fn allowed(sampled: &[u32], candidates: &[u32]) -> Vec<u32> {
        let sp = tokens();
        let mut logits = vec![0f32; sp.timestamp_end as usize + 1];
        logits[..sp.timestamp_begin as usize].fill(10.0);
        apply_rules(&mut logits, sampled, &sp, 50);
        candidates
            .iter()
            .copied()
            .filter(|&t| logits[t as usize] > f32::NEG_INFINITY)
            .collect()
    }

    #[test]
    fn a_finished_beam_passes_its_slot_to_the_next_unfinished_candidate() {
        let eot = 9;
        // Ranked candidates of a beam of 3: the end-of-text at rank 1 finishes and rank 3
        // takes its place; the one at rank 4 is past the first 3 and is neither kept nor
        // finished.
        let (ended, kept) = advance(&[1, eot, 2, 3, eot, 4], 3, eot, false);
        assert_eq!(ended, [1]);
        assert_eq!(kept, [0, 3, 2]);
        // Two end-of-texts: the spares are used in rank order, skipping end-of-texts.
        let (ended, kept) = advance(&[eot, eot, 1, eot, 2, 3], 3, eot, false);
        assert_eq!(ended, [0, 1]);
        assert_eq!(kept, [4, 5, 2]);
        // At the length limit the first `beam` all finish.
        let (ended, _) = advance(&[1, eot, 2, 3, 4, 5], 3, eot, true);
        assert_eq!(ended, [0, 1, 2]);
        // Too few spares: the slot is dropped rather than keeping an ended hypothesis alive.
        let (ended, kept) = advance(&[eot, 1], 3, eot, false);
        assert_eq!((ended, kept), (vec![0], vec![1]));
    }

    #[test]
    fn timestamp_rules_follow_whispers() {
        let (t0, t1, t2) = (50363, 50413, 50414);
        let (few, eot) = (1178, 50256);
        // The first token is a timestamp.
        assert_eq!(allowed(&[], &[few, t0, t1]), [t0, t1]);
        // After an opening timestamp and text, the closing one comes strictly later (a
        // zero-length segment let the decoder loop in place).
        assert_eq!(allowed(&[t1, few], &[few, t0, t1, t2, eot]), [few, t2, eot]);
        // A closed segment is followed by the next opening (which may equal the close) or
        // the end, not text.
        assert_eq!(
            allowed(&[t0, few, t1], &[few, t0, t1, t2, eot]),
            [t1, t2, eot]
        );
        // After a pair, text.
        assert_eq!(allowed(&[t0, few, t1, t1], &[few, t1, t2, eot]), [few, eot]);
    }
}
