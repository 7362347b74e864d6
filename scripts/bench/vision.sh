#!/usr/bin/env bash
# `mediasift bench vision` with its onnxruntime peers installed: a Python venv under
# /var/tmp/mediasift-bench-py with onnx, onnxruntime, numpy, pillow and safetensors (PyPI), an
# optimised build, then the table (matmul peak, open_nsfw / MobileNetV2 / MiniLM vs
# onnxruntime, CLIP ViT-B/32 per batch, sustained and end to end from JPEG files).
# Usage: bash scripts/bench/vision.sh [mediasift bench vision options, e.g. --clip-images 200]
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib.sh
ensure_system_packages
fetch_models
python=$(bench_python "import onnx, onnxruntime, numpy, PIL, safetensors" \
    onnx onnxruntime numpy pillow safetensors)
cargo build --release -p mediasift --locked
RUST_LOG=warn MEDIASIFT_BENCH_PYTHON="$python" \
    "$CARGO_TARGET_DIR/release/mediasift" bench vision "$@"
