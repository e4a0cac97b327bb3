# Sourced by the bench scripts: installs what the side-by-side runs need from the system
# packages when missing (nginx for the nginx target, taskset for pinning, a font for the plots).
ensure_bench_packages() {
    if ! [[ -x /usr/sbin/nginx ]] || ! command -v taskset >/dev/null \
        || ! [[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ]]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light util-linux fonts-dejavu-core >/dev/null
        # The package starts a system nginx on port 80: the bench runs its own.
        (service nginx stop || pkill -x nginx) >/dev/null 2>&1 || true
    fi
}
