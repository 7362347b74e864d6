//! Silero VAD v6 (16 kHz): speech probability per 32 ms chunk, and speech regions from those
//! probabilities as faster-whisper computes them (`get_speech_timestamps`).
//!
//! The network is tiny (an STFT as a convolution, four 1-D convolutions, an LSTM cell and a 1×1
//! convolution; 309 k weights) and runs strictly chunk after chunk through the LSTM state, so
//! it is written as plain loops over the weights rather than as candle ops: per-op dispatch
//! would cost more than the arithmetic.

use candle_core::{Device, Tensor};

use crate::{ModelError, Provenance, ResolvedModel};

const CHUNK: usize = 512;
const CONTEXT: usize = 64;
const N_FFT: usize = 256;
const HOP: usize = 128;
const BINS: usize = N_FFT / 2 + 1;
const HIDDEN: usize = 128;

/// A 1-D convolution's weights: `out × in × k`, row-major.
#[derive(Debug)]
struct Conv {
    w: Vec<f32>,
    b: Vec<f32>,
    out: usize,
    inp: usize,
    k: usize,
    stride: usize,
    pad: usize,
}

impl Conv {
    /// `x` is `inp × len` (row-major); returns `out × len'`.
    fn forward(&self, x: &[f32], len: usize) -> (Vec<f32>, usize) {
        let out_len = (len + 2 * self.pad - self.k) / self.stride + 1;
        let mut y = vec![0.0f32; self.out * out_len];
        for o in 0..self.out {
            for t in 0..out_len {
                let mut acc = self.b.get(o).copied().unwrap_or(0.0);
                for i in 0..self.inp {
                    let w = &self.w[(o * self.inp + i) * self.k..][..self.k];
                    let row = &x[i * len..(i + 1) * len];
                    for (j, wj) in w.iter().enumerate() {
                        let pos = (t * self.stride + j) as isize - self.pad as isize;
                        if pos >= 0 && (pos as usize) < len {
                            acc += wj * row[pos as usize];
                        }
                    }
                }
                y[o * out_len + t] = acc;
            }
        }
        (y, out_len)
    }
}

/// The Silero VAD network with its weights.
#[derive(Debug)]
pub struct SileroVad {
    stft: Vec<f32>,
    convs: [Conv; 4],
    w_ih: Vec<f32>,
    w_hh: Vec<f32>,
    bias: Vec<f32>,
    final_w: Vec<f32>,
    final_b: f32,
    provenance: Provenance,
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

impl SileroVad {
    pub fn load(model: &ResolvedModel) -> Result<SileroVad, ModelError> {
        let id = model.id.as_str();
        let tensors =
            candle_core::safetensors::load(model.dir.join("model.safetensors"), &Device::Cpu)
                .map_err(|e| ModelError::load(id, e))?;
        let get = |name: &str, len: usize| -> Result<Vec<f32>, ModelError> {
            let t: &Tensor = tensors
                .get(name)
                .ok_or_else(|| ModelError::load(id, format!("missing {name}")))?;
            let v = t
                .flatten_all()
                .and_then(|t| t.to_vec1::<f32>())
                .map_err(|e| ModelError::load(id, e))?;
            if v.len() != len {
                return Err(ModelError::load(
                    id,
                    format!("{name} has {} values", v.len()),
                ));
            }
            Ok(v)
        };
        let conv = |n: usize, out, inp, stride| -> Result<Conv, ModelError> {
            Ok(Conv {
                w: get(&format!("conv{n}.weight"), out * inp * 3)?,
                b: get(&format!("conv{n}.bias"), out)?,
                out,
                inp,
                k: 3,
                stride,
                pad: 1,
            })
        };
        let b_ih = get("lstm_cell.bias_ih", 4 * HIDDEN)?;
        let b_hh = get("lstm_cell.bias_hh", 4 * HIDDEN)?;
        Ok(SileroVad {
            stft: get("stft_conv.weight", 2 * BINS * N_FFT)?,
            convs: [
                conv(1, 128, BINS, 1)?,
                conv(2, 64, 128, 2)?,
                conv(3, 64, 64, 2)?,
                conv(4, 128, 64, 1)?,
            ],
            w_ih: get("lstm_cell.weight_ih", 4 * HIDDEN * HIDDEN)?,
            w_hh: get("lstm_cell.weight_hh", 4 * HIDDEN * HIDDEN)?,
            bias: b_ih.iter().zip(&b_hh).map(|(a, b)| a + b).collect(),
            final_w: get("final_conv.weight", HIDDEN)?,
            final_b: get("final_conv.bias", 1)?[0],
            provenance: Provenance::of(model, &Device::Cpu),
        })
    }

    pub fn provenance(&self) -> &Provenance {
        &self.provenance
    }

