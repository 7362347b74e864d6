//! Content sniffing: the kind and format of a file from its first bytes, never from its name.

use std::path::Path;

use mediasift_core::MediaKind;
use serde::Serialize;

/// How many leading bytes [`sniff`] looks at.
pub const SNIFF_LEN: usize = 4096;

/// A recognised container or encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Jpeg,
    Png,
    Gif,
    Webp,
    Tiff,
    Bmp,
    Wav,
    Aiff,
    Flac,
    Mp3,
    /// ADTS-framed raw AAC.
    Aac,
    Ogg,
    /// ISO base media (MP4, M4A, MOV, 3GP).
    Mp4,
    /// Matroska or WebM.
    Matroska,
    Avi,
    MpegTs,
    Text,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Jpeg => "jpeg",
            Format::Png => "png",
            Format::Gif => "gif",
            Format::Webp => "webp",
            Format::Tiff => "tiff",
            Format::Bmp => "bmp",
            Format::Wav => "wav",
            Format::Aiff => "aiff",
            Format::Flac => "flac",
            Format::Mp3 => "mp3",
            Format::Aac => "aac",
            Format::Ogg => "ogg",
            Format::Mp4 => "mp4",
            Format::Matroska => "matroska",
            Format::Avi => "avi",
            Format::MpegTs => "mpegts",
            Format::Text => "text",
        }
    }

    /// The kind a file of this format has before its streams are probed. Containers that may
    /// hold video or only audio report their most likely kind; [`crate::decode`] settles it.
    pub fn default_kind(self) -> MediaKind {
        match self {
            Format::Jpeg
            | Format::Png
            | Format::Gif
            | Format::Webp
            | Format::Tiff
            | Format::Bmp => MediaKind::Image,
            Format::Wav | Format::Aiff | Format::Flac | Format::Mp3 | Format::Aac | Format::Ogg => {
                MediaKind::Audio
            }
            Format::Mp4 | Format::Matroska | Format::Avi | Format::MpegTs => MediaKind::Video,
            Format::Text => MediaKind::Text,
        }
    }

    /// Whether a file extension (lower-case, no dot) is a usual name for this format.
    pub fn matches_extension(self, ext: &str) -> bool {
        let known: &[&str] = match self {
            Format::Jpeg => &["jpg", "jpeg", "jpe", "jfif"],
            Format::Png => &["png"],
            Format::Gif => &["gif"],
            Format::Webp => &["webp"],
            Format::Tiff => &["tif", "tiff", "dng"],
            Format::Bmp => &["bmp", "dib"],
            Format::Wav => &["wav", "wave"],
            Format::Aiff => &["aif", "aiff", "aifc"],
            Format::Flac => &["flac"],
            Format::Mp3 => &["mp3", "mp2", "mpga"],
            Format::Aac => &["aac"],
            Format::Ogg => &["ogg", "oga", "ogv", "opus", "spx"],
            Format::Mp4 => &["mp4", "m4a", "m4v", "m4b", "mov", "3gp", "3g2", "qt"],
            Format::Matroska => &["mkv", "mka", "webm", "mk3d"],
            Format::Avi => &["avi"],
            Format::MpegTs => &["ts", "m2ts", "mts"],
            Format::Text => &[
                "txt", "text", "md", "csv", "tsv", "log", "json", "xml", "srt", "vtt",
            ],
        };
        known.contains(&ext)
    }
}

impl std::str::FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> Result<Format, String> {
        ALL_FORMATS
            .into_iter()
            .find(|f| f.as_str() == s)
            .ok_or_else(|| format!("unknown format `{s}`"))
    }
}

const ALL_FORMATS: [Format; 17] = [
    Format::Jpeg,
    Format::Png,
    Format::Gif,
    Format::Webp,
    Format::Tiff,
    Format::Bmp,
    Format::Wav,
    Format::Aiff,
    Format::Flac,
    Format::Mp3,
    Format::Aac,
    Format::Ogg,
    Format::Mp4,
    Format::Matroska,
    Format::Avi,
    Format::MpegTs,
    Format::Text,
];

/// What the first bytes of a file say it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sniffed {
    Media(Format),
    /// Recognised, but not media we analyze; the string names it for the user (`HTML`).
    NotMedia(&'static str),
    Empty,
}

