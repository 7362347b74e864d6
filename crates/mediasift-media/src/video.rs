//! Video through ffmpeg: probe the streams, sample frames (every N seconds plus scene changes),
//! extract the first audio track. Everything runs under the file's decode deadline.

use std::path::Path;
use std::time::Instant;

use image::RgbImage;
use mediasift_core::{ErrorKind, IntakeConfig, MediaError, VideoConfig};
use serde::{Deserialize, Serialize};

use crate::audio::{self, AudioInfo, DecodedAudio};
use crate::ffmpeg::{self, Tools};
use crate::image::check_pixels;

/// Frames are scaled so that their longer side is at most this (models use 224–384 px).
const FRAME_MAX_SIDE: u32 = 640;

/// One sampled frame and when it is shown.
#[derive(Debug, Clone)]
pub struct VideoFrame {
    pub time_secs: f64,
    pub rgb: RgbImage,
}

/// A decoded video: sampled frames, the audio track, and stream facts.
#[derive(Debug, Clone)]
pub struct DecodedVideo {
    pub frames: Vec<VideoFrame>,
    pub audio: Option<DecodedAudio>,
    pub info: VideoInfo,
}

/// Stream facts from ffprobe, plus what decoding found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VideoInfo {
    pub container: String,
    pub video_codec: String,
    pub width: u32,
    pub height: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fps: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub declared_duration_secs: Option<f64>,
    /// Up to the last decoded frame or audio sample.
    pub duration_secs: f64,
    pub frames_sampled: usize,
    pub truncated: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audio: Option<AudioInfo>,
}

/// What ffprobe says about a file.
#[derive(Debug, Clone)]
pub struct Probe {
    pub container: String,
    pub duration_secs: Option<f64>,
    pub video: Option<VideoStream>,
    pub audio: Option<AudioInfo>,
}

#[derive(Debug, Clone)]
pub struct VideoStream {
    pub codec: String,
    pub width: u32,
    pub height: u32,
    pub fps: Option<f64>,
    pub duration_secs: Option<f64>,
}

#[derive(Deserialize)]
struct ProbeJson {
    #[serde(default)]
    streams: Vec<StreamJson>,
    format: Option<FormatJson>,
}

#[derive(Deserialize)]
struct StreamJson {
    codec_type: Option<String>,
    codec_name: Option<String>,
    width: Option<u32>,
    height: Option<u32>,
    avg_frame_rate: Option<String>,
    sample_rate: Option<String>,
    channels: Option<u16>,
    duration: Option<String>,
    #[serde(default)]
    disposition: Disposition,
}

#[derive(Deserialize, Default)]
struct Disposition {
    #[serde(default)]
    attached_pic: u8,
}

#[derive(Deserialize)]
struct FormatJson {
    format_name: Option<String>,
    duration: Option<String>,
}