    /// Speech probability of each 512-sample chunk of 16 kHz audio (the audio is zero-padded
    /// to a whole number of chunks, with one extra chunk when it already is one, as the
    /// reference does).
    pub fn probabilities(&self, audio: &[f32]) -> Vec<f32> {
        let mut padded = audio.to_vec();
        padded.resize(audio.len() + CHUNK - audio.len() % CHUNK, 0.0);
        let (mut h, mut c) = (vec![0.0f32; HIDDEN], vec![0.0f32; HIDDEN]);
        let mut input = vec![0.0f32; CONTEXT + CHUNK + CONTEXT];
        let mut out = Vec::with_capacity(padded.len() / CHUNK);
        for (i, chunk) in padded.chunks(CHUNK).enumerate() {
            // 64 samples of context from the previous chunk (zeros first), the chunk, then 64
            // samples of right reflection padding.
            input.fill(0.0);
            if i > 0 {
                input[..CONTEXT].copy_from_slice(&padded[i * CHUNK - CONTEXT..i * CHUNK]);
            }
            input[CONTEXT..CONTEXT + CHUNK].copy_from_slice(chunk);
            let n = CONTEXT + CHUNK;
            for j in 0..CONTEXT {
                input[n + j] = input[n - 2 - j];
            }
            out.push(self.step(&input, &mut h, &mut c));
        }
        out
    }

    fn step(&self, x: &[f32], h: &mut [f32], c: &mut [f32]) -> f32 {
        let frames = (x.len() - N_FFT) / HOP + 1;
        let mut mag = vec![0.0f32; BINS * frames];
        for f in 0..frames {
            let win = &x[f * HOP..f * HOP + N_FFT];
            for b in 0..BINS {
                let re: f32 = dot(&self.stft[b * N_FFT..(b + 1) * N_FFT], win);
                let im: f32 = dot(&self.stft[(b + BINS) * N_FFT..(b + BINS + 1) * N_FFT], win);
                mag[b * frames + f] = (re * re + im * im).sqrt();
            }
        }
        let mut cur = mag;
        let mut len = frames;
        for conv in &self.convs {
            let (y, l) = conv.forward(&cur, len);
            cur = y.into_iter().map(|v| v.max(0.0)).collect();
            len = l;
        }
        // One time step left: 128 features into the LSTM cell (gates i, f, g, o).
        let feat: Vec<f32> = (0..HIDDEN).map(|k| cur[k * len]).collect();
        let mut gates = self.bias.clone();
        for (g, gate) in gates.iter_mut().enumerate() {
            *gate += dot(&self.w_ih[g * HIDDEN..(g + 1) * HIDDEN], &feat)
                + dot(&self.w_hh[g * HIDDEN..(g + 1) * HIDDEN], h);
        }
        for k in 0..HIDDEN {
            let i = sigmoid(gates[k]);
            let f = sigmoid(gates[HIDDEN + k]);
            let g = gates[2 * HIDDEN + k].tanh();
            let o = sigmoid(gates[3 * HIDDEN + k]);
            c[k] = f * c[k] + i * g;
            h[k] = o * c[k].tanh();
        }
        let logit: f32 = self.final_b
            + h.iter()
                .zip(&self.final_w)
                .map(|(hv, w)| hv.max(0.0) * w)
                .sum::<f32>();
        sigmoid(logit)
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Converts the silero-vad wheel's `silero_vad_16k_op15.onnx` (the current v6 weights; the
/// wheel's `silero_vad_16k.safetensors` holds an older, different set) to safetensors under the
/// names [`SileroVad::load`] reads.
pub fn convert_onnx(from: &std::path::Path, to: &std::path::Path) -> Result<(), String> {
    let model = crate::onnx::read(from)?;
    let mut names: Vec<(String, String)> = vec![
        (
            "model.stft.forward_basis_buffer".into(),
            "stft_conv.weight".into(),
        ),
        (
            "model.decoder.decoder.2.weight".into(),
            "final_conv.weight".into(),
        ),
        (
            "model.decoder.decoder.2.bias".into(),
            "final_conv.bias".into(),
        ),
    ];
    for i in 0..4 {
        for part in ["weight", "bias"] {
            names.push((
                format!("model.encoder.{i}.reparam_conv.{part}"),
                format!("conv{}.{part}", i + 1),
            ));
        }
    }
    for part in ["weight_ih", "weight_hh", "bias_ih", "bias_hh"] {
        names.push((
            format!("model.decoder.rnn.{part}"),
            format!("lstm_cell.{part}"),
        ));
    }
    let mut out = std::collections::HashMap::new();
    for (from_name, to_name) in names {
        let t = model
            .initializers
            .get(&from_name)
            .ok_or_else(|| format!("{from_name} is missing"))?;
        out.insert(to_name, t.clone());
    }
    candle_core::safetensors::save(&out, to).map_err(|e| e.to_string())
}

/// Speech-region options (faster-whisper's `VadOptions` defaults).
#[derive(Debug, Clone, Copy)]
pub struct VadOptions {
    pub threshold: f32,
    pub min_speech_ms: f64,
    pub min_silence_ms: f64,
    pub speech_pad_ms: f64,
}

impl Default for VadOptions {
    fn default() -> Self {
        VadOptions {
            threshold: 0.5,
            min_speech_ms: 0.0,
            min_silence_ms: 2000.0,
            speech_pad_ms: 400.0,
        }
    }
}

/// A region of speech, in samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpeechRegion {
    pub start: usize,
    pub end: usize,
}

/// Speech regions from chunk probabilities, as faster-whisper's `get_speech_timestamps`
/// (without its maximum-duration split: Whisper windows long regions itself).
pub fn speech_regions(probs: &[f32], samples: usize, opts: &VadOptions) -> Vec<SpeechRegion> {
    let rate = 16_000.0;
    let neg_threshold = (opts.threshold - 0.15).max(0.01);
    let min_speech = rate * opts.min_speech_ms / 1000.0;
    let min_silence = rate * opts.min_silence_ms / 1000.0;
    let pad = (rate * opts.speech_pad_ms / 1000.0) as usize;
    let mut regions: Vec<SpeechRegion> = Vec::new();
    let mut start: Option<usize> = None;
    let mut temp_end = 0usize;
    for (i, &p) in probs.iter().enumerate() {
        let pos = CHUNK * i;
        if p >= opts.threshold && temp_end != 0 {
            temp_end = 0;
        }
        if p >= opts.threshold && start.is_none() {
            start = Some(pos);
            continue;
        }
        if let Some(s) = start
            && p < neg_threshold
        {
            if temp_end == 0 {
                temp_end = pos;
            }
            if ((pos - temp_end) as f64) < min_silence {
                continue;
            }
            if ((temp_end - s) as f64) > min_speech {
                regions.push(SpeechRegion {
                    start: s,
                    end: temp_end,
                });
            }
            start = None;
            temp_end = 0;
        }
    }
    if let Some(s) = start
        && (samples.saturating_sub(s) as f64) > min_speech
    {
        regions.push(SpeechRegion {
            start: s,
            end: samples,
        });
    }
    let n = regions.len();
    for i in 0..n {
        if i == 0 {
            regions[0].start = regions[0].start.saturating_sub(pad);
        }
        if i + 1 < n {
            let gap = regions[i + 1].start.saturating_sub(regions[i].end);
            if gap < 2 * pad {
                regions[i].end += gap / 2;
                regions[i + 1].start = regions[i + 1].start.saturating_sub(gap / 2);
            } else {
                regions[i].end = (regions[i].end + pad).min(samples);
                regions[i + 1].start = regions[i + 1].start.saturating_sub(pad);
            }
        } else {
            regions[i].end = (regions[i].end + pad).min(samples);
        }
    }
    regions
}

/// The speech of a file cut out and joined, with the way back to the file's own times.
#[derive(Debug, Clone)]
pub struct SpeechOnly {
    pub samples: Vec<f32>,
    /// (end of the region in the joined audio, silence removed before it), in seconds.
    map: Vec<(f64, f64)>,
}

impl SpeechOnly {
    pub fn collect(samples: &[f32], regions: &[SpeechRegion]) -> SpeechOnly {
        let mut joined = Vec::new();
        let mut map = Vec::new();
        let mut removed = 0usize;
        let mut previous_end = 0usize;
        for r in regions {
            let (start, end) = (r.start.min(samples.len()), r.end.min(samples.len()));
            removed += start.saturating_sub(previous_end);
            previous_end = end;
            joined.extend_from_slice(&samples[start..end]);
            map.push((joined.len() as f64 / 16_000.0, removed as f64 / 16_000.0));
        }
        SpeechOnly {
            samples: joined,
            map,
        }
    }