/// Detects the format from the leading bytes of a file (at most [`SNIFF_LEN`] are used).
pub fn sniff(head: &[u8]) -> Sniffed {
    let b = &head[..head.len().min(SNIFF_LEN)];
    if b.is_empty() {
        return Sniffed::Empty;
    }
    // Before the MPEG frame-sync check: FF FE is also a UTF-16 byte-order mark.
    if b.starts_with(b"\xFF\xFE") || b.starts_with(b"\xFE\xFF") || b.starts_with(b"\xEF\xBB\xBF") {
        return Sniffed::Media(Format::Text);
    }
    if let Some(format) = sniff_binary_media(b) {
        return Sniffed::Media(format);
    }
    if let Some(name) = sniff_not_media(b) {
        return Sniffed::NotMedia(name);
    }
    if looks_like_text(b) {
        return Sniffed::Media(Format::Text);
    }
    Sniffed::NotMedia("binary data of unknown format")
}

fn sniff_binary_media(b: &[u8]) -> Option<Format> {
    let at = |off: usize, magic: &[u8]| b.get(off..off + magic.len()) == Some(magic);
    let format = if at(0, b"\xFF\xD8\xFF") {
        Format::Jpeg
    } else if at(0, b"\x89PNG") {
        // Also a PNG whose signature was mangled (CRLF conversion): the decoder says so.
        Format::Png
    } else if at(0, b"GIF87a") || at(0, b"GIF89a") {
        Format::Gif
    } else if at(0, b"RIFF") && at(8, b"WEBP") {
        Format::Webp
    } else if at(0, b"RIFF") && at(8, b"WAVE") || at(0, b"RF64") && at(8, b"WAVE") {
        Format::Wav
    } else if at(0, b"RIFF") && at(8, b"AVI ") {
        Format::Avi
    } else if at(0, b"II*\0") || at(0, b"MM\0*") || at(0, b"II+\0") || at(0, b"MM\0+") {
        Format::Tiff
    } else if at(0, b"BM") && b.len() >= 26 && bmp_header_plausible(b) {
        Format::Bmp
    } else if at(0, b"FORM") && (at(8, b"AIFF") || at(8, b"AIFC")) {
        Format::Aiff
    } else if at(0, b"fLaC") {
        Format::Flac
    } else if at(0, b"OggS") {
        Format::Ogg
    } else if at(4, b"ftyp") {
        Format::Mp4
    } else if at(0, b"\x1A\x45\xDF\xA3") {
        Format::Matroska
    } else if at(0, b"ID3") {
        // ID3v2 tags front MP3 and (rarely) ADTS AAC; symphonia tells them apart.
        Format::Mp3
    } else if b[0] == 0x47 && b.len() > 188 && b[188] == 0x47 {
        Format::MpegTs
    } else if b.len() >= 4 && b[0] == 0xFF && b[1] & 0xF6 == 0xF0 {
        Format::Aac
    } else if b.len() >= 4 && b[0] == 0xFF && b[1] & 0xE0 == 0xE0 && mpeg_audio_frame(b) {
        Format::Mp3
    } else {
        return None;
    };
    Some(format)
}

fn bmp_header_plausible(b: &[u8]) -> bool {
    // BITMAPFILEHEADER reserved fields are zero and the DIB header size is one of the known ones.
    let reserved = u32::from_le_bytes([b[6], b[7], b[8], b[9]]);
    let dib = u32::from_le_bytes([b[14], b[15], b[16], b[17]]);
    reserved == 0 && matches!(dib, 12 | 40 | 52 | 56 | 64 | 108 | 124)
}

fn mpeg_audio_frame(b: &[u8]) -> bool {
    let version = (b[1] >> 3) & 0b11;
    let layer = (b[1] >> 1) & 0b11;
    let bitrate = b[2] >> 4;
    let rate = (b[2] >> 2) & 0b11;
    version != 0b01 && layer != 0 && bitrate != 0 && bitrate != 0xF && rate != 0b11
}

