//! Media intake: decide what a file is from its content, check it against the configured limits
//! before allocating, and decode it into what the analyzers consume (RGB8 images, mono 16 kHz
//! audio, sampled video frames with their audio track, Unicode text). Every failure is a
//! [`MediaError`] naming the file and a reason a user understands; nothing here panics on input.
//!
//! ```no_run
//! use std::time::{Duration, Instant};
//! use mediasift_core::RawConfig;
//! use mediasift_media::{Intake, Tools, decode_file};
//!
//! let cfg = RawConfig::default().validate().unwrap();
//! let tools = Tools::detect(cfg.video());
//! let deadline = Instant::now() + Duration::from_secs(60);
//! let intake: Intake = decode_file("photo.jpg".as_ref(), &cfg, &tools, deadline).unwrap();
//! println!("{} {}", intake.kind, intake.format.as_str());
//! ```

mod audio;
mod dimensions;
mod exif;
mod ffmpeg;
mod image;
mod intake;
mod jpeg;
mod resample;
mod sniff;
mod text;
mod video;

pub use audio::{AudioInfo, DecodedAudio};
pub use exif::ExifSummary;
pub use ffmpeg::Tools;
pub use image::{DecodedImage, ImageInfo};
pub use intake::{Decoded, Intake, decode_file};
pub use resample::{StreamResampler, TARGET_RATE};
pub use sniff::{Format, SNIFF_LEN, Sniffed, extension_mismatch, sniff};
pub use text::{DecodedText, TextInfo};
pub use video::{DecodedVideo, Probe, VideoFrame, VideoInfo};
