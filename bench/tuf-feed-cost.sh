#!/usr/bin/env bash
# TUF feed cost: gateways with and without a feed to a real RSTUF, release build (docs/tuf.md).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
cargo build --locked --release -q -p portcullis --bin portcullis
export PORTCULLIS_BIN="$CARGO_TARGET_DIR/release/portcullis"
cargo run --locked --release -q -p portcullis-bench --bin tuf_feed_cost
