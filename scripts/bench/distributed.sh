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
# An optimised build, as deployed: the queue path is our own code, which the dev profile leaves
# unoptimised (about 0.7x the release figure). A cold release build takes ~20 min on 2 cores.
cargo build --release -p mediasift --locked
bin="$CARGO_TARGET_DIR/release/mediasift"
echo "==> queue throughput (no-op analyzers, $jobs jobs)"
RUST_LOG=warn "$bin" bench queue --jobs "$jobs"
echo "==> model-bound: $input, distributed vs embedded"
RUST_LOG=warn "$bin" bench distributed --input "$input"
