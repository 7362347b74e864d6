//! JPEG pixels through libjpeg-turbo's decoder (as built in MozJPEG): accurate integer IDCT
//! and fancy upsampling, the defaults Pillow decodes with, so a JPEG's pixels equal the ones
//! the model references saw. CMYK/YCCK files are read as Adobe-inverted CMYK and converted to
//! RGB with Pillow's formula, as Pillow does.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use image::{GrayImage, RgbImage};
use mediasift_core::{ErrorKind, MediaError};
use mozjpeg::{ColorSpace, Decompress};

/// Decoded JPEG pixels, as stored (before EXIF orientation).
pub(crate) enum JpegPixels {
    Gray(GrayImage),
    Rgb(RgbImage),
}

/// Decodes `bytes`; libjpeg's fatal errors (which unwind out of its error handler) become a
/// `corrupt` error naming the file.
pub(crate) fn decode(path: &Path, bytes: &[u8]) -> Result<JpegPixels, MediaError> {
    let corrupt = |reason: String| MediaError::new(path, ErrorKind::Corrupt, reason);
    match catch_unwind(AssertUnwindSafe(|| decode_inner(bytes))) {
        Ok(Ok(Some(px))) => Ok(px),
        Ok(Ok(None)) => Err(corrupt("corrupt JPEG: pixel buffer size mismatch".into())),
        Ok(Err(e)) => Err(corrupt(format!("corrupt JPEG: {e}"))),
        Err(payload) => {
            let msg = payload
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| payload.downcast_ref::<&str>().copied())
                .unwrap_or("libjpeg error");
            let msg = msg.strip_prefix("libjpeg fatal error: ").unwrap_or(msg);
            Err(corrupt(format!("corrupt JPEG: {msg}")))
        }
    }
}

fn decode_inner(bytes: &[u8]) -> std::io::Result<Option<JpegPixels>> {
    let d = Decompress::new_mem(bytes)?;
    let (w, h) = (d.width() as u32, d.height() as u32);
    Ok(match d.color_space() {
        ColorSpace::JCS_GRAYSCALE => {
            let mut started = d.grayscale()?;
            let px: Vec<u8> = started.read_scanlines()?;
            started.finish()?;
            GrayImage::from_raw(w, h, px).map(JpegPixels::Gray)
        }
        ColorSpace::JCS_CMYK | ColorSpace::JCS_YCCK => {
            let mut started = d.to_colorspace(ColorSpace::JCS_CMYK)?;
            let px: Vec<[u8; 4]> = started.read_scanlines()?;
            started.finish()?;
            let rgb: Vec<u8> = px.into_iter().flat_map(adobe_cmyk_to_rgb).collect();
            RgbImage::from_raw(w, h, rgb).map(JpegPixels::Rgb)
        }
        _ => {
            let mut started = d.rgb()?;
            let px: Vec<u8> = started.read_scanlines()?;
            started.finish()?;
            RgbImage::from_raw(w, h, px).map(JpegPixels::Rgb)
        }
    })
}

/// Pillow: rawmode `CMYK;I` (Adobe files store inverted ink), then `cmyk2rgb`:
/// `255 - k - c·(255 - k)/255` per channel, with its rounding.
fn adobe_cmyk_to_rgb(stored: [u8; 4]) -> [u8; 3] {
    let nk = u32::from(stored[3]); // 255 - k, with k = 255 - stored
    let channel = |s: u8| {
        let c = 255 - u32::from(s);
        let t = c * nk + 128;
        let muldiv255 = ((t >> 8) + t) >> 8;
        nk.saturating_sub(muldiv255) as u8
    };
    [channel(stored[0]), channel(stored[1]), channel(stored[2])]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adobe_cmyk_matches_pillow_at_the_corners() {
        // Stored (inverted) 255 = no ink; stored k 0 = full black.
        assert_eq!(adobe_cmyk_to_rgb([255, 255, 255, 255]), [255, 255, 255]);
        assert_eq!(adobe_cmyk_to_rgb([0, 0, 0, 255]), [0, 0, 0]);
        assert_eq!(adobe_cmyk_to_rgb([255, 255, 255, 0]), [0, 0, 0]);
        assert_eq!(adobe_cmyk_to_rgb([0, 255, 255, 255]), [0, 255, 255]);
    }

    #[test]
    fn garbage_is_a_typed_error_not_a_panic() {
        let err = match decode(
            Path::new("x.jpg"),
            b"\xff\xd8\xff\xe0 definitely not a jpeg",
        ) {
            Err(e) => e,
            Ok(_) => panic!("decoded garbage"),
        };
        assert_eq!(err.kind, ErrorKind::Corrupt);
        assert!(err.to_string().contains("x.jpg"), "{err}");
    }
}
