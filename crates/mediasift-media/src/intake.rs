//! The single entry point: sniff, check limits, dispatch to the decoder for the detected format.

use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::time::Instant;

use mediasift_core::{Config, ErrorKind, MediaError, MediaKind};

use crate::audio::{self, DecodedAudio};
use crate::ffmpeg::{self, Tools};
use crate::image::{self, DecodedImage, ImageInfo, check_pixels};
use crate::sniff::{self, Format, SNIFF_LEN, Sniffed};
use crate::text::{self, DecodedText};
use crate::video::{self, DecodedVideo};

/// Decoded content, one variant per modality.
#[derive(Debug, Clone)]
pub enum Decoded {
    Image(DecodedImage),
    Audio(DecodedAudio),
    Video(DecodedVideo),
    Text(DecodedText),
}

impl Decoded {
    pub fn kind(&self) -> MediaKind {
        match self {
            Decoded::Image(_) => MediaKind::Image,
            Decoded::Audio(_) => MediaKind::Audio,
            Decoded::Video(_) => MediaKind::Video,
            Decoded::Text(_) => MediaKind::Text,
        }
    }

    /// Whether the data ended early and only part of it was analyzed.
    pub fn truncated(&self) -> bool {
        match self {
            Decoded::Audio(a) => a.info.truncated,
            Decoded::Video(v) => v.info.truncated,
            Decoded::Image(_) | Decoded::Text(_) => false,
        }
    }
}

/// A file taken in: what it is and its decoded content.
#[derive(Debug, Clone)]
pub struct Intake {
    pub format: Format,
    pub kind: MediaKind,
    /// The file's extension when it names another format than the content.
    pub extension_mismatch: Option<String>,
    pub decoded: Decoded,
}

/// Reads, sniffs and decodes one local file under the configured limits. Blocking; callers run
/// it off the async runtime. In-process decoders are cut off by the caller's watchdog, ffmpeg
/// subprocesses by `deadline`.
pub fn decode_file(
    path: &Path,
    cfg: &Config,
    tools: &Tools,
    deadline: Instant,
) -> Result<Intake, MediaError> {
    let io = |e: std::io::Error| MediaError::new(path, ErrorKind::Io, format!("cannot read: {e}"));
    let mut file = File::open(path).map_err(io)?;
    let size = file.metadata().map_err(io)?.len();
    let limits = cfg.intake();
    if size > limits.max_file_bytes {
        return Err(MediaError::new(
            path,
            ErrorKind::TooLarge,
            format!(
                "file too large: {size} bytes exceeds max_file_bytes {}",
                limits.max_file_bytes
            ),
        ));
    }
    let mut head = Vec::with_capacity(SNIFF_LEN);
    file.by_ref()
        .take(SNIFF_LEN as u64)
        .read_to_end(&mut head)
        .map_err(io)?;
    let format = match sniff::sniff(&head) {
        Sniffed::Empty => {
            return Err(MediaError::new(
                path,
                ErrorKind::Empty,
                "empty file (0 bytes)",
            ));
        }
        Sniffed::NotMedia(what) => {
            return Err(MediaError::new(
                path,
                ErrorKind::NotMedia,
                format!("not a media file: detected {what}"),
            ));
        }
        Sniffed::Media(format) => format,
    };
    let read_all = || -> Result<Vec<u8>, MediaError> { std::fs::read(path).map_err(io) };
    let decoded = match format {
        Format::Jpeg | Format::Png | Format::Gif | Format::Webp | Format::Tiff | Format::Bmp => {
            let bytes = read_all()?;
            match image::decode_image(path, &bytes, format, limits) {
                Err(e) if e.kind == ErrorKind::Unsupported && tools.ffmpeg.is_some() => {
                    Decoded::Image(
                        image_via_ffmpeg(path, &bytes, cfg, tools, deadline).map_err(|_| e)?,
                    )
                }
                other => Decoded::Image(other?),
            }
        }
        Format::Wav | Format::Aiff | Format::Flac | Format::Mp3 | Format::Aac => {
            Decoded::Audio(audio::decode_audio(path, format, limits, tools, deadline)?)
        }
        Format::Ogg if contains(&head, b"\x80theora") => {
            decode_container(path, format, cfg, tools, deadline)?
        }
        Format::Ogg if contains(&head, b"OpusHead") => {
            Decoded::Audio(audio::decode_ffmpeg(path, limits, tools, deadline, None)?)
        }
        Format::Ogg => Decoded::Audio(audio::decode_audio(path, format, limits, tools, deadline)?),
        Format::Mp4 | Format::Matroska | Format::Avi | Format::MpegTs => {
            decode_container(path, format, cfg, tools, deadline)?
        }
        Format::Text => Decoded::Text(text::decode_text(path, &read_all()?)?),
    };
    Ok(Intake {
        format,
        kind: decoded.kind(),
        extension_mismatch: sniff::extension_mismatch(path, format),
        decoded,
    })
}

