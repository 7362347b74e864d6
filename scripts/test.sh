#!/usr/bin/env bash
# Every check CI runs: formatting, clippy with warnings as errors, and all tests (unit,
# integration on the real fixture media and real model weights, end-to-end CLI runs).
# Installs what is missing first (system packages, the offline model set).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_system_packages

echo "==> cargo fmt --check"
cargo fmt --all --check
echo "==> cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings
fetch_models
echo "==> cargo test"
cargo test --workspace --locked
