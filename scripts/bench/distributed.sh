#!/usr/bin/env bash
# Benchmarks of the distributed mode against real servers started here (scripts/services.sh):
#   1. queue throughput with no-op analyzers (enqueue → record through NATS + Postgres)
#   2. the media folder through the distributed mode vs `mediasift analyze`
# Usage: bash scripts/bench/distributed.sh [--jobs N] [--input DIR]
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib.sh
ensure_system_packages
jobs=20000
input=tests/fixtures/media
while [ $# -gt 0 ]; do
    case "$1" in
    --jobs) jobs=$2; shift 2 ;;
    --input) input=$2; shift 2 ;;
    *) echo "usage: $0 [--jobs N] [--input DIR]" >&2; exit 2 ;;
    esac
done
fetch_models
eval "$(bash scripts/services.sh start)"
trap 'bash scripts/services.sh stop' EXIT
export MEDIASIFT__DISTRIBUTED__NATS_URL="$MEDIASIFT_TEST_NATS_URL"
export MEDIASIFT__DISTRIBUTED__POSTGRES_URL="$MEDIASIFT_TEST_PG_URL"
# The dev profile (dependencies and model code optimised) shares the warm build of the tests.
cargo build -p mediasift --locked
bin="$CARGO_TARGET_DIR/debug/mediasift"
echo "==> queue throughput (no-op analyzers, $jobs jobs)"
RUST_LOG=warn "$bin" bench queue --jobs "$jobs"
echo "==> model-bound: $input, distributed vs embedded"
RUST_LOG=warn "$bin" bench distributed --input "$input"
