//! Still images: header checked against limits before any pixel allocation, EXIF orientation
//! applied, output RGB8 (alpha composited over white).

use std::io::Cursor;
use std::path::Path;

use image::{DynamicImage, ImageDecoder, ImageError, ImageFormat, ImageReader, RgbImage};
use mediasift_core::{ErrorKind, IntakeConfig, MediaError};
use serde::Serialize;

use crate::dimensions::header_dimensions;
use crate::exif::{self, ExifSummary};
use crate::sniff::Format;

/// A decoded still image (or the first frame of an animation).
#[derive(Debug, Clone)]
pub struct DecodedImage {
    /// Display-oriented pixels.
    pub rgb: RgbImage,
    pub info: ImageInfo,
}

/// What is known about an image besides its pixels.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ImageInfo {
    /// Width and height as displayed (after EXIF orientation).
    pub width: u32,
    pub height: u32,
    /// Colour layout as stored (`L8`, `Rgb16`, `Rgba8`, `Cmyk8` …).
    pub color: String,
    pub has_alpha: bool,
    /// EXIF orientation tag (1–8) when not the identity.
    pub exif_orientation: Option<u8>,
    /// Number of frames of an animation (GIF/WebP).
    pub frame_count: Option<u32>,
    pub exif: Option<ExifSummary>,
    /// Set when the built-in decoder could not handle the file and ffmpeg decoded it.
    pub decoded_by: &'static str,
}

const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1A\n";

fn image_format(format: Format) -> Option<ImageFormat> {
    Some(match format {
        Format::Jpeg => ImageFormat::Jpeg,
        Format::Png => ImageFormat::Png,
        Format::Gif => ImageFormat::Gif,
        Format::Webp => ImageFormat::WebP,
        Format::Tiff => ImageFormat::Tiff,
        Format::Bmp => ImageFormat::Bmp,
        _ => return None,
    })
}

/// Decodes an image held in memory.
pub fn decode_image(
    path: &Path,
    bytes: &[u8],
    format: Format,
    limits: &IntakeConfig,
) -> Result<DecodedImage, MediaError> {
    let name = format.as_str().to_ascii_uppercase();
    let fmt = image_format(format).ok_or_else(|| {
        MediaError::new(
            path,
            ErrorKind::Unsupported,
            format!("{name} is not an image"),
        )
    })?;
    if let Some((w, h)) = header_dimensions(format, bytes) {
        check_pixels(path, w, h, limits)?;
    }
    match format {
        Format::Jpeg => check_jpeg_complete(path, bytes)?,
        Format::Png if !bytes.starts_with(PNG_SIGNATURE) => {
            return Err(MediaError::new(
                path,
                ErrorKind::Corrupt,
                "corrupt PNG: damaged signature (typically a text-mode transfer rewrote line endings)",
            ));
        }
        _ => {}
    }
    let mut reader = ImageReader::with_format(Cursor::new(bytes), fmt);
    reader.limits(image_limits(limits));
    let mut decoder = reader
        .into_decoder()
        .map_err(|e| map_error(path, &name, bytes, e))?;
    let (w, h) = decoder.dimensions();
    check_pixels(path, w, h, limits)?;
    let original = decoder.original_color_type();
    let color = format!("{original:?}");
    let has_alpha = decoder.color_type().has_alpha();
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let exif_orientation = orientation_tag(orientation);
    let mut img = match format {
        // Header, limits and orientation from image-rs; pixels from libjpeg (see `jpeg`).
        Format::Jpeg => {
            drop(decoder);
            match crate::jpeg::decode(path, bytes)? {
                crate::jpeg::JpegPixels::Gray(g) => DynamicImage::ImageLuma8(g),
                crate::jpeg::JpegPixels::Rgb(rgb) => DynamicImage::ImageRgb8(rgb),
            }
        }
        _ => DynamicImage::from_decoder(decoder).map_err(|e| map_error(path, &name, bytes, e))?,
    };
    img.apply_orientation(orientation);
    let frame_count = match format {
        Format::Gif => Some(count_gif_frames(bytes)),
        _ => None,
    };
    let rgb = to_rgb_over_white(img);
    Ok(DecodedImage {
        info: ImageInfo {
            width: rgb.width(),
            height: rgb.height(),
            color,
            has_alpha,
            exif_orientation,
            frame_count,
            exif: exif::read(bytes),
            decoded_by: if format == Format::Jpeg {
                "libjpeg-turbo"
            } else {
                "image-rs"
            },
        },
        rgb,
    })
}

