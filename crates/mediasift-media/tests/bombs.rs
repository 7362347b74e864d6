//! Decompression bombs are rejected from their headers, before any large allocation. A counting
//! global allocator measures the peak heap use of decoding each one; this is its own test binary
//! so that no other test allocates at the same time.
#![allow(unsafe_code)] // the counting allocator below; no unsafe code outside this test

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use mediasift_core::{ErrorKind, RawConfig};
use mediasift_media::{Tools, decode_file};

struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts bytes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let now = CURRENT.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        PEAK.fetch_max(now, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

#[test]
fn bombs_are_rejected_without_a_large_allocation() {
    let cfg = RawConfig::default().validate().expect("valid");
    let tools = Tools::default(); // no ffmpeg needed: the headers decide
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/media/bad");
    // bad_06: PNG declaring 100000x100000 RGB (30 GB decoded); bad_04: GIF whose frame is
    // 65535 pixels wide in a 44-byte file; bad_05: fuzzed TIFF asking for a huge strip.
    for file in ["bad_06.png", "bad_04.gif", "bad_05.tif"] {
        let before = CURRENT.load(Ordering::Relaxed);
        PEAK.store(before, Ordering::Relaxed);
        let err = decode_file(
            &dir.join(file),
            &cfg,
            &tools,
            Instant::now() + Duration::from_secs(30),
        )
        .expect_err("a bomb must not decode");
        let extra = PEAK.load(Ordering::Relaxed) - before;
        assert_eq!(err.kind, ErrorKind::TooLarge, "{file}: {err}");
        assert!(extra < 8 << 20, "{file}: peak allocation {extra} bytes");
    }
}
