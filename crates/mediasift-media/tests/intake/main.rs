//! Intake of the real fixture files (copied from the shared corpus; see tests/fixtures/media/MANIFEST.tsv).
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod audio;
mod common;
mod hostile;
mod images;
mod text;
mod video;
