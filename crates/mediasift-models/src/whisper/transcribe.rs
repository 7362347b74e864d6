//! Whole-file transcription: 30 s windows with seek, segments from timestamp tokens, language
//! detection, temperature fallback and the guards against text invented over silence or noise
//! (no-speech probability, compression ratio, average log-probability), as faster-whisper does.

use std::io::Write;

use candle_core::Tensor;
use serde::Serialize;

use super::WhisperModel;
use super::align::{AlignInput, find_alignment};
use super::decode::{DecodeOptions, WindowDecode, decode_window, detect_language};
use super::mel::{FRAME_SECONDS, LogMel, WINDOW_FRAMES};
use super::model::DecoderState;
use super::words::{Piece, Word, assign_words, last_end};

type Result<T> = candle_core::Result<T>;

/// Mel frames per timestamp step (20 ms).
const INPUT_STRIDE: usize = 2;
const TIME_PRECISION: f64 = 0.02;

/// Transcription options (faster-whisper's defaults).
#[derive(Debug, Clone)]
pub struct TranscribeOptions {
    /// Force a language code; `None` detects it from the first window.
    pub language: Option<String>,
    pub temperatures: Vec<f32>,
    /// Beam width at temperature 0 (faster-whisper's default is 5; 1 is greedy).
    pub beam_size: usize,
    pub best_of: usize,
    pub compression_ratio_threshold: f64,
    pub log_prob_threshold: f64,
    pub no_speech_threshold: f32,
    pub condition_on_previous_text: bool,
    pub prompt_reset_on_temperature: f32,
    pub max_initial_timestamp: f64,
    /// Times for every word, from the cross-attention of the alignment heads (one more decoder
    /// pass per window; the next window then starts after the last word, as in faster-whisper).
    pub word_timestamps: bool,
}

impl Default for TranscribeOptions {
    fn default() -> Self {
        TranscribeOptions {
            language: None,
            temperatures: vec![0.0, 0.2, 0.4, 0.6, 0.8, 1.0],
            beam_size: 5,
            best_of: 5,
            compression_ratio_threshold: 2.4,
            log_prob_threshold: -1.0,
            no_speech_threshold: 0.6,
            condition_on_previous_text: true,
            prompt_reset_on_temperature: 0.5,
            max_initial_timestamp: 1.0,
            word_timestamps: false,
        }
    }
}

/// One transcribed segment.
#[derive(Debug, Clone, Serialize)]
pub struct Segment {
    pub start: f64,
    pub end: f64,
    pub text: String,
    pub avg_logprob: f64,
    pub no_speech_prob: f32,
    pub temperature: f32,
    pub compression_ratio: f64,
    #[serde(skip)]
    pub tokens: Vec<u32>,
    /// With `word_timestamps`; empty otherwise.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub words: Vec<Word>,
}

/// A file's transcript.
#[derive(Debug, Clone, Serialize)]
pub struct Transcript {
    pub text: String,
    pub language: String,
    pub language_probability: f32,
    pub duration: f64,
    pub segments: Vec<Segment>,
}

/// gzip-style compression ratio of the text (repetitive hallucinations compress well).
pub fn compression_ratio(text: &str) -> f64 {
    let bytes = text.as_bytes();
    if bytes.is_empty() {
        return 0.0;
    }
    let mut enc = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    let compressed = enc
        .write_all(bytes)
        .and_then(|()| enc.finish())
        .map_or(bytes.len(), |c| c.len());
    bytes.len() as f64 / compressed.max(1) as f64
}

struct Split {
    pieces: Vec<Piece>,
    seek: usize,
    /// The window's last segment ends with a lone timestamp (it runs to the window's end).
    single_timestamp_ending: bool,
}

