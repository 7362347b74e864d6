//! End-to-end tests of the `mediasift` binary on the real fixture folder.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod analyze;
mod common;
mod config;
mod inspect;
