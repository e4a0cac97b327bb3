#!/usr/bin/env bash
# Portcullis vs sigstore-python 4.5.1: offline Sigstore bundle verification of the same
# conformance cases in the same run, two ways:
#   - whole process: hyperfine, `portcullis verify-bundle` vs `python -m sigstore verify identity --offline`;
#   - in-process: bench/src/bin/verify.rs (cargo run) vs bench/sigstore_python_inprocess.py.
# Result: bench/results/verify-compare.md (also printed). Everything is offline: sigstore-python
# gets the trusted root through a ClientTrustConfig file (--trust-config) or Verifier(trusted_root=),
# never TUF, and runs inside a network namespace with no network when `unshare -n` is permitted.
# Knobs: BENCH_RUNS (30), BENCH_WARMUP (3), PY_ITERATIONS (500, in-process sigstore-python).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. scripts/env.sh

SIGSTORE_VERSION=4.5.1
RUNS="${BENCH_RUNS:-30}"
WARMUP="${BENCH_WARMUP:-3}"
PY_ITERATIONS="${PY_ITERATIONS:-500}"
VENV="$PORTCULLIS_TOOLS/bench-venv"
FIXTURES="$(cd tests/fixtures && pwd)"
SUITE="$FIXTURES/sigstore-conformance/bundle-verify"
PRODUCTION_ROOT="$FIXTURES/trusted-roots/public-good-production.trusted_root.json"
DEFAULT_IDENTITY="https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon/.github/workflows/extremely-dangerous-oidc-beacon.yml@refs/heads/main"
DEFAULT_ISSUER="https://token.actions.githubusercontent.com"
CASES=(happy-path-v0.3 happy-path-intoto-in-dsse-v3 rekor2-happy-path)
OUT=bench/results/verify-compare.md

log() { printf '==> %s\n' "$*" >&2; }

