//! Which kernels OpenBLAS runs on this CPU, and which it should.
//!
//! OpenBLAS picks its kernels when the library loads, from the CPU's model number. Debian
//! bookworm's 0.3.21 does not know CPUs newer than itself and falls back to SSE3: it takes a
//! 5th-generation Xeon (family 6, model 207, AVX-512) for a Prescott, and every product through
//! it (candle's matmul: CLIP, MiniLM, Whisper's encoder) runs at a sixth of the speed (a 1024³
//! product at 28–36 GFLOP/s against 176 with its SkylakeX kernels, measured here). Our build
//! assumes x86-64-v3, so a kernel set without AVX2 is never right for it. `OPENBLAS_CORETYPE`
//! overrides the choice, but OpenBLAS reads it before `main`; the binary re-executes itself
//! with it set (see mediasift's `blas_kernels`).

/// OpenBLAS kernel sets (as `openblas_get_corename` names them) that use AVX2 or better.
const MODERN: [&str; 5] = ["haswell", "zen", "skylakex", "cooperlake", "sapphirerapids"];

/// What this CPU can run, as far as choosing OpenBLAS kernels goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuVectors {
    /// AVX-512 F, CD, BW, DQ and VL (what OpenBLAS's SkylakeX kernels use).
    pub avx512: bool,
    /// AVX2 and FMA (Haswell's kernels).
    pub avx2: bool,
}

impl CpuVectors {
    pub fn detect() -> CpuVectors {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            CpuVectors {
                avx512: has!("avx512f")
                    && has!("avx512cd")
                    && has!("avx512bw")
                    && has!("avx512dq")
                    && has!("avx512vl"),
                avx2: has!("avx2") && has!("fma"),
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        CpuVectors {
            avx512: false,
            avx2: false,
        }
    }
}

/// Whether the OpenBLAS kernel set `core` (as `openblas_get_corename` or `OPENBLAS_VERBOSE`
/// name it, in any case) uses AVX2 or better.
pub fn avx2_or_better(core: &str) -> bool {
    MODERN.contains(&core.trim().to_ascii_lowercase().as_str())
}

/// The `OPENBLAS_CORETYPE` to run instead of `core`, when `core` is an older kernel set than
/// `cpu` runs (`None` when the choice is fine or nothing better exists).
pub fn better_core(core: &str, cpu: CpuVectors) -> Option<&'static str> {
    if avx2_or_better(core) {
        return None;
    }
    if cpu.avx512 {
        Some("SkylakeX")
    } else if cpu.avx2 {
        Some("Haswell")
    } else {
        None
    }
}

/// The kernel set OpenBLAS chose (`None` without the `openblas` feature).
#[cfg(feature = "openblas")]
#[allow(unsafe_code)]
pub fn openblas_core() -> Option<String> {
    #[link(name = "openblas")]
    unsafe extern "C" {
        fn openblas_get_corename() -> *const std::ffi::c_char;
    }
    // SAFETY: OpenBLAS returns a pointer to a static NUL-terminated name (or null).
    unsafe {
        let name = openblas_get_corename();
        (!name.is_null()).then(|| {
            std::ffi::CStr::from_ptr(name)
                .to_string_lossy()
                .into_owned()
        })
    }
}

#[cfg(not(feature = "openblas"))]
pub fn openblas_core() -> Option<String> {
    None
}

/// `(chosen, better)` when OpenBLAS chose older kernels than this CPU runs.
pub fn openblas_core_override() -> Option<(String, &'static str)> {
    let core = openblas_core()?;
    better_core(&core, CpuVectors::detect()).map(|better| (core, better))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pre_avx2_kernels_are_replaced_by_what_the_cpu_runs() {
        let both = CpuVectors {
            avx512: true,
            avx2: true,
        };
        let avx2 = CpuVectors {
            avx512: false,
            avx2: true,
        };
        let old = CpuVectors {
            avx512: false,
            avx2: false,
        };
        assert_eq!(better_core("Prescott", both), Some("SkylakeX"));
        assert_eq!(better_core("Prescott", avx2), Some("Haswell"));
        assert_eq!(better_core("Sandybridge", avx2), Some("Haswell"));
        assert_eq!(better_core("Prescott", old), None);
        for fine in ["Haswell", "Zen", "SkylakeX", "Cooperlake", "SapphireRapids"] {
            assert_eq!(better_core(fine, both), None, "{fine}");
        }
    }
}
