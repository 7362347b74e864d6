//! Text documents: UTF-8 (with or without BOM), UTF-16 with BOM, Latin-1 fallback.

use std::path::Path;

use mediasift_core::{ErrorKind, MediaError};
use serde::Serialize;

/// A decoded text document.
#[derive(Debug, Clone)]
pub struct DecodedText {
    pub text: String,
    pub info: TextInfo,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TextInfo {
    /// `utf-8`, `utf-16le`, `utf-16be` or `iso-8859-1`.
    pub encoding: &'static str,
    pub chars: usize,
    pub words: usize,
    pub lines: usize,
}

/// Decodes text bytes, choosing the encoding from a BOM, then UTF-8 validity, then Latin-1.
pub fn decode_text(path: &Path, bytes: &[u8]) -> Result<DecodedText, MediaError> {
    let (text, encoding) = if let Some(rest) = bytes.strip_prefix(b"\xEF\xBB\xBF") {
        (utf8(path, rest)?, "utf-8")
    } else if bytes.starts_with(b"\xFF\xFE") {
        (utf16(path, &bytes[2..], u16::from_le_bytes)?, "utf-16le")
    } else if bytes.starts_with(b"\xFE\xFF") {
        (utf16(path, &bytes[2..], u16::from_be_bytes)?, "utf-16be")
    } else if let Ok(s) = std::str::from_utf8(bytes) {
        (s.to_string(), "utf-8")
    } else {
        // Every byte is a valid ISO-8859-1 code point, mapped one to one onto U+0000..U+00FF.
        (bytes.iter().map(|&b| char::from(b)).collect(), "iso-8859-1")
    };
    let info = TextInfo {
        encoding,
        chars: text.chars().count(),
        words: text.split_whitespace().count(),
        lines: text.lines().count(),
    };
    Ok(DecodedText { text, info })
}

fn utf8(path: &Path, bytes: &[u8]) -> Result<String, MediaError> {
    String::from_utf8(bytes.to_vec()).map_err(|e| {
        MediaError::new(
            path,
            ErrorKind::Corrupt,
            format!(
                "invalid UTF-8 after a UTF-8 byte-order mark at byte {}",
                e.utf8_error().valid_up_to() + 3
            ),
        )
    })
}

fn utf16(path: &Path, bytes: &[u8], unit: fn([u8; 2]) -> u16) -> Result<String, MediaError> {
    let units = bytes.chunks_exact(2).map(|c| unit([c[0], c[1]]));
    char::decode_utf16(units)
        .collect::<Result<String, _>>()
        .map_err(|e| MediaError::new(path, ErrorKind::Corrupt, format!("invalid UTF-16: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_are_detected() {
        let p = Path::new("t.txt");
        assert_eq!(
            decode_text(p, "grüß".as_bytes()).unwrap().info.encoding,
            "utf-8"
        );
        let latin1 = decode_text(p, b"gr\xFC\xDF").unwrap();
        assert_eq!(
            (latin1.text.as_str(), latin1.info.encoding),
            ("grüß", "iso-8859-1")
        );
        let utf16: Vec<u8> = [0xFF, 0xFE]
            .into_iter()
            .chain("hé".encode_utf16().flat_map(u16::to_le_bytes))
            .collect();
        let d = decode_text(p, &utf16).unwrap();
        assert_eq!((d.text.as_str(), d.info.encoding), ("hé", "utf-16le"));
    }
}
