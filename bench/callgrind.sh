#!/usr/bin/env bash
# Instructions per request under callgrind (repeatable, unlike time): bare pingora, the gateway
# in pass-through and in full policy, for the real 29 KiB sdist with its PEP 740 attestation,
# a 1 MiB wheel and a small read on a kept-alive connection; per-function breakdown for the
# gateway. Release build.
# Usage: bench/callgrind.sh [--uploads N] [--out FILE.md]   (default: 100 uploads, stdout)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
command -v valgrind >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind >/dev/null; }
cargo build --locked --release -q -p portcullis --bin portcullis
cargo build --locked --release -q -p portcullis-bench
export PORTCULLIS_REAL_BIN="$CARGO_TARGET_DIR/release/portcullis"
ulimit -n "$(ulimit -Hn)"
"$CARGO_TARGET_DIR/release/upload_instructions" "$@"
