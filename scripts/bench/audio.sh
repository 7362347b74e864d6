#!/usr/bin/env bash
# `mediasift bench audio` with its faster-whisper peer installed: a Python venv under
# /var/tmp/mediasift-bench-py with faster-whisper 1.2.1 (PyPI; CTranslate2 on the same weights),
# an optimised build, then the table (wall time and real-time factor per clip and on a long file
# of the clips concatenated, greedy and beam 5, fw float32 and int8, token equality).
# Usage: bash scripts/bench/audio.sh [mediasift bench audio options, e.g. --long-secs 0]
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib.sh
ensure_system_packages
fetch_models
python=$(bench_python "import faster_whisper" faster-whisper==1.2.1)
cargo build --release -p mediasift --locked
RUST_LOG=warn MEDIASIFT_BENCH_PYTHON="$python" \
    "$CARGO_TARGET_DIR/release/mediasift" bench audio "$@"