fn sniff_not_media(b: &[u8]) -> Option<&'static str> {
    let at = |magic: &[u8]| b.starts_with(magic);
    let name = if at(b"\x7FELF") {
        "ELF executable"
    } else if at(b"MZ") {
        "Windows executable"
    } else if at(b"\xCF\xFA\xED\xFE") || at(b"\xCE\xFA\xED\xFE") || at(b"\xCA\xFE\xBA\xBE") {
        "Mach-O executable"
    } else if at(b"#!") {
        "script"
    } else if at(b"%PDF-") {
        "PDF document (not supported yet)"
    } else if at(b"PK\x03\x04") || at(b"PK\x05\x06") {
        "ZIP archive"
    } else if at(b"\x1F\x8B") {
        "gzip archive"
    } else if at(b"7z\xBC\xAF\x27\x1C") {
        "7z archive"
    } else if at(b"Rar!") {
        "RAR archive"
    } else if at(b"SQLite format 3\0") {
        "SQLite database"
    } else if is_html(b) {
        "HTML"
    } else {
        return None;
    };
    Some(name)
}

fn is_html(b: &[u8]) -> bool {
    let text = String::from_utf8_lossy(&b[..b.len().min(512)]).to_ascii_lowercase();
    let t = text.trim_start_matches('\u{feff}').trim_start();
    [
        "<!doctype html",
        "<html",
        "<head",
        "<body",
        "<!--",
        "<script",
        "<title",
    ]
    .iter()
    .any(|p| t.starts_with(p))
}

/// Text without a byte-order mark: no NUL bytes and few control characters (UTF-8 or Latin-1).
fn looks_like_text(b: &[u8]) -> bool {
    if b.contains(&0) {
        return false;
    }
    let control = b
        .iter()
        .filter(|&&c| c < 0x20 && !matches!(c, b'\n' | b'\r' | b'\t' | 0x0C))
        .count();
    control * 100 <= b.len()
}

/// The file's extension when it names another format than the content has.
pub fn extension_mismatch(path: &Path, format: Format) -> Option<String> {
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    // Any extension is fine for text; only media extensions on text are a mismatch.
    if format == Format::Text && !is_media_extension(&ext) {
        return None;
    }
    (!format.matches_extension(&ext)).then_some(ext)
}

fn is_media_extension(ext: &str) -> bool {
    ALL_FORMATS
        .iter()
        .any(|f| *f != Format::Text && f.matches_extension(ext))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_bytes_decide_not_names() {
        assert_eq!(
            sniff(b"\x89PNG\r\n\x1A\n\0\0\0\rIHDR"),
            Sniffed::Media(Format::Png)
        );
        assert_eq!(sniff(b"RIFF\0\0\0\0WAVEfmt "), Sniffed::Media(Format::Wav));
        assert_eq!(sniff(b"\0\0\0\x20ftypisom"), Sniffed::Media(Format::Mp4));
        assert_eq!(sniff(b""), Sniffed::Empty);
        assert_eq!(sniff(b"<!DOCTYPE html><html>"), Sniffed::NotMedia("HTML"));
        assert_eq!(
            sniff(b"\x7FELF\x02\x01\x01"),
            Sniffed::NotMedia("ELF executable")
        );
        assert_eq!(
            sniff("héllo wörld\n".as_bytes()),
            Sniffed::Media(Format::Text)
        );
        assert_eq!(sniff(b"\xFF\xFEh\0i\0"), Sniffed::Media(Format::Text));
        assert_eq!(
            sniff(b"\x01\x02\x03\x00\x05"),
            Sniffed::NotMedia("binary data of unknown format")
        );
    }

    #[test]
    fn extension_mismatch_is_reported_for_media_names_only() {
        assert_eq!(
            extension_mismatch(Path::new("a.jpg"), Format::Png).as_deref(),
            Some("jpg")
        );
        assert_eq!(extension_mismatch(Path::new("a.JPG"), Format::Jpeg), None);
        assert_eq!(
            extension_mismatch(Path::new("notes.conf"), Format::Text),
            None
        );
        assert_eq!(
            extension_mismatch(Path::new("x.jpg"), Format::Text).as_deref(),
            Some("jpg")
        );
        assert_eq!(extension_mismatch(Path::new("noext"), Format::Png), None);
    }
}