    /// A time in the joined audio as a time in the file (an end time at a region boundary
    /// stays in the region it ends).
    pub fn original_time(&self, t: f64, is_end: bool) -> f64 {
        let idx = self
            .map
            .iter()
            .position(|&(end, _)| if is_end { t <= end } else { t < end })
            .unwrap_or(self.map.len().saturating_sub(1));
        let removed = self.map.get(idx).map_or(0.0, |&(_, r)| r);
        ((t + removed) * 100.0).round() / 100.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_join_and_times_map_back() {
        let samples: Vec<f32> = (0..16_000 * 10).map(|i| i as f32).collect();
        let regions = [
            SpeechRegion {
                start: 16_000,
                end: 48_000,
            },
            SpeechRegion {
                start: 96_000,
                end: 112_000,
            },
        ];
        let s = SpeechOnly::collect(&samples, &regions);
        assert_eq!(s.samples.len(), 48_000);
        assert_eq!(s.samples[0], 16_000.0);
        assert_eq!(s.original_time(0.5, false), 1.5);
        assert_eq!(s.original_time(2.0, true), 3.0);
        assert_eq!(s.original_time(2.0, false), 6.0);
        assert_eq!(s.original_time(2.5, false), 6.5);
    }

    #[test]
    fn probabilities_become_padded_regions() {
        // 2 s of "speech" in 10 s: chunks 62..124.
        let probs: Vec<f32> = (0..313)
            .map(|i| if (62..124).contains(&i) { 0.9 } else { 0.01 })
            .collect();
        let r = speech_regions(&probs, 160_000, &VadOptions::default());
        assert_eq!(
            r,
            [SpeechRegion {
                start: 62 * 512 - 6400,
                end: 124 * 512 + 6400
            }]
        );
        assert!(speech_regions(&[0.01; 100], 51_200, &VadOptions::default()).is_empty());
    }
}
