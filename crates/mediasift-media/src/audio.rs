//! Audio files: symphonia for WAV/FLAC/MP3/Vorbis/AAC/ALAC, ffmpeg for what symphonia rejects
//! (Opus above all). Output is mono f32 at 16 kHz. Truncated streams keep what decoded and say so.

use std::fs::File;
use std::path::Path;
use std::time::Instant;

use mediasift_core::{ErrorKind, IntakeConfig, MediaError};
use serde::Serialize;
use symphonia::core::codecs::audio::AudioDecoderOptions;
use symphonia::core::errors::Error as SymError;
use symphonia::core::formats::probe::Hint;
use symphonia::core::formats::{FormatOptions, TrackType};
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;

use crate::ffmpeg::{self, Tools};
use crate::resample::{StreamResampler, TARGET_RATE};
use crate::sniff::Format;

/// Decoded audio, downmixed and resampled for the analyzers.
#[derive(Debug, Clone)]
pub struct DecodedAudio {
    /// Mono samples at [`TARGET_RATE`].
    pub samples: Vec<f32>,
    pub info: AudioInfo,
}

/// What is known about an audio stream besides its samples.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AudioInfo {
    pub codec: String,
    pub sample_rate: u32,
    pub channels: u16,
    /// Duration actually decoded, in seconds.
    pub duration_secs: f64,
    /// Duration the container claims, when it says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub declared_duration_secs: Option<f64>,
    /// The stream ended early or broke off; `duration_secs` is what was recovered.
    pub truncated: bool,
    pub decoded_by: &'static str,
}

impl DecodedAudio {
    pub fn duration_secs(&self) -> f64 {
        self.samples.len() as f64 / f64::from(TARGET_RATE)
    }
}

/// Decodes an audio file, falling back to ffmpeg when symphonia cannot handle the codec.
pub fn decode_audio(
    path: &Path,
    format: Format,
    limits: &IntakeConfig,
    tools: &Tools,
    deadline: Instant,
) -> Result<DecodedAudio, MediaError> {
    let mut audio = match decode_symphonia(path, format, limits, deadline) {
        Ok(audio) => audio,
        Err(Fallback::No(err)) => return Err(err),
        Err(Fallback::Ffmpeg(reason)) => {
            if tools.ffmpeg.is_none() {
                return Err(MediaError::new(
                    path,
                    ErrorKind::MissingTool,
                    format!("{reason}; ffmpeg, which could decode it, is not installed"),
                ));
            }
            decode_ffmpeg(path, limits, tools, deadline, None)?
        }
    };
    if format == Format::Wav
        && let Some(claim) = wav_claim(path)
    {
        // The header's data size against what the file holds: a lying or cut-off WAV decodes
        // what is present and is flagged, whichever decoder read it.
        let file_len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        if claim.data_offset.saturating_add(claim.data_len) > file_len.saturating_add(1) {
            audio.info.truncated = true;
        }
        if claim.byte_rate > 0 {
            audio.info.declared_duration_secs =
                Some(claim.data_len as f64 / f64::from(claim.byte_rate));
        }
    }
    Ok(audio)
}

/// What a WAV header says about its sample data.
struct WavClaim {
    data_offset: u64,
    data_len: u64,
    byte_rate: u32,
}

/// Walks the RIFF chunks of the first 64 KB to find `fmt ` and `data`.
fn wav_claim(path: &Path) -> Option<WavClaim> {
    use std::io::Read;
    let mut head = Vec::new();
    File::open(path)
        .ok()?
        .take(64 << 10)
        .read_to_end(&mut head)
        .ok()?;
    let u32_at = |at: usize| Some(u32::from_le_bytes(head.get(at..at + 4)?.try_into().ok()?));
    let mut pos = 12;
    let mut byte_rate = 0;
    while pos + 8 <= head.len() {
        let id = head.get(pos..pos + 4)?;
        let len = u32_at(pos + 4)?;
        if id == b"fmt " {
            byte_rate = u32_at(pos + 16)?;
        } else if id == b"data" {
            return Some(WavClaim {
                data_offset: pos as u64 + 8,
                data_len: u64::from(len),
                byte_rate,
            });
        }
        pos += 8 + len as usize + (len as usize & 1);
    }
    None
}

enum Fallback {
    /// Symphonia cannot decode this; ffmpeg may.
    Ffmpeg(String),
    /// A definite answer about the file.
    No(MediaError),
}

fn hint_for(format: Format) -> Hint {
    let mut hint = Hint::new();
    let ext = match format {
        Format::Wav => "wav",
        Format::Aiff => "aiff",
        Format::Flac => "flac",
        Format::Mp3 => "mp3",
        Format::Aac => "aac",
        Format::Ogg => "ogg",
        Format::Mp4 => "m4a",
        Format::Matroska => "mka",
        _ => "",
    };
    if !ext.is_empty() {
        hint.with_extension(ext);
    }
    hint
}

