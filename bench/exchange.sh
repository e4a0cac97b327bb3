#!/usr/bin/env bash
# Trusted-publishing exchange throughput and latency against a release-built gateway.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
cargo build --locked --release -q -p portcullis --bin portcullis
export PORTCULLIS_BIN="$CARGO_TARGET_DIR/release/portcullis"
cargo run --locked --release -q -p portcullis-bench --bin exchange
