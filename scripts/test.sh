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
# The model tests run in-process, not through mediasift's main, which re-runs itself with
# OpenBLAS kernels for this CPU when OpenBLAS misreads it (Debian's 0.3.21 takes some newer CPUs
# for a Prescott: see crates/mediasift-models/src/blas_core.rs). Give the tests the same kernels.
if [ -z "${OPENBLAS_CORETYPE:-}" ]; then
    core=$(OPENBLAS_VERBOSE=2 cargo run -p mediasift --locked --quiet -- config show 2>&1 >/dev/null |
        sed -n 's/^Core: //p' | tail -n 1 || true)
    if [ -n "$core" ]; then
        export OPENBLAS_CORETYPE="$core"
        echo "==> OpenBLAS kernels for the tests: $core"
    fi
fi
# The distributed-mode tests run against real servers: NATS 2.15 (JetStream), PostgreSQL +
# pgvector (18 or 16, by CPU: see services.sh) and SeaweedFS S3, started on loopback for this run and stopped after it.
echo "==> starting NATS, Postgres + pgvector, SeaweedFS (scripts/services.sh)"
eval "$(bash scripts/services.sh start)"
trap 'bash scripts/services.sh stop' EXIT
echo "==> cargo test"
cargo test --workspace --locked
