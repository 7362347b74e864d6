//! Reader for PyTorch's legacy serialization (`torch.save` before 1.6, `_use_new_zipfile_serialization=False`):
//! five pickles — magic number, protocol version, system info, the state dict with storages as
//! persistent ids, the storage keys — then each storage's raw bytes (u64 element count, data)
//! in key order. candle reads only the zip layout; this adapts its pickle interpreter.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use candle_core::pickle::{Object, Stack, TensorInfo};
use candle_core::{DType, Device, Tensor};

/// The magic-number pickle, byte for byte (`0x1950a86a20f9469cfc6c` as a 10-byte LONG1).
const MAGIC: [u8; 15] = [
    0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, 0x2e,
];
const PROTOCOL_VERSION: i64 = 1001;

fn pickle(r: &mut impl std::io::BufRead) -> Result<Object, String> {
    let mut stack = Stack::empty();
    stack.read_loop(r).map_err(|e| e.to_string())?;
    stack.finalize().map_err(|e| e.to_string())
}

/// Reads every tensor of a legacy `.pth` state dict (contiguous tensors only).
pub fn read(path: &Path) -> Result<Vec<(String, Tensor)>, String> {
    let mut r = BufReader::new(File::open(path).map_err(|e| e.to_string())?);
    let mut magic = [0u8; 15];
    r.read_exact(&mut magic).map_err(|e| e.to_string())?;
    if magic != MAGIC {
        return Err(
            "not a legacy PyTorch file (magic number missing; zip files load through candle)"
                .into(),
        );
    }
    let protocol = pickle(&mut r)?
        .int_or_long()
        .map_err(|o| format!("protocol: {o:?}"))?;
    if protocol != PROTOCOL_VERSION {
        return Err(format!("unsupported protocol version {protocol}"));
    }
    let sys_info = pickle(&mut r)?
        .dict()
        .map_err(|o| format!("sys info: {o:?}"))?;
    let little = sys_info
        .iter()
        .any(|(k, v)| *k == Object::Unicode("little_endian".into()) && *v == Object::Bool(true));
    if !little {
        return Err("big-endian files are not supported".into());
    }
    let state = pickle(&mut r)?
        .dict()
        .map_err(|o| format!("state dict is not a dict: {o:?}"))?;
    let mut infos: Vec<TensorInfo> = Vec::with_capacity(state.len());
    for (name, value) in state {
        if let Some(info) = value
            .into_tensor_info(name, Path::new(""))
            .map_err(|e| e.to_string())?
        {
            infos.push(info);
        }
    }
    let keys: Vec<String> = match pickle(&mut r)? {
        Object::List(items) => items
            .into_iter()
            .map(|k| k.unicode().map_err(|o| format!("key {o:?}")))
            .collect::<Result<_, _>>()?,
        other => return Err(format!("storage keys: {other:?}")),
    };
    let mut storages: HashMap<String, Vec<u8>> = HashMap::with_capacity(keys.len());
    for key in keys {
        let mut count = [0u8; 8];
        r.read_exact(&mut count)
            .map_err(|e| format!("storage {key}: {e}"))?;
        let elem = element_size(&infos, &key)
            .ok_or_else(|| format!("storage {key} is not used by any tensor"))?;
        let bytes = usize::try_from(u64::from_le_bytes(count))
            .ok()
            .and_then(|n| n.checked_mul(elem))
            .filter(|&n| n <= 1 << 34)
            .ok_or_else(|| format!("storage {key}: implausible size"))?;
        let mut data = vec![0u8; bytes];
        r.read_exact(&mut data)
            .map_err(|e| format!("storage {key} is truncated: {e}"))?;
        storages.insert(key, data);
    }
    infos
        .into_iter()
        .map(|info| {
            let key = info.path.trim_start_matches('/');
            let data = storages
                .get(key)
                .ok_or_else(|| format!("{}: storage {key} missing", info.name))?;
            Ok((info.name.clone(), tensor(&info, data)?))
        })
        .collect()
}

fn element_size(infos: &[TensorInfo], key: &str) -> Option<usize> {
    infos
        .iter()
        .find(|i| i.path.trim_start_matches('/') == key)
        .map(|i| i.dtype.size_in_bytes())
}

fn tensor(info: &TensorInfo, data: &[u8]) -> Result<Tensor, String> {
    let layout = &info.layout;
    if !layout.is_contiguous() {
        return Err(format!(
            "{}: non-contiguous tensors are not supported",
            info.name
        ));
    }
    let start = layout.start_offset();
    let len = layout.shape().elem_count() * info.dtype.size_in_bytes();
    let bytes = data
        .get(start..start + len)
        .ok_or_else(|| format!("{}: data out of range", info.name))?;
    Tensor::from_raw_buffer(bytes, info.dtype, layout.dims(), &Device::Cpu)
        .map_err(|e| e.to_string())
}

/// Converts a legacy `.pth` state dict to safetensors (f32 tensors; integer bookkeeping such as
/// `num_batches_tracked` is dropped).
pub fn convert_to_safetensors(from: &Path, to: &Path) -> Result<(), String> {
    let tensors: HashMap<String, Tensor> = read(from)?
        .into_iter()
        .filter(|(_, t)| t.dtype() == DType::F32)
        .collect();
    candle_core::safetensors::save(&tensors, to).map_err(|e| e.to_string())
}