# apt-get install, running apt-get update first only when the lists have no candidate.
apt_install() {
    local pkg
    for pkg in "$@"; do
        if ! apt-cache policy "$pkg" 2>/dev/null | grep -q 'Candidate: [^(]'; then
            apt-get update -qq
            break
        fi
    done
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# --- tools -------------------------------------------------------------------------------
if ! command -v hyperfine >/dev/null; then
    log "installing hyperfine"
    apt_install hyperfine
fi

stamp="$VENV/.portcullis-bench-stamp"
want="sigstore==$SIGSTORE_VERSION $(python3 -c 'import sys; print(sys.version.split()[0])')"
if [[ ! -x "$VENV/bin/python" || "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
    log "installing sigstore-python $SIGSTORE_VERSION into $VENV"
    python3 -c 'import venv, ensurepip' 2>/dev/null || apt_install python3-venv
    python3 -m venv --clear "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check "sigstore==$SIGSTORE_VERSION"
    printf '%s\n' "$want" >"$stamp"
fi
PY="$VENV/bin/python"
[[ "$("$PY" -m sigstore --version)" == "sigstore $SIGSTORE_VERSION" ]] || {
    echo "unexpected sigstore-python version in $VENV" >&2
    exit 1
}

log "building release portcullis"
cargo build --locked --release -p portcullis --bin portcullis
PORTCULLIS="$CARGO_TARGET_DIR/release/portcullis"

# No network for the verifiers: a namespace without network if we may create one, and in any
# case proxies that refuse, so an accidental call to Sigstore fails instead of going out.
NONET=()
if unshare -n true 2>/dev/null; then NONET=(unshare -n); fi
DEAD_PROXY=http://127.0.0.1:9
OFFLINE_ENV=(env HTTPS_PROXY="$DEAD_PROXY" HTTP_PROXY="$DEAD_PROXY" https_proxy="$DEAD_PROXY"
    http_proxy="$DEAD_PROXY" ALL_PROXY="$DEAD_PROXY" NO_PROXY= no_proxy=)
offline() { "${NONET[@]}" "${OFFLINE_ENV[@]}" "$@"; }

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

load_before="$(cut -d' ' -f1-3 /proc/loadavg)"

# --- per-case inputs and the two command lines --------------------------------------------
declare -A P_CMD S_CMD ROOT_OF
for case in "${CASES[@]}"; do
    dir="$SUITE/$case"
    root="$PRODUCTION_ROOT"
    [[ -f "$dir/trusted_root.json" ]] && root="$dir/trusted_root.json"
    artifact="$SUITE/a.txt"
    [[ -f "$dir/artifact" ]] && artifact="$dir/artifact"
    identity="$DEFAULT_IDENTITY"
    [[ -f "$dir/identity" ]] && identity="$(<"$dir/identity")"
    issuer="$DEFAULT_ISSUER"
    [[ -f "$dir/issuer" ]] && issuer="$(<"$dir/issuer")"
    ROOT_OF[$case]="$root"

    # sigstore-python's CLI takes a custom trusted root only inside a ClientTrustConfig
    # (--trust-config); the signing config is required by the format but unused by verify.
    "$PY" - "$root" "$TMP/$case.trust-config.json" <<'EOF'
import json, sys
root = json.load(open(sys.argv[1]))
json.dump({
    "mediaType": "application/vnd.dev.sigstore.clienttrustconfig.v0.1+json",
    "trustedRoot": root,
    "signingConfig": {"mediaType": "application/vnd.dev.sigstore.signingconfig.v0.2+json"},
}, open(sys.argv[2], "w"))
EOF
    P_CMD[$case]="$(printf '%q ' "$PORTCULLIS" verify-bundle --bundle "$dir/bundle.sigstore.json" \
        --certificate-identity "$identity" --certificate-oidc-issuer "$issuer" \
        --trusted-root "$root" "$artifact")"
    S_CMD[$case]="$(printf '%q ' "$PY" -m sigstore --trust-config "$TMP/$case.trust-config.json" \
        verify identity --bundle "$dir/bundle.sigstore.json" --cert-identity "$identity" \
        --cert-oidc-issuer "$issuer" --offline "$artifact")"

    # Both must verify (exit 0) before anything is timed, and both must refuse a wrong identity.
    for tool in portcullis sigstore-python; do
        if [[ $tool == portcullis ]]; then cmd="${P_CMD[$case]}"; else cmd="${S_CMD[$case]}"; fi
        if ! offline bash -c "$cmd" >"$TMP/out" 2>&1; then
            echo "$tool does not verify $case offline:" >&2
            cat "$TMP/out" >&2
            exit 1
        fi
        wrong="${cmd//"$(printf '%q' "$identity")"/https://example.com/not-the-signer}"
        if offline bash -c "$wrong" >"$TMP/out" 2>&1; then
            echo "$tool accepted $case with a wrong identity: the exit status proves nothing" >&2
            exit 1
        fi
    done
    log "$case: portcullis and sigstore-python both verify it offline (and refuse a wrong identity)"
done

# --- whole process -------------------------------------------------------------------------
for case in "${CASES[@]}"; do
    log "hyperfine: $case"
    offline hyperfine -N --warmup "$WARMUP" --runs "$RUNS" --export-json "$TMP/$case.hyperfine.json" \
        -n portcullis "${P_CMD[$case]}" -n sigstore-python "${S_CMD[$case]}" >&2
done

# --- in-process ----------------------------------------------------------------------------
log "in-process: portcullis (bench/src/bin/verify.rs)"
cargo run --locked --release -q -p portcullis-bench --bin verify | tee "$TMP/portcullis-inprocess.md" >&2
for case in "${CASES[@]}"; do
    log "in-process: sigstore-python, $case, $PY_ITERATIONS iterations"
    offline "$PY" bench/sigstore_python_inprocess.py --json "$SUITE/$case" "${ROOT_OF[$case]}" \
        "$PY_ITERATIONS" | tee -a "$TMP/sigstore-python-inprocess.jsonl" >&2
done

# --- report --------------------------------------------------------------------------------
load_after="$(cut -d' ' -f1-3 /proc/loadavg)"
mkdir -p "$(dirname "$OUT")"
if ((${#NONET[@]})); then
    offline_how="network namespace without network (unshare -n) + refusing proxies"
else
    offline_how="refusing proxies only (unshare -n not permitted here)"
fi
META_DATE="$(date -u +%Y-%m-%dT%H:%MZ)" \
META_COMMIT="$(git describe --always --dirty 2>/dev/null || echo unknown)" \
META_CPUS="$(nproc)" \
META_CPU="$(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')" \
META_LOAD="$load_before / $load_after" \
META_VERSIONS="$("$PY" -c 'import sigstore, cryptography, sys; print(f"sigstore-python {sigstore.__version__}, cryptography {cryptography.__version__}, Python {sys.version.split()[0]}")'); $(hyperfine --version)" \
META_OFFLINE="$offline_how" RUNS="$RUNS" WARMUP="$WARMUP" PY_ITERATIONS="$PY_ITERATIONS" \
    python3 - "$TMP" "$OUT" "${CASES[@]}" <<'EOF'
import json, os, re, sys
from pathlib import Path

tmp, out, cases = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:]
env = os.environ
runs, warmup, py_iterations = env["RUNS"], env["WARMUP"], env["PY_ITERATIONS"]

# Rows of bench/src/bin/verify.rs, by its labels (fallback: its row order, which is ours).
labels = {
    "hashedrekord, bundle v0.3, Rekor v1": "happy-path-v0.3",
    "DSSE in-toto, bundle v0.3, Rekor v1": "happy-path-intoto-in-dsse-v3",
    "hashedrekord, Rekor v2 + RFC 3161": "rekor2-happy-path",
}
rows = []
for line in (tmp / "portcullis-inprocess.md").read_text().splitlines():
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    if len(cells) == 3 and re.fullmatch(r"[0-9.]+", cells[1]) and re.fullmatch(r"[0-9.]+", cells[2]):
        rows.append((cells[0], float(cells[1]), float(cells[2])))
rust = {labels[n]: (n, w, c) for n, w, c in rows if n in labels}
if len(rust) != len(cases):
    print("warning: bench/src/bin/verify.rs labels changed; matching its rows by order", file=sys.stderr)
    rust = {case: row for case, row in zip(cases, rows)}
py = {}
for line in (tmp / "sigstore-python-inprocess.jsonl").read_text().splitlines():
    r = json.loads(line)
    py[r["case"]] = r

def ratio(a, b):
    return f"{a / b:.1f}×" if b else "n/a"

md = [
    "# Offline Sigstore bundle verification: Portcullis vs sigstore-python",
    "",
    "Generated by `bench/compare-sigstore-python.sh` (same cases, same run; indicative figures,"
    " the machine may be busy).",
    "",
    f"- date {env['META_DATE']}, commit {env['META_COMMIT']}, {env['META_CPUS']} CPUs ({env['META_CPU']})",
    f"- load average (1, 5, 15 min) before / after: {env['META_LOAD']}",
    f"- {env['META_VERSIONS']}",
    f"- offline: {env['META_OFFLINE']}; sigstore-python gets each case's trusted root via"
    " `--trust-config` (CLI) or `Verifier(trusted_root=...)` (in-process), no TUF",
    "",
    f"## Whole process (hyperfine -N, {warmup} warm-ups, {runs} runs; ms per invocation)",
    "",
    "`portcullis verify-bundle --bundle B --certificate-identity I --certificate-oidc-issuer O"
    " --trusted-root R FILE` vs `python -m sigstore --trust-config C verify identity --bundle B"
    " --cert-identity I --cert-oidc-issuer O --offline FILE`",
    "",
    "| case | Portcullis mean ± σ | sigstore-python mean ± σ | ratio (sigstore-python ÷ Portcullis) | Portcullis user+sys | sigstore-python user+sys |",
    "|---|---:|---:|---:|---:|---:|",
]
for case in cases:
    res = {r["command"]: r for r in json.loads((tmp / f"{case}.hyperfine.json").read_text())["results"]}
    p, s = res["portcullis"], res["sigstore-python"]
    ms = lambda r: f"{r['mean'] * 1e3:.1f} ± {r['stddev'] * 1e3:.1f}"
    cpu = lambda r: f"{(r['user'] + r['system']) * 1e3:.1f}"
    md.append(f"| {case} | {ms(p)} | {ms(s)} | {ratio(s['mean'], p['mean'])} | {cpu(p)} | {cpu(s)} |")
md += [
    "",
    "## In-process (µs per verification: bundle parse + full verification)",
    "",
    f"Portcullis: `cargo run --release -p portcullis-bench --bin verify` (2000 iterations)."
    f" sigstore-python: `bench/sigstore_python_inprocess.py CASE ROOT {py_iterations}`"
    " (`Bundle.from_json` + `verify_artifact`, or `verify_dsse` + in-toto subject check)."
    " The last column is sigstore-python with the bundle parsed once, outside the loop.",
    "",
    "| case | Portcullis wall | sigstore-python wall | ratio wall | Portcullis CPU | sigstore-python CPU | ratio CPU | sigstore-python verify only (wall / CPU) |",
    "|---|---:|---:|---:|---:|---:|---:|---:|",
]
for case in cases:
    _, rw, rc = rust[case]
    r = py[case]
    pw, pc = r["parse_verify_wall_us"], r["parse_verify_cpu_us"]
    md.append(
        f"| {case} | {rw:.0f} | {pw:.0f} | {ratio(pw, rw)} | {rc:.0f} | {pc:.0f} | {ratio(pc, rc)}"
        f" | {r['verify_only_wall_us']:.0f} / {r['verify_only_cpu_us']:.0f} |"
    )
out.write_text("\n".join(md) + "\n")
EOF
echo
cat "$OUT"
