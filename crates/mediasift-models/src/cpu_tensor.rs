//! Borrowing a CPU tensor's f32 values, for our kernels that work on slices.

use candle_core::{DType, Storage, Tensor};

/// Calls `f` with the values of a contiguous f32 CPU tensor; `None` for other devices, dtypes
/// or layouts (the caller falls back to candle's ops).
pub fn with_f32<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> candle_core::Result<Option<R>> {
    if !t.device().is_cpu() || t.dtype() != DType::F32 || !t.is_contiguous() {
        return Ok(None);
    }
    let (guard, layout) = t.storage_and_layout();
    let Storage::Cpu(cpu) = &*guard else {
        return Ok(None);
    };
    let start = layout.start_offset();
    let Some(values) = cpu.as_slice::<f32>()?.get(start..start + t.elem_count()) else {
        candle_core::bail!("tensor storage shorter than its shape");
    };
    Ok(Some(f(values)))
}
