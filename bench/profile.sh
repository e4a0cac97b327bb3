#!/usr/bin/env bash
# Where the gateway's CPU goes in one bench scenario: runs `bench --only SCENARIO` under
# `perf record` (cpu-clock sampling: hardware counters are not available on every VM) and
# prints, for the gateway's proxy threads and its SQLite worker threads, the share of samples
# by code area and the top leaf functions. Release build (line tables, no frame pointers:
# leaves are exact, call chains are not).
# Usage: bench/profile.sh SCENARIO [OUT]    e.g. bench/profile.sh "GET c=64" bench/results/profile-get-c64.txt
set -euo pipefail
cd "$(dirname "$0")/.."
scenario="${1:?usage: bench/profile.sh SCENARIO [OUT]}"
out="${2:-/dev/stdout}"
. scripts/env.sh
. bench/lib/packages.sh
ensure_bench_packages
command -v perf >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq linux-perf >/dev/null; }
cargo build --locked --release -q -p portcullis --bin portcullis
cargo build --locked --release -q -p portcullis-bench
export PORTCULLIS_BIN="$CARGO_TARGET_DIR/release/portcullis"
data="$(mktemp -d)"
trap 'rm -rf "$data"' EXIT
ulimit -n "$(ulimit -Hn)"
perf record -q -e cpu-clock -F 2999 -g -a -o "$data/perf.data" -- \
    "$CARGO_TARGET_DIR/release/bench" --only "$scenario" --rounds 1 --seconds 5 >"$data/bench.out" 2>&1
perf script -i "$data/perf.data" -F comm,tid,ip,sym,dso 2>/dev/null >"$data/perf.script"
{
    echo "# bench/profile.sh \"$scenario\" ($(date -u +%FT%TZ))"
    grep "round" "$data/bench.out" || true
    python3 bench/perf_summary.py "$data/perf.script" "portcullis prox" "sqlx-sqlite-wor" "Pingora HTTP Pr" "nginx"
} >"$out"
