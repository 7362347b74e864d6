#!/usr/bin/env bash
# The main job on the embedded default: analyze the sample folder shipped in the repo into
# ./mediasift-data (SQLite + local blobs), then show what came out. Installs what is missing
# (system packages, the offline model set).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_system_packages

fetch_models
bin="$CARGO_TARGET_DIR/debug/mediasift"
data="${MEDIASIFT_DATA:-./mediasift-data}"
"$bin" analyze tests/fixtures/media --data "$data"
echo
echo "Failed files and why:"
"$bin" failures --data "$data"
echo
echo "Near-duplicate images:"
"$bin" duplicates --data "$data"
echo
echo "Records: $("$bin" export --data "$data" --format jsonl | wc -l) (mediasift export --data $data --format jsonl)"