impl WhisperModel {
    /// Transcribes a log-mel spectrogram of a whole file.
    pub fn transcribe_mel(&self, mel: &LogMel, opts: &TranscribeOptions) -> Result<Transcript> {
        let sp = &self.tokens;
        // faster-whisper appends one frame of padding; it is not content.
        let content_frames = mel.frames.saturating_sub(1);
        let duration = content_frames as f64 * FRAME_SECONDS;
        let mut seek = 0usize;
        let mut all_tokens: Vec<u32> = Vec::new();
        let mut prompt_reset_since = 0usize;
        let mut segments = Vec::new();
        let mut language: Option<(String, f32)> = opts.language.clone().map(|l| (l, 1.0));
        if !sp.multilingual() {
            language = Some(("en".into(), 1.0));
        }
        while seek < content_frames {
            let segment_size = WINDOW_FRAMES.min(content_frames - seek);
            let time_offset = seek as f64 * FRAME_SECONDS;
            let audio = self.encode(&mel.window(seek, segment_size))?;
            let fresh = self.model.decoder.start(&audio)?;
            if language.is_none() {
                let probs = detect_language(&self.model, &fresh, sp)?;
                language = probs.into_iter().next();
            }
            let (lang_code, _) = language.clone().unwrap_or(("en".into(), 0.0));
            let lang_token = sp.language_token(&lang_code);
            let previous = &all_tokens[prompt_reset_since..];
            let mut prompt = Vec::new();
            if !previous.is_empty() {
                let keep = self.model.config.max_target_positions / 2 - 1;
                prompt.push(sp.sot_prev);
                prompt.extend_from_slice(&previous[previous.len().saturating_sub(keep)..]);
            }
            prompt.extend(sp.sot_sequence(lang_token));

            let (result, compression) = self.decode_with_fallback(&fresh, &prompt, opts, seek)?;
            if result.no_speech_prob > opts.no_speech_threshold
                && result.avg_logprob() <= opts.log_prob_threshold
            {
                // Silence (or noise): no text for this window.
                seek += segment_size;
                continue;
            }
            let previous_seek = seek;
            let split = self.split_by_timestamps(&result.tokens, time_offset, segment_size, seek);
            seek = split.seek;
            let mut pieces = split.pieces;
            if opts.word_timestamps {
                let text: Vec<u32> = pieces
                    .iter()
                    .flat_map(|p| p.tokens.iter().copied().filter(|&t| t < sp.eot))
                    .collect();
                let sot_sequence = sp.sot_sequence(lang_token);
                let alignment = find_alignment(
                    &AlignInput {
                        model: &self.model,
                        fresh: &fresh,
                        sp,
                        tokenizer: &self.tokenizer,
                        language: &lang_code,
                        sot_sequence: &sot_sequence,
                        num_frames: segment_size,
                        heads: &self.alignment_heads,
                    },
                    &text,
                )?;
                // faster-whisper passes 0 as the previous speech end for every window.
                assign_words(&mut pieces, alignment, sp.eot, time_offset, 0.0);
                if !split.single_timestamp_ending
                    && let Some(end) = last_end(&pieces)
                    && end > time_offset
                {
                    seek = (end / FRAME_SECONDS).round() as usize;
                }
            }
            for piece in pieces {
                let text = self.decode_text(&piece.tokens);
                if piece.start == piece.end || text.trim().is_empty() {
                    continue;
                }
                all_tokens.extend_from_slice(&piece.tokens);
                segments.push(Segment {
                    start: piece.start,
                    end: piece.end,
                    text,
                    avg_logprob: result.avg_logprob(),
                    no_speech_prob: result.no_speech_prob,
                    temperature: result.temperature,
                    compression_ratio: compression,
                    tokens: piece.tokens,
                    words: piece.words,
                });
            }
            if !opts.condition_on_previous_text
                || result.temperature > opts.prompt_reset_on_temperature
            {
                prompt_reset_since = all_tokens.len();
            }
            // A window that produced no timestamps still advances.
            if seek <= previous_seek {
                seek = previous_seek + segment_size;
            }
        }
        let (language, language_probability) = language.unwrap_or(("en".into(), 0.0));
        let text = segments
            .iter()
            .map(|s| s.text.as_str())
            .collect::<String>()
            .trim()
            .to_string();
        Ok(Transcript {
            text,
            language,
            language_probability,
            duration,
            segments,
        })
    }

    fn encode(&self, window: &[f32]) -> Result<Tensor> {
        let n_mels = self.mel.n_mels();
        let mel = Tensor::from_slice(window, (1, n_mels, WINDOW_FRAMES), &self.device)?
            .to_dtype(self.model.dtype())?;
        self.model.encoder.forward(&mel)
    }

