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
# The distributed-mode tests run against real servers: NATS 2.15 (JetStream), PostgreSQL +
# pgvector (18 or 16, by CPU: see services.sh) and SeaweedFS S3, started on loopback for this run and stopped after it.
echo "==> starting NATS, Postgres + pgvector, SeaweedFS (scripts/services.sh)"
eval "$(bash scripts/services.sh start)"
trap 'bash scripts/services.sh stop' EXIT
echo "==> cargo test"
cargo test --workspace --locked