/// MP4/Matroska/AVI/TS may hold video, or only audio (M4A, MKA): the streams decide.
fn decode_container(
    path: &Path,
    format: Format,
    cfg: &Config,
    tools: &Tools,
    deadline: Instant,
) -> Result<Decoded, MediaError> {
    if tools.ffprobe.is_none() || tools.ffmpeg.is_none() {
        // Without ffprobe only an MP4 that declares itself audio (M4A/M4B brands) is certain
        // not to be video; symphonia decodes it. Anything else needs ffmpeg.
        if format == Format::Mp4 && is_audio_only_mp4(path) {
            return Ok(Decoded::Audio(audio::decode_audio(
                path,
                format,
                cfg.intake(),
                tools,
                deadline,
            )?));
        }
        return Err(MediaError::new(
            path,
            ErrorKind::MissingTool,
            format!(
                "{} needs ffmpeg and ffprobe, which are not installed (apt-get install ffmpeg)",
                format.as_str()
            ),
        ));
    }
    let probe = video::probe(path, tools, deadline)?;
    if probe.video.is_some() {
        return Ok(Decoded::Video(video::decode_video(
            path,
            probe,
            cfg.intake(),
            cfg.video(),
            tools,
            deadline,
        )?));
    }
    if probe.audio.is_some() {
        return Ok(Decoded::Audio(audio::decode_audio(
            path,
            format,
            cfg.intake(),
            tools,
            deadline,
        )?));
    }
    Err(MediaError::new(
        path,
        ErrorKind::Corrupt,
        format!(
            "{} container holds no audio or video stream",
            format.as_str()
        ),
    ))
}

/// Images the built-in decoders do not support (CCITT-compressed TIFF, exotic BMP) via ffmpeg.
fn image_via_ffmpeg(
    path: &Path,
    bytes: &[u8],
    cfg: &Config,
    tools: &Tools,
    deadline: Instant,
) -> Result<DecodedImage, MediaError> {
    let probe = video::probe(path, tools, deadline)?;
    let stream = probe
        .video
        .ok_or_else(|| MediaError::new(path, ErrorKind::Unsupported, "no image stream"))?;
    check_pixels(path, stream.width, stream.height, cfg.intake())?;
    let mut args = ffmpeg::input_args(path, "error");
    args.extend(
        [
            "-frames:v",
            "1",
            "-pix_fmt",
            "rgb24",
            "-c:v",
            "ppm",
            "-f",
            "image2pipe",
            "-",
        ]
        .map(String::from),
    );
    let max = (stream.width as usize) * (stream.height as usize) * 3 + 4096;
    let out = ffmpeg::run(path, tools.ffmpeg(path)?, &args, deadline, max)?;
    let decoded = ::image::load_from_memory_with_format(&out.stdout, ::image::ImageFormat::Pnm)
        .map_err(|e| {
            MediaError::new(
                path,
                ErrorKind::Corrupt,
                format!("ffmpeg could not decode the image: {e}"),
            )
        })?;
    let rgb = decoded.into_rgb8();
    Ok(DecodedImage {
        info: ImageInfo {
            width: rgb.width(),
            height: rgb.height(),
            color: stream.codec,
            has_alpha: false,
            exif_orientation: None,
            frame_count: None,
            exif: crate::exif::read(bytes),
            decoded_by: "ffmpeg",
        },
        rgb,
    })
}

/// The ftyp major brand of an audio-only MP4 (iTunes audio, audiobook, protected audio).
fn is_audio_only_mp4(path: &Path) -> bool {
    let mut head = [0u8; 12];
    let read = File::open(path).and_then(|mut f| f.read_exact(&mut head));
    read.is_ok() && matches!(&head[8..12], b"M4A " | b"M4B " | b"M4P ")
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}
