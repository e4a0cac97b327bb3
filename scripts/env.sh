# Shared settings for the scripts: where builds and test tools live (outside the clone, so
# repeated runs on one machine are warm; everything is rebuilt from cold when absent).
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/portcullis/target}"
export PORTCULLIS_TOOLS="${PORTCULLIS_TOOLS:-$HOME/.cache/portcullis/tools}"
export PORTCULLIS_BIN="${PORTCULLIS_BIN:-$CARGO_TARGET_DIR/debug/portcullis}"

# System packages the build and the tests need (run as root, as on CI and the dev machines).
ensure_system_packages() {
    local missing=()
    command -v cmake >/dev/null || missing+=(cmake)
    command -v node >/dev/null || missing+=(nodejs)
    command -v npm >/dev/null || missing+=(npm)
    python3 -c 'import venv' 2>/dev/null || missing+=(python3-venv)
    # tests/tests/deploy.rs: a real Prometheus server and promtool, systemd-analyze for the unit.
    command -v prometheus >/dev/null && command -v promtool >/dev/null || missing+=(prometheus)
    command -v systemd-analyze >/dev/null || missing+=(systemd)
    # tests/src/postgres.rs: throwaway PostgreSQL clusters for the shared state store and the
    # multi-replica tests (initdb, postgres, pg_isready, psql).
    compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing+=(postgresql)
    # tests/src/rstuf.rs: Redis is RSTUF's broker and result store.
    command -v redis-server >/dev/null || missing+=(redis-server)
    if ((${#missing[@]})); then
        echo "installing system packages: ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

# The test runner (scripts/test, CI); the demo does not need it.
ensure_nextest() {
    if ! cargo nextest --version >/dev/null 2>&1; then
        cargo install cargo-nextest --locked
    fi
}