fn decode_symphonia(
    path: &Path,
    format: Format,
    limits: &IntakeConfig,
    deadline: Instant,
) -> Result<DecodedAudio, Fallback> {
    let name = format.as_str().to_ascii_uppercase();
    let file = File::open(path)
        .map_err(|e| Fallback::No(MediaError::new(path, ErrorKind::Io, e.to_string())))?;
    let file_len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mss = MediaSourceStream::new(Box::new(file), Default::default());
    let mut reader = symphonia::default::get_probe()
        .probe(
            &hint_for(format),
            mss,
            FormatOptions::default(),
            MetadataOptions::default(),
        )
        .map_err(|e| classify_open(path, &name, e))?;
    let Some(track) = reader.default_track(TrackType::Audio) else {
        return Err(Fallback::No(MediaError::new(
            path,
            ErrorKind::Corrupt,
            format!("{name} has no audio track"),
        )));
    };
    let track_id = track.id;
    let declared_frames = track.num_frames;
    let Some(params) = track.codec_params.as_ref().and_then(|p| p.audio()).cloned() else {
        return Err(Fallback::Ffmpeg(format!(
            "{name}: codec parameters unknown to symphonia"
        )));
    };
    let registry = symphonia::default::get_codecs();
    let codec = registry
        .get_audio_decoder(params.codec)
        .map(|d| d.codec.info.short_name.to_string())
        .unwrap_or_else(|| params.codec.to_string());
    let mut decoder = registry
        .make_audio_decoder(&params, &AudioDecoderOptions::default())
        .map_err(|e| Fallback::Ffmpeg(format!("{name}: {e}")))?;
    let sample_rate = params.sample_rate.unwrap_or(0);
    let channels = params.channels.as_ref().map(|c| c.count()).unwrap_or(0);
    if sample_rate == 0 {
        return Err(Fallback::Ffmpeg(format!(
            "{name}: sample rate unknown to symphonia"
        )));
    }
    let declared_duration_secs = declared_frames.map(|n| n as f64 / f64::from(sample_rate));
    if let Some(declared) = declared_duration_secs
        && declared > limits.max_duration_secs
        && declared_length_plausible(format, &params, declared_frames, file_len)
    {
        return Err(Fallback::No(too_long(path, declared, limits)));
    }

    let mut resampler = StreamResampler::new(sample_rate).ok_or_else(|| {
        Fallback::No(MediaError::new(
            path,
            ErrorKind::Corrupt,
            format!("{name}: bad sample rate {sample_rate}"),
        ))
    })?;
    let max_frames_in = (limits.max_duration_secs * f64::from(sample_rate)).ceil() as u64;
    let mut frames_in: u64 = 0;
    let mut planar: Vec<Vec<f32>> = Vec::new();
    let mut mono: Vec<f32> = Vec::new();
    let mut truncated = false;
    let mut decode_errors = 0u32;
    loop {
        if Instant::now() >= deadline {
            return Err(Fallback::No(MediaError::new(
                path,
                ErrorKind::Timeout,
                format!("{name} decoding exceeded the decode timeout"),
            )));
        }
        let packet = match reader.next_packet() {
            Ok(Some(p)) => p,
            Ok(None) => break,
            Err(SymError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                truncated = true;
                break;
            }
            Err(SymError::ResetRequired) => break,
            Err(e) => {
                // Demuxing broke off mid-stream: keep what we have.
                tracing::debug!(path = %path.display(), error = %e, "Demuxer stopped early");
                truncated = true;
                break;
            }
        };
        if packet.track_id != track_id {
            continue;
        }
        let buf = match decoder.decode(&packet) {
            Ok(buf) => buf,
            Err(SymError::DecodeError(_)) | Err(SymError::IoError(_)) => {
                // A damaged packet; decoders resynchronise on the next one.
                decode_errors += 1;
                continue;
            }
            Err(e) => return Err(Fallback::Ffmpeg(format!("{name}: {e}"))),
        };
        buf.copy_to_vecs_planar::<f32>(&mut planar);
        let frames = buf.frames();
        downmix(&planar, frames, &mut mono);
        frames_in += frames as u64;
        if frames_in > max_frames_in {
            return Err(Fallback::No(too_long(
                path,
                frames_in as f64 / f64::from(sample_rate),
                limits,
            )));
        }
        resampler.push(&mono);
    }
    if let Some(declared) = declared_frames
        && frames_in + u64::from(sample_rate) / 10 < declared
    {
        truncated = true;
    }
    if frames_in == 0 {
        let kind = if truncated {
            ErrorKind::Truncated
        } else {
            ErrorKind::Corrupt
        };
        let what = if decode_errors > 0 {
            "every packet failed to decode"
        } else {
            "no audio data"
        };
        return Err(Fallback::No(MediaError::new(
            path,
            kind,
            format!("{name}: {what}"),
        )));
    }
    let samples = resampler.finish();
    Ok(DecodedAudio {
        info: AudioInfo {
            codec,
            sample_rate,
            channels: u16::try_from(channels).unwrap_or(u16::MAX),
            duration_secs: frames_in as f64 / f64::from(sample_rate),
            declared_duration_secs,
            truncated,
            decoded_by: "symphonia",
        },
        samples,
    })
}

