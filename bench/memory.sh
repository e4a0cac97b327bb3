#!/usr/bin/env bash
# Peak RSS of a release-built gateway during large streamed uploads and downloads.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
cargo build --locked --release -q -p portcullis --bin portcullis
export PORTCULLIS_BIN="$CARGO_TARGET_DIR/release/portcullis"
cargo run --locked --release -q -p portcullis-bench --bin memory
