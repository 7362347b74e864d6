//! Model inference allocates and frees tensors of many megabytes per layer. glibc serves such
//! blocks with fresh `mmap`s and unmaps them on free, so every forward pass page-faults its
//! activations in again (clear_page and page-fault handling were ~18% of CLIP's profile).
//! Raising the mmap threshold to glibc's maximum (32 MiB) and never trimming the heap keeps
//! freed blocks for reuse.

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn keep_freed_memory() {
    // SAFETY: mallopt only tunes allocator parameters; called first thing in main, before any
    // other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn keep_freed_memory() {}
