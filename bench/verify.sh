#!/usr/bin/env bash
# In-process Sigstore verification cost per bundle kind, and cached lookups (release build).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
cargo run --locked --release -q -p portcullis-bench --bin verify