/// Runs ffprobe on a file.
pub fn probe(path: &Path, tools: &Tools, deadline: Instant) -> Result<Probe, MediaError> {
    let args: Vec<String> = [
        "-v",
        "error",
        "-print_format",
        "json",
        "-show_format",
        "-show_streams",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([path.to_string_lossy().into_owned()])
    .collect();
    let out = ffmpeg::run(path, tools.ffprobe(path)?, &args, deadline, 4 << 20)?;
    let parsed: ProbeJson = serde_json::from_slice(&out.stdout).map_err(|_| {
        MediaError::new(
            path,
            ErrorKind::Corrupt,
            format!(
                "not a readable media container: {}",
                ffmpeg::first_error_line(&out.stderr)
            ),
        )
    })?;
    let Some(format) = parsed.format else {
        return Err(MediaError::new(
            path,
            ErrorKind::Corrupt,
            format!(
                "not a readable media container: {}",
                ffmpeg::first_error_line(&out.stderr)
            ),
        ));
    };
    let secs = |s: &Option<String>| {
        s.as_deref()
            .and_then(|v| v.parse::<f64>().ok())
            .filter(|d| d.is_finite() && *d > 0.0)
    };
    let video = parsed
        .streams
        .iter()
        .find(|s| s.codec_type.as_deref() == Some("video") && s.disposition.attached_pic == 0)
        .map(|s| VideoStream {
            codec: s.codec_name.clone().unwrap_or_else(|| "unknown".into()),
            width: s.width.unwrap_or(0),
            height: s.height.unwrap_or(0),
            fps: s.avg_frame_rate.as_deref().and_then(parse_rate),
            duration_secs: secs(&s.duration),
        });
    let audio = parsed
        .streams
        .iter()
        .find(|s| s.codec_type.as_deref() == Some("audio"))
        .map(|s| AudioInfo {
            codec: s.codec_name.clone().unwrap_or_else(|| "unknown".into()),
            sample_rate: s
                .sample_rate
                .as_deref()
                .and_then(|r| r.parse().ok())
                .unwrap_or(0),
            channels: s.channels.unwrap_or(0),
            duration_secs: 0.0,
            declared_duration_secs: secs(&s.duration).or_else(|| secs(&format.duration)),
            truncated: false,
            decoded_by: "ffmpeg",
        });
    Ok(Probe {
        container: format.format_name.unwrap_or_else(|| "unknown".into()),
        duration_secs: secs(&format.duration),
        video,
        audio,
    })
}

fn parse_rate(r: &str) -> Option<f64> {
    let (n, d) = r.split_once('/')?;
    let (n, d) = (n.parse::<f64>().ok()?, d.parse::<f64>().ok()?);
    (d > 0.0 && n > 0.0).then(|| n / d)
}

/// Decodes a probed video: sampled frames and the audio track.
pub fn decode_video(
    path: &Path,
    probe: Probe,
    limits: &IntakeConfig,
    cfg: &VideoConfig,
    tools: &Tools,
    deadline: Instant,
) -> Result<DecodedVideo, MediaError> {
    let Some(stream) = probe.video.clone() else {
        return Err(MediaError::new(path, ErrorKind::Corrupt, "no video stream"));
    };
    check_pixels(path, stream.width, stream.height, limits)?;
    if let Some(d) = probe.duration_secs
        && d > limits.max_duration_secs
    {
        return Err(MediaError::new(
            path,
            ErrorKind::TooLarge,
            format!(
                "video too long: {d:.0} s exceeds max_duration_secs {:.0}",
                limits.max_duration_secs
            ),
        ));
    }
    let (frames, frames_stderr) = sample_frames(path, &stream, cfg, tools, deadline)?;
    let audio = match probe.audio.clone() {
        Some(info) => match audio::decode_ffmpeg(path, limits, tools, deadline, Some(info)) {
            Ok(a) => Some(a),
            Err(e) if e.kind == ErrorKind::Timeout || e.kind == ErrorKind::MissingTool => {
                return Err(e);
            }
            Err(e) => {
                tracing::debug!(path = %path.display(), error = %e, "Audio track undecodable");
                None
            }
        },
        None => None,
    };
    if frames.is_empty() {
        let kind = if audio::stderr_says_truncated(&frames_stderr) {
            ErrorKind::Truncated
        } else {
            ErrorKind::Corrupt
        };
        return Err(MediaError::new(
            path,
            kind,
            format!(
                "no video frame could be decoded: {}",
                ffmpeg::first_error_line(&frames_stderr)
            ),
        ));
    }
    let last_frame = frames.last().map(|f| f.time_secs).unwrap_or(0.0);
    let audio_secs = audio.as_ref().map(|a| a.duration_secs()).unwrap_or(0.0);
    let declared = probe.duration_secs.or(stream.duration_secs);
    let audio_truncated = audio.as_ref().is_some_and(|a| a.info.truncated);
    let video_truncated = audio::stderr_says_truncated(&frames_stderr);
    // Without audio the last sampled frame can trail the end by up to one interval.
    let reach = if audio.is_some() {
        audio_secs
    } else {
        last_frame + cfg.frame_interval_secs
    };
    let short = declared.is_some_and(|d| reach + 0.5 < d * 0.95);
    let truncated = audio_truncated || video_truncated || short;
    Ok(DecodedVideo {
        info: VideoInfo {
            container: probe.container,
            video_codec: stream.codec,
            width: stream.width,
            height: stream.height,
            fps: stream.fps,
            declared_duration_secs: declared,
            duration_secs: audio_secs.max(last_frame),
            frames_sampled: frames.len(),
            truncated,
            audio: audio.as_ref().map(|a| a.info.clone()),
        },
        frames,
        audio,
    })
}

/// Frames every `frame_interval_secs` and at scene changes, as PPM through a pipe, with their
/// timestamps from ffmpeg's `showinfo` filter.
fn sample_frames(
    path: &Path,
    stream: &VideoStream,
    cfg: &VideoConfig,
    tools: &Tools,
    deadline: Instant,
) -> Result<(Vec<VideoFrame>, String), MediaError> {
    let interval = cfg.frame_interval_secs;
    let mut select = format!("isnan(prev_selected_t)+gte(t-prev_selected_t\\,{interval})");
    if cfg.scene_detection {
        select.push_str(&format!("+gt(scene\\,{})", cfg.scene_threshold));
    }
    let scale = if stream.width.max(stream.height) > FRAME_MAX_SIDE {
        format!(
            ",scale=w='min({FRAME_MAX_SIDE},iw)':h='min({FRAME_MAX_SIDE},ih)':force_original_aspect_ratio=decrease"
        )
    } else {
        String::new()
    };
    let mut args = ffmpeg::input_args(path, "info");
    args.extend([
        "-map".into(),
        "0:v:0".into(),
        "-an".into(),
        "-vf".into(),
        format!("select={select}{scale},showinfo"),
        "-fps_mode".into(),
        "vfr".into(),
        "-frames:v".into(),
        cfg.max_frames.to_string(),
        "-c:v".into(),
        "ppm".into(),
        "-f".into(),
        "image2pipe".into(),
        "-".into(),
    ]);
    let max_bytes = (cfg.max_frames as usize) * (FRAME_MAX_SIDE as usize).pow(2) * 3 + 4096;
    let out = ffmpeg::run(path, tools.ffmpeg(path)?, &args, deadline, max_bytes)?;
    let times = showinfo_times(&out.stderr);
    let images = parse_ppm_stream(&out.stdout);
    let frames = images
        .into_iter()
        .enumerate()
        .map(|(i, rgb)| VideoFrame {
            time_secs: times.get(i).copied().unwrap_or(i as f64 * interval),
            rgb,
        })
        .collect();
    // Keep only diagnostics, not showinfo's per-frame lines, for error messages.
    let diagnostics = out
        .stderr
        .lines()
        .filter(|l| {
            !l.contains("Parsed_showinfo")
                && !l.trim_start().starts_with("Stream")
                && !l.contains("Input #")
        })
        .collect::<Vec<_>>()
        .join("\n");
    Ok((frames, diagnostics))
}

fn showinfo_times(stderr: &str) -> Vec<f64> {
    stderr
        .lines()
        .filter(|l| l.contains("Parsed_showinfo") && l.contains("pts_time:"))
        .filter_map(|l| {
            let rest = &l[l.find("pts_time:")? + "pts_time:".len()..];
            rest.split_whitespace().next()?.parse().ok()
        })
        .collect()
}

/// Splits concatenated binary PPM (P6, maxval 255) images.
fn parse_ppm_stream(mut data: &[u8]) -> Vec<RgbImage> {
    let mut images = Vec::new();
    while let Some((img, rest)) = parse_ppm(data) {
        images.push(img);
        data = rest;
    }
    images
}

fn parse_ppm(data: &[u8]) -> Option<(RgbImage, &[u8])> {
    let mut fields = Vec::with_capacity(3);
    let mut pos = data.strip_prefix(b"P6").map(|_| 2)?;
    while fields.len() < 3 {
        while data.get(pos)?.is_ascii_whitespace() {
            pos += 1;
        }
        let start = pos;
        while data.get(pos)?.is_ascii_digit() {
            pos += 1;
        }
        fields.push(
            std::str::from_utf8(&data[start..pos])
                .ok()?
                .parse::<usize>()
                .ok()?,
        );
    }
    pos += 1; // the single whitespace after maxval
    let (w, h, max) = (fields[0], fields[1], fields[2]);
    if max != 255 {
        return None;
    }
    let len = w.checked_mul(h)?.checked_mul(3)?;
    let pixels = data.get(pos..pos + len)?;
    let img = RgbImage::from_raw(
        u32::try_from(w).ok()?,
        u32::try_from(h).ok()?,
        pixels.to_vec(),
    )?;
    Some((img, &data[pos + len..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ppm_stream_splits_into_frames() {
        let mut data = b"P6\n2 1\n255\n".to_vec();
        data.extend([1, 2, 3, 4, 5, 6]);
        data.extend(b"P6 1 1 255\n");
        data.extend([7, 8, 9]);
        let frames = parse_ppm_stream(&data);
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[0].get_pixel(1, 0).0, [4, 5, 6]);
        assert_eq!(frames[1].get_pixel(0, 0).0, [7, 8, 9]);
    }

    #[test]
    fn showinfo_lines_give_timestamps() {
        let log = "[Parsed_showinfo_1 @ 0x1] n:   0 pts:      0 pts_time:0       duration\n\
                   [Parsed_showinfo_1 @ 0x1] n:   1 pts:  24576 pts_time:2.0    duration";
        assert_eq!(showinfo_times(log), vec![0.0, 2.0]);
    }
}
