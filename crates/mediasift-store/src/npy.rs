//! NumPy `.npy` (format 1.0) encoding of float32 matrices, so embeddings open with `numpy.load`.

/// Encodes a row-major `rows × cols` float32 matrix.
pub fn encode_f32(rows: usize, cols: usize, data: &[f32]) -> Vec<u8> {
    debug_assert_eq!(rows * cols, data.len());
    let mut header =
        format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {cols}), }}");
    // Magic (6) + version (2) + header length (2) + header + '\n' is a multiple of 64.
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat(unpadded.next_multiple_of(64) - unpadded));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + data.len() * 4);
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(
        &u16::try_from(header.len())
            .unwrap_or(u16::MAX)
            .to_le_bytes(),
    );
    out.extend_from_slice(header.as_bytes());
    for v in data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// Decodes what [`encode_f32`] wrote (format 1.0, `<f4`, C order): `(rows, cols, data)`.
/// `None` for anything else.
pub fn decode_f32(bytes: &[u8]) -> Option<(usize, usize, Vec<f32>)> {
    if bytes.len() < 10 || &bytes[..8] != b"\x93NUMPY\x01\x00" {
        return None;
    }
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = std::str::from_utf8(bytes.get(10..10 + header_len)?).ok()?;
    if !header.contains("'descr': '<f4'") || !header.contains("'fortran_order': False") {
        return None;
    }
    let shape = header.split("'shape': (").nth(1)?.split(')').next()?;
    let dims: Vec<usize> = shape
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(|d| d.parse().ok())
        .collect::<Option<_>>()?;
    let (rows, cols) = match dims[..] {
        [n] => (1, n),
        [r, c] => (r, c),
        _ => return None,
    };
    let data = bytes.get(10 + header_len..)?;
    if data.len() != rows.checked_mul(cols)?.checked_mul(4)? {
        return None;
    }
    let values = data
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    Some((rows, cols, values))
}

#[cfg(test)]
mod tests {
    #[test]
    fn decode_reads_back_what_encode_wrote() {
        let data = [1.0, -2.5, 3.0, 4.0, 5.0, 6.25];
        let bytes = super::encode_f32(3, 2, &data);
        assert_eq!(super::decode_f32(&bytes), Some((3, 2, data.to_vec())));
        assert_eq!(super::decode_f32(&bytes[..bytes.len() - 1]), None);
        assert_eq!(super::decode_f32(b"not numpy"), None);
    }

    #[test]
    fn header_is_aligned_and_data_follows() {
        let bytes = super::encode_f32(2, 3, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        assert_eq!((10 + header_len) % 64, 0);
        let header = std::str::from_utf8(&bytes[10..10 + header_len]).unwrap();
        assert!(header.contains("'shape': (2, 3)") && header.ends_with('\n'));
        let data = &bytes[10 + header_len..];
        assert_eq!(data.len(), 24);
        assert_eq!(f32::from_le_bytes(data[20..24].try_into().unwrap()), 6.0);
    }
}
