//! EXIF capture time and camera, when a file carries them.

use std::io::Cursor;

use serde::Serialize;

/// The EXIF fields users search and sort by.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExifSummary {
    /// `DateTimeOriginal` (or `DateTime`) as written by the camera, `YYYY-MM-DD HH:MM:SS`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub captured_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub camera_make: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub camera_model: Option<String>,
}

/// Reads EXIF from a JPEG, TIFF, PNG or WebP held in memory; `None` when absent or unreadable
/// (broken EXIF never fails the image).
pub fn read(bytes: &[u8]) -> Option<ExifSummary> {
    // Keep what parses when some field is malformed (a wrongly typed GPS tag, say).
    let data = exif::Reader::new()
        .continue_on_error(true)
        .read_from_container(&mut Cursor::new(bytes))
        .or_else(|e| e.distill_partial_result(|_| {}))
        .ok()?;
    let text = |tag| {
        let field = data.get_field(tag, exif::In::PRIMARY)?;
        match &field.value {
            exif::Value::Ascii(parts) => parts
                .first()
                .map(|p| {
                    String::from_utf8_lossy(p)
                        .trim_matches(['\0', ' '])
                        .to_string()
                })
                .filter(|s| !s.is_empty()),
            _ => None,
        }
    };
    let captured_at = text(exif::Tag::DateTimeOriginal)
        .or_else(|| text(exif::Tag::DateTime))
        .map(|s| normalise_datetime(&s));
    let summary = ExifSummary {
        captured_at,
        camera_make: text(exif::Tag::Make),
        camera_model: text(exif::Tag::Model),
    };
    (summary.captured_at.is_some()
        || summary.camera_make.is_some()
        || summary.camera_model.is_some())
    .then_some(summary)
}

/// EXIF writes `2024:03:14 10:22:01`; the date part becomes ISO-like.
fn normalise_datetime(s: &str) -> String {
    match s.split_once(' ') {
        Some((date, time)) => format!("{} {time}", date.replace(':', "-")),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn exif_dates_become_iso_like() {
        assert_eq!(
            super::normalise_datetime("2024:03:14 10:22:01"),
            "2024-03-14 10:22:01"
        );
    }
}