/// Whether a header's frame count could be true given the file size. Only uncompressed PCM lets
/// us check; a WAV header claiming 4 GB in a 32 KB file is a lie, not a 37-hour recording.
fn declared_length_plausible(
    format: Format,
    params: &symphonia::core::codecs::audio::AudioCodecParameters,
    frames: Option<u64>,
    file_len: u64,
) -> bool {
    if !matches!(format, Format::Wav | Format::Aiff) {
        return true;
    }
    let bytes_per_frame = u64::from(
        params
            .bits_per_coded_sample
            .or(params.bits_per_sample)
            .unwrap_or(16)
            .div_ceil(8),
    ) * params
        .channels
        .as_ref()
        .map(|c| c.count() as u64)
        .unwrap_or(1);
    frames.is_some_and(|f| f.saturating_mul(bytes_per_frame) <= file_len.saturating_add(1024))
}

fn too_long(path: &Path, secs: f64, limits: &IntakeConfig) -> MediaError {
    MediaError::new(
        path,
        ErrorKind::TooLarge,
        format!(
            "audio too long: {secs:.0} s exceeds max_duration_secs {:.0}",
            limits.max_duration_secs
        ),
    )
}

fn classify_open(path: &Path, name: &str, err: SymError) -> Fallback {
    match err {
        SymError::IoError(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            Fallback::No(MediaError::new(
                path,
                ErrorKind::Truncated,
                format!("truncated {name}: file ends inside the header"),
            ))
        }
        SymError::IoError(e) => Fallback::No(MediaError::new(path, ErrorKind::Io, e.to_string())),
        // Probing failed or the container is new to symphonia: ffmpeg may know better.
        other => Fallback::Ffmpeg(format!("{name}: {other}")),
    }
}

fn downmix(planar: &[Vec<f32>], frames: usize, mono: &mut Vec<f32>) {
    mono.clear();
    mono.resize(frames, 0.0);
    if planar.is_empty() {
        return;
    }
    let scale = 1.0 / planar.len() as f32;
    for ch in planar {
        for (m, s) in mono.iter_mut().zip(ch.iter().take(frames)) {
            *m += s * scale;
        }
    }
}

/// Decodes the first audio stream of any file ffmpeg reads to mono 16 kHz f32.
/// `expected` is the stream's probed metadata when the caller already has it (video).
pub(crate) fn decode_ffmpeg(
    path: &Path,
    limits: &IntakeConfig,
    tools: &Tools,
    deadline: Instant,
    expected: Option<AudioInfo>,
) -> Result<DecodedAudio, MediaError> {
    let info = match expected {
        Some(info) => info,
        None => crate::video::probe(path, tools, deadline)?
            .audio
            .ok_or_else(|| MediaError::new(path, ErrorKind::Corrupt, "no audio stream found"))?,
    };
    if let Some(d) = info.declared_duration_secs
        && d > limits.max_duration_secs
    {
        return Err(too_long(path, d, limits));
    }
    let mut args = ffmpeg::input_args(path, "error");
    args.extend(
        [
            "-map", "0:a:0", "-vn", "-ac", "1", "-ar", "16000", "-f", "f32le", "-",
        ]
        .map(String::from),
    );
    let max_bytes = (limits.max_duration_secs * f64::from(TARGET_RATE) * 4.0) as usize + 4096;
    let out = ffmpeg::run(path, tools.ffmpeg(path)?, &args, deadline, max_bytes)?;
    if out.capped {
        return Err(too_long(path, limits.max_duration_secs + 1.0, limits));
    }
    let samples: Vec<f32> = out
        .stdout
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let decoded = samples.len() as f64 / f64::from(TARGET_RATE);
    if samples.is_empty() {
        return Err(MediaError::new(
            path,
            ErrorKind::Corrupt,
            format!(
                "no audio decoded: {}",
                ffmpeg::first_error_line(&out.stderr)
            ),
        ));
    }
    let short = info
        .declared_duration_secs
        .is_some_and(|d| decoded + 0.25 < d * 0.98);
    let broken = !out.success || stderr_says_truncated(&out.stderr);
    Ok(DecodedAudio {
        info: AudioInfo {
            duration_secs: decoded,
            truncated: short || broken,
            decoded_by: "ffmpeg",
            ..info
        },
        samples,
    })
}

/// ffmpeg's wording when input data runs out early.
pub(crate) fn stderr_says_truncated(stderr: &str) -> bool {
    let s = stderr.to_ascii_lowercase();
    [
        "partial file",
        "end of file",
        "truncat",
        "invalid data found",
        "error while decoding",
    ]
    .iter()
    .any(|p| s.contains(p))
}