    fn decode_with_fallback(
        &self,
        fresh: &DecoderState,
        prompt: &[u32],
        opts: &TranscribeOptions,
        seek: usize,
    ) -> Result<(WindowDecode, f64)> {
        let max_initial = (opts.max_initial_timestamp / TIME_PRECISION).round() as u32;
        let mut all: Vec<(WindowDecode, f64)> = Vec::new();
        let mut below_cr: Vec<usize> = Vec::new();
        let temperatures = if opts.temperatures.is_empty() {
            &[0.0][..]
        } else {
            &opts.temperatures[..]
        };
        for &temperature in temperatures {
            let d = decode_window(
                &self.model,
                fresh,
                prompt,
                &self.tokens,
                &DecodeOptions {
                    temperature,
                    max_initial_timestamp_index: max_initial,
                    best_of: opts.best_of,
                    beam_size: opts.beam_size,
                    seed: seek as u64 ^ 0x6d65_6469_6173_6966,
                },
            )?;
            let text = self.decode_text(&d.tokens);
            let cr = compression_ratio(text.trim());
            let avg = d.avg_logprob();
            let mut needs_fallback = false;
            if cr > opts.compression_ratio_threshold {
                needs_fallback = true;
            } else {
                below_cr.push(all.len());
            }
            if avg < opts.log_prob_threshold {
                needs_fallback = true;
            }
            if d.no_speech_prob > opts.no_speech_threshold && avg < opts.log_prob_threshold {
                needs_fallback = false;
            }
            all.push((d, cr));
            if !needs_fallback {
                return Ok(all.pop().expect("just pushed"));
            }
        }
        let last_temperature = temperatures[temperatures.len() - 1];
        let pool: Vec<usize> = if below_cr.is_empty() {
            (0..all.len()).collect()
        } else {
            below_cr
        };
        let best = pool
            .into_iter()
            .max_by(|&a, &b| all[a].0.avg_logprob().total_cmp(&all[b].0.avg_logprob()))
            .unwrap_or(0);
        let (mut d, cr) = all.swap_remove(best);
        d.temperature = last_temperature;
        Ok((d, cr))
    }

    fn split_by_timestamps(
        &self,
        tokens: &[u32],
        time_offset: f64,
        segment_size: usize,
        seek: usize,
    ) -> Split {
        let sp = &self.tokens;
        let is_ts = |t: u32| sp.is_timestamp(t);
        let position = |t: u32| f64::from(t.saturating_sub(sp.timestamp_begin));
        let n = tokens.len();
        let single_timestamp_ending = n >= 2 && !is_ts(tokens[n - 2]) && is_ts(tokens[n - 1]);
        let consecutive: Vec<usize> = (1..n)
            .filter(|&i| is_ts(tokens[i]) && is_ts(tokens[i - 1]))
            .collect();
        let mut segments = Vec::new();
        let mut seek = seek;
        let piece = |start: f64, end: f64, tokens: &[u32]| Piece {
            start,
            end,
            tokens: tokens.to_vec(),
            words: Vec::new(),
        };
        if !consecutive.is_empty() {
            let mut slices = consecutive;
            if single_timestamp_ending {
                slices.push(n);
            }
            let mut last = 0;
            for &cut in &slices {
                let part = &tokens[last..cut];
                if let (Some(&first), Some(&end)) = (part.first(), part.last()) {
                    segments.push(piece(
                        time_offset + position(first) * TIME_PRECISION,
                        time_offset + position(end) * TIME_PRECISION,
                        part,
                    ));
                }
                last = cut;
            }
            if single_timestamp_ending {
                seek += segment_size;
            } else {
                let last_ts = position(tokens[last - 1]) as usize;
                seek += last_ts * INPUT_STRIDE;
            }
        } else {
            let mut duration = segment_size as f64 * FRAME_SECONDS;
            if let Some(&last_ts) = tokens.iter().rev().find(|&&t| is_ts(t))
                && last_ts != sp.timestamp_begin
            {
                duration = position(last_ts) * TIME_PRECISION;
            }
            segments.push(piece(time_offset, time_offset + duration, tokens));
            seek += segment_size;
        }
        Split {
            pieces: segments,
            seek,
            single_timestamp_ending,
        }
    }

    /// Text of the tokens below end-of-text (timestamps and special tokens dropped).
    pub fn decode_text(&self, tokens: &[u32]) -> String {
        let text: Vec<u32> = tokens
            .iter()
            .copied()
            .filter(|&t| t < self.tokens.eot)
            .collect();
        self.tokenizer.decode(&text, false).unwrap_or_default()
    }
}