pub(crate) fn check_pixels(
    path: &Path,
    w: u32,
    h: u32,
    limits: &IntakeConfig,
) -> Result<(), MediaError> {
    let pixels = u64::from(w) * u64::from(h);
    if pixels > limits.max_pixels {
        return Err(MediaError::new(
            path,
            ErrorKind::TooLarge,
            format!(
                "image too large: {w}x{h} exceeds max_pixels {}",
                limits.max_pixels
            ),
        ));
    }
    if pixels == 0 {
        return Err(MediaError::new(
            path,
            ErrorKind::Corrupt,
            format!("image has no pixels: {w}x{h}"),
        ));
    }
    Ok(())
}

/// Position of the first `FF m` marker.
fn find_marker(bytes: &[u8], m: u8) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = bytes[from..].iter().position(|&b| b == 0xFF) {
        let at = from + i;
        if bytes.get(at + 1) == Some(&m) {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

/// Position of the last `FF m` marker.
fn rfind_marker(bytes: &[u8], m: u8) -> Option<usize> {
    let mut end = bytes.len();
    while let Some(at) = bytes[..end].iter().rposition(|&b| b == 0xFF) {
        if bytes.get(at + 1) == Some(&m) {
            return Some(at);
        }
        end = at;
    }
    None
}

fn image_limits(limits: &IntakeConfig) -> image::Limits {
    let mut l = image::Limits::default();
    // Largest per-pixel footprint a decoder may need: RGBA at 32-bit float.
    l.max_alloc = Some(limits.max_pixels.saturating_mul(16).max(64 << 20));
    l
}

/// JPEG decoders happily fill a truncated scan with grey; a file whose last scan has no EOI
/// marker after it is cut off, and we say so instead of analyzing half an image.
fn check_jpeg_complete(path: &Path, bytes: &[u8]) -> Result<(), MediaError> {
    // The usual case first: the file ends with EOI, which then follows every scan.
    if bytes.len() > 4 && bytes.ends_with(&[0xFF, 0xD9]) && find_marker(bytes, 0xDA).is_some() {
        return Ok(());
    }
    let last_sos = rfind_marker(bytes, 0xDA);
    let has_eoi = match last_sos {
        Some(pos) => find_marker(&bytes[pos..], 0xD9).is_some(),
        None => false,
    };
    if has_eoi {
        return Ok(());
    }
    let reason = match last_sos {
        Some(_) => format!(
            "truncated JPEG: image data ends at byte {} without an end-of-image marker",
            bytes.len()
        ),
        None => format!(
            "truncated JPEG: no image data (start of scan) in {} bytes",
            bytes.len()
        ),
    };
    Err(MediaError::new(path, ErrorKind::Truncated, reason))
}

fn map_error(path: &Path, name: &str, bytes: &[u8], err: ImageError) -> MediaError {
    let text = readable(&err.to_string());
    let lower = text.to_ascii_lowercase();
    let (kind, msg) = match &err {
        ImageError::Limits(_) => (
            ErrorKind::TooLarge,
            format!(
                "image too large: decoding {name} would need more memory than the max_pixels limit allows ({text})"
            ),
        ),
        ImageError::Unsupported(_) => (
            ErrorKind::Unsupported,
            format!("unsupported {name}: {text}"),
        ),
        ImageError::IoError(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => (
            ErrorKind::Truncated,
            format!(
                "truncated {name}: unexpected end of data at byte {}",
                bytes.len()
            ),
        ),
        _ if lower.contains("eof") || lower.contains("end of") || lower.contains("truncated") => (
            ErrorKind::Truncated,
            format!(
                "truncated {name}: unexpected end of data at byte {} ({text})",
                bytes.len()
            ),
        ),
        _ => (ErrorKind::Corrupt, format!("corrupt {name}: {text}")),
    };
    MediaError::new(path, kind, msg)
}

/// Decoder messages sometimes embed raw bytes (`ChunkType { type: ô¨\u{81}á, … }`); users get
/// the sentence without the garbage.
fn readable(msg: &str) -> String {
    let mut out = msg.to_string();
    while let Some(start) = out.find("ChunkType {") {
        let end = out[start..].find('}').map_or(out.len(), |e| start + e + 1);
        out.replace_range(start..end, "an invalid chunk");
    }
    out.chars().filter(|c| !c.is_control()).collect()
}

fn orientation_tag(o: image::metadata::Orientation) -> Option<u8> {
    use image::metadata::Orientation::*;
    match o {
        NoTransforms => None,
        FlipHorizontal => Some(2),
        Rotate180 => Some(3),
        FlipVertical => Some(4),
        Rotate90FlipH => Some(5),
        Rotate90 => Some(6),
        Rotate270FlipH => Some(7),
        Rotate270 => Some(8),
    }
}

fn count_gif_frames(bytes: &[u8]) -> u32 {
    use image::AnimationDecoder;
    let Ok(decoder) = image::codecs::gif::GifDecoder::new(Cursor::new(bytes)) else {
        return 1;
    };
    let n = decoder.into_frames().take_while(Result::is_ok).count();
    u32::try_from(n).unwrap_or(u32::MAX).max(1)
}

/// Converts to RGB8; transparent pixels become white rather than whatever colour hid under alpha.
/// The blend is Pillow's `alpha_composite` over opaque white, to the bit (what transformers'
/// `convert_to_rgb` does before CLIP preprocessing).
pub(crate) fn to_rgb_over_white(img: DynamicImage) -> RgbImage {
    let img = high_bytes(img);
    if !img.color().has_alpha() {
        return img.into_rgb8();
    }
    let rgba = img.into_rgba8();
    let (w, h) = rgba.dimensions();
    let mut out = RgbImage::new(w, h);
    for (src, dst) in rgba.pixels().zip(out.pixels_mut()) {
        dst.0 = over_white(src.0);
    }
    out
}

/// 16-bit colour to 8 bits as Pillow reads it (`RGB;16B`, `RGBA;16B`: the high byte), where
/// image-rs would round; the model references see Pillow's pixels.
fn high_bytes(img: DynamicImage) -> DynamicImage {
    let msb = |raw: &[u16]| raw.iter().map(|v| (v >> 8) as u8).collect::<Vec<u8>>();
    let (w, h) = (img.width(), img.height());
    let converted: Option<DynamicImage> = match &img {
        DynamicImage::ImageRgb16(i) => RgbImage::from_raw(w, h, msb(i.as_raw())).map(Into::into),
        DynamicImage::ImageRgba16(i) => {
            image::RgbaImage::from_raw(w, h, msb(i.as_raw())).map(Into::into)
        }
        _ => None,
    };
    converted.unwrap_or(img)
}

/// `libImaging/AlphaComposite.c` with an opaque white destination (7 fractional bits).
fn over_white([r, g, b, a]: [u8; 4]) -> [u8; 3] {
    if a == 0 {
        return [255; 3];
    }
    let a = u32::from(a);
    let (coef1, coef2) = (a << 7, (255 - a) << 7);
    let blend = |v: u8| {
        let t = u32::from(v) * coef1 + 255 * coef2 + (0x80 << 7);
        ((((t >> 8) + t) >> 8) >> 7).min(255) as u8
    };
    [blend(r), blend(g), blend(b)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sixteen_bit_colour_keeps_the_high_byte_as_pillow_does() {
        // Pillow 13 on a PNG of these 16-bit values gives [18, 128, 255, 0, 1, 127] (checked);
        // rounding would give 1, not 0, for 0x00FF.
        let vals = [0x1234u16, 0x80FF, 0xFF80, 0x00FF, 0x0180, 0x7F7F];
        let img = image::ImageBuffer::<image::Rgb<u16>, _>::from_raw(2, 1, vals.to_vec()).unwrap();
        let rgb = to_rgb_over_white(DynamicImage::ImageRgb16(img));
        assert_eq!(rgb.as_raw().as_slice(), &[18, 128, 255, 0, 1, 127]);
    }

    #[test]
    fn alpha_blends_over_white_with_pillows_rounding() {
        assert_eq!(over_white([10, 20, 30, 0]), [255; 3]);
        assert_eq!(over_white([10, 20, 30, 255]), [10, 20, 30]);
        // Half-transparent black over white: Pillow's alpha_composite gives 127.
        assert_eq!(over_white([0, 0, 0, 128]), [127; 3]);
    }
}
