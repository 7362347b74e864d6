//! The x86-64 vector instruction sets our hand-written kernels ([`crate::packed_gemm`],
//! [`crate::depthwise3x3`]) are stamped out for, given once: each macro here calls a kernel
//! macro with the set's target feature, its lanes and the intrinsics the kernels use.

/// Calls `$kernel!($name, feature, lanes, load, store, fma, add, max, min, set1, zero, ...)`
/// with AVX-512F (16 lanes), passing any further arguments through.
macro_rules! with_avx512 {
    ($kernel:ident, $name:ident $(, $rest:tt)*) => {
        $kernel!(
            $name,
            "avx512f",
            16,
            std::arch::x86_64::_mm512_loadu_ps,
            std::arch::x86_64::_mm512_storeu_ps,
            std::arch::x86_64::_mm512_fmadd_ps,
            std::arch::x86_64::_mm512_add_ps,
            std::arch::x86_64::_mm512_max_ps,
            std::arch::x86_64::_mm512_min_ps,
            std::arch::x86_64::_mm512_set1_ps,
            std::arch::x86_64::_mm512_setzero_ps
            $(, $rest)*
        );
    };
}

/// As [`with_avx512`], with AVX2 + FMA (8 lanes).
macro_rules! with_avx2 {
    ($kernel:ident, $name:ident $(, $rest:tt)*) => {
        $kernel!(
            $name,
            "avx2,fma",
            8,
            std::arch::x86_64::_mm256_loadu_ps,
            std::arch::x86_64::_mm256_storeu_ps,
            std::arch::x86_64::_mm256_fmadd_ps,
            std::arch::x86_64::_mm256_add_ps,
            std::arch::x86_64::_mm256_max_ps,
            std::arch::x86_64::_mm256_min_ps,
            std::arch::x86_64::_mm256_set1_ps,
            std::arch::x86_64::_mm256_setzero_ps
            $(, $rest)*
        );
    };
}

pub(crate) use {with_avx2, with_avx512};
