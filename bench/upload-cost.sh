#!/usr/bin/env bash
# Upload cost: direct vs pass-through vs full policy (verification cached and uncached), release build.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
cargo build --locked --release -q -p portcullis --bin portcullis
export PORTCULLIS_BIN="$CARGO_TARGET_DIR/release/portcullis"
cargo run --locked --release -q -p portcullis-bench --bin upload_cost
