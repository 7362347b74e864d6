//! Image dimensions read straight from format headers, so a bomb (a PNG declaring 100000×100000,
//! a GIF frame wider than its 44-byte file) is rejected before any decoder allocates for it.

use crate::sniff::Format;

/// Width and height a header declares; `None` when the header is not readable here (the
/// decoder then checks its own dimensions before allocating).
pub fn header_dimensions(format: Format, b: &[u8]) -> Option<(u32, u32)> {
    match format {
        Format::Png => png(b),
        Format::Gif => gif(b),
        Format::Bmp => bmp(b),
        Format::Webp => webp(b),
        Format::Jpeg => jpeg(b),
        _ => None,
    }
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
fn le16(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from(u16::from_le_bytes(
        b.get(at..at + 2)?.try_into().ok()?,
    )))
}
fn be16(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from(u16::from_be_bytes(
        b.get(at..at + 2)?.try_into().ok()?,
    )))
}
fn le24(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at + 3)?;
    Some(u32::from(s[0]) | u32::from(s[1]) << 8 | u32::from(s[2]) << 16)
}

fn png(b: &[u8]) -> Option<(u32, u32)> {
    (b.get(12..16)? == b"IHDR").then_some(())?;
    Some((be32(b, 16)?, be32(b, 20)?))
}

/// The logical screen, grown to cover the first image descriptor (frames may lie about both).
fn gif(b: &[u8]) -> Option<(u32, u32)> {
    let (mut w, mut h) = (le16(b, 6)?, le16(b, 8)?);
    let flags = *b.get(10)?;
    let mut pos = 13
        + if flags & 0x80 != 0 {
            3 * (1usize << ((flags & 7) + 1))
        } else {
            0
        };
    loop {
        match *b.get(pos)? {
            0x21 => {
                pos += 2;
                loop {
                    let len = usize::from(*b.get(pos)?);
                    pos += 1 + len;
                    if len == 0 {
                        break;
                    }
                }
            }
            0x2C => {
                let (left, top) = (le16(b, pos + 1)?, le16(b, pos + 3)?);
                let (fw, fh) = (le16(b, pos + 5)?, le16(b, pos + 7)?);
                w = w.max(left + fw);
                h = h.max(top + fh);
                return Some((w, h));
            }
            _ => return Some((w, h)),
        }
    }
}

fn bmp(b: &[u8]) -> Option<(u32, u32)> {
    let dib = u32::from_le_bytes(b.get(14..18)?.try_into().ok()?);
    if dib == 12 {
        return Some((le16(b, 18)?, le16(b, 20)?));
    }
    let w = i32::from_le_bytes(b.get(18..22)?.try_into().ok()?);
    let h = i32::from_le_bytes(b.get(22..26)?.try_into().ok()?);
    Some((w.unsigned_abs(), h.unsigned_abs()))
}

fn webp(b: &[u8]) -> Option<(u32, u32)> {
    match b.get(12..16)? {
        b"VP8X" => Some((le24(b, 24)? + 1, le24(b, 27)? + 1)),
        b"VP8 " => Some((le16(b, 26)? & 0x3FFF, le16(b, 28)? & 0x3FFF)),
        b"VP8L" => {
            let v = u32::from_le_bytes(b.get(21..25)?.try_into().ok()?);
            Some(((v & 0x3FFF) + 1, ((v >> 14) & 0x3FFF) + 1))
        }
        _ => None,
    }
}

/// The first SOFn marker's frame size.
fn jpeg(b: &[u8]) -> Option<(u32, u32)> {
    let mut pos = 2;
    loop {
        while *b.get(pos)? != 0xFF {
            pos += 1;
        }
        while *b.get(pos)? == 0xFF {
            pos += 1;
        }
        let marker = *b.get(pos)?;
        pos += 1;
        if matches!(marker, 0xD8 | 0x01 | 0xD0..=0xD7) {
            continue;
        }
        let len = be16(b, pos)? as usize;
        if matches!(marker, 0xC0..=0xCF) && !matches!(marker, 0xC4 | 0xC8 | 0xCC) {
            return Some((be16(b, pos + 5)?, be16(b, pos + 3)?));
        }
        if marker == 0xDA || len < 2 {
            return None;
        }
        pos += len;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn png_and_gif_headers_are_read() {
        let mut png = b"\x89PNG\r\n\x1A\n\0\0\0\rIHDR".to_vec();
        png.extend(100_000u32.to_be_bytes());
        png.extend(100_000u32.to_be_bytes());
        assert_eq!(
            header_dimensions(Format::Png, &png),
            Some((100_000, 100_000))
        );
        // 32x32 screen, no colour table, then an image descriptor 65535 wide at left 0.
        let gif = b"GIF89a\x20\0\x20\0\0\0\0\x2C\0\0\0\0\xFF\xFF\x10\0\0";
        assert_eq!(header_dimensions(Format::Gif, gif), Some((65535, 32)));
    }
}
