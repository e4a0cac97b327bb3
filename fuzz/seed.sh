#!/usr/bin/env bash
# Builds the seed corpora fuzz/corpus/<target>/ (gitignored) from:
#   - the fixtures (tests/fixtures, or $PORTCULLIS_FIXTURES): Sigstore bundles,
#     PEP 740 attestations, npm provenance bundles;
#   - the example configurations and rules in deploy/;
#   - the small hand-written seeds committed in fuzz/seeds/<target>/;
#   - generated PyPI upload forms, npm publish documents and tokens (below, in the formats the
#     fuzz targets expect, control bytes first).
# Idempotent: files are named by content, so re-running adds nothing twice and a grown corpus
# is kept.
set -euo pipefail
fuzz_dir="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$fuzz_dir")"
fixtures="${PORTCULLIS_FIXTURES:-$root/tests/fixtures}"
corpus="$fuzz_dir/corpus"
[[ -d "$fixtures" ]] || { echo "seed.sh: no fixtures at $fixtures (set PORTCULLIS_FIXTURES)" >&2; exit 1; }

python3 - "$fixtures" "$root" "$corpus" <<'PY'
import base64, hashlib, json, os, pathlib, sys

fixtures, root, corpus = (pathlib.Path(p) for p in sys.argv[1:4])

def put(target, data):
    if isinstance(data, str):
        data = data.encode()
    folder = corpus / target
    folder.mkdir(parents=True, exist_ok=True)
    (folder / hashlib.sha1(data).hexdigest()).write_bytes(data)

# Committed hand-written seeds.
for folder in sorted((root / "fuzz" / "seeds").glob("*")):
    for f in sorted(folder.iterdir()):
        put(folder.name, f.read_bytes())

# bundle_verify: every bundle of the conformance suite, the PEP 740 and npm cases.
for bundle in sorted(fixtures.glob("*/**/bundle.sigstore.json")):
    put("bundle_verify", bundle.read_bytes())

# verify_differential: a case selector, then (place u16 LE, character index) picks: one seed
# per case with a single mutation at a spread of places.
for selector in range(48):
    for place in (0, 7, 23, 61):
        put("verify_differential", bytes([selector, place, 0, 5]))

# pep740: selector byte (case index; bit 7 = npm) + the field / bundle. Same order as the
# target's PYPI and NPM tables.
pypi_cases = [
    "github-publish-pypi-attestations-0.0.19",
    "github-slsa-v1-pypi-attestations-0.0.19",
    "gitlab-publish-gitlab-oidc-project-0.0.3",
    "google-publish-gcb-attestation-test-0.0.0",
    "rfc3161-timestamp-pypi-attestations-0.0.19",
]
npm_cases = [
    "slsa-v0.2-sigstore-1.0.0",
    "slsa-v1-sigstore-2.3.1",
    "slsa-v1-playwright-cli-0.1.1",
    "npm-publish-attestation-key-sigstore-2.3.1",
]
for i, case in enumerate(pypi_cases):
    folder = fixtures / "pep740" / case
    attestations = [json.loads(p.read_text()) for p in sorted(folder.glob("*.attestation*"))]
    for a in attestations:
        put("pep740", bytes([i]) + json.dumps([a]).encode())
    if len(attestations) > 1:
        put("pep740", bytes([i]) + json.dumps(attestations).encode())
for i, case in enumerate(npm_cases):
    put("pep740", bytes([0x80 | i]) + (fixtures / "npm-provenance" / case / "bundle.sigstore.json").read_bytes())

# multipart: 2 chunking-seed bytes + a form with the target's boundary, as twine sends it.
BOUNDARY = b"PortcullisFuzzBoundary"
def form(fields):
    out = b""
    for name, value, filename in fields:
        disposition = b'form-data; name="' + name.encode() + b'"'
        if filename:
            disposition += b'; filename="' + filename.encode() + b'"'
        out += b"--" + BOUNDARY + b"\r\nContent-Disposition: " + disposition + b"\r\n"
        if filename:
            out += b"Content-Type: application/octet-stream\r\n"
        out += b"\r\n" + value + b"\r\n"
    return out + b"--" + BOUNDARY + b"--\r\n"

sdist = b"not really a tarball \x00\x01\x02\xff" * 4
for seed, fields in enumerate([
    [(":action", b"file_upload", None), ("protocol_version", b"1", None), ("name", b"demo-project", None),
     ("version", b"1.0.0", None), ("filetype", b"sdist", None), ("pyversion", b"source", None),
     ("metadata_version", b"2.1", None), ("requires_dist", b"requests[socks] (>=2.0); extra == 'x'", None),
     ("requires_dist", b"Flask", None),
     ("sha256_digest", hashlib.sha256(sdist).hexdigest().encode(), None),
     ("blake2_256_digest", hashlib.blake2b(sdist, digest_size=32).hexdigest().encode(), None),
     ("content", sdist, "demo_project-1.0.0.tar.gz")],
    [(":action", b"file_upload", None), ("name", b"Demo.Project", None), ("version", b"2.0", None),
     ("content", sdist, "demo_project-2.0-py3-none-any.whl"),
     ("blake2_256_digest", hashlib.blake2b(sdist, digest_size=32).hexdigest().encode(), None)],
    [(":action", b"remove_pkg", None), ("name", b"demo", None), ("version", b"0.1", None)],
]):
    put("multipart", bytes([seed * 37 % 256, seed]) + form(fields))
# A real sdist with its real attestations field.
case = fixtures / "pep740" / "github-publish-pypi-attestations-0.0.19"
artifact = (case / "artifact").read_bytes()
attestation = json.loads(next(case.glob("*.publish.attestation")).read_text())
put("multipart", b"\x05\x00" + form([
    (":action", b"file_upload", None), ("name", b"pypi-attestations", None), ("version", b"0.0.19", None),
    ("sha256_digest", hashlib.sha256(artifact[:2048]).hexdigest().encode(), None),
    ("attestations", json.dumps([attestation]).encode(), None),
    ("content", artifact[:2048], "pypi_attestations-0.0.19.tar.gz")]))

# npm_publish: flags byte (bit 0 strip, bit 1 scoped name, bit 2 tiny limits), 2 chunking-seed
# bytes, then a publish document as libnpmpublish builds it.
def publish(name, version, tarball, bundle=None, extra_versions=()):
    file = name.rsplit("/", 1)[-1]  # the tarball URL's file name; attachments keep the scope
    manifest = {
        "name": name, "version": version, "description": "a demo package", "main": "index.js",
        "repository": {"type": "git", "url": "git+https://github.com/acme/demo.git"},
        "dependencies": {"left-pad": "^1.0.0", "@acme/util": "2.x"},
        "_id": f"{name}@{version}",
        "dist": {
            "integrity": "sha512-" + base64.b64encode(hashlib.sha512(tarball).digest()).decode(),
            "shasum": hashlib.sha1(tarball).hexdigest(),
            "tarball": f"http://registry.example/{name}/-/{file}-{version}.tgz",
        },
    }
    attachments = {f"{name}-{version}.tgz": {
        "content_type": "application/octet-stream",
        "data": base64.b64encode(tarball).decode(), "length": len(tarball)}}
    if bundle is not None:
        attachments[f"{name}-{version}.sigstore"] = {
            "content_type": "application/vnd.dev.sigstore.bundle.v0.3+json",
            "data": bundle, "length": len(bundle)}
    return {"_id": name, "name": name, "description": "a demo package",
            "dist-tags": {"latest": version}, "versions": {version: manifest},
            "access": None, "_attachments": attachments}

tarball = bytes(i * 7 % 256 for i in range(300))
bundle = (fixtures / "npm-provenance" / "slsa-v1-sigstore-2.3.1" / "bundle.sigstore.json").read_text()
for flags, doc in [
    (0, publish("pkg", "1.0.0", tarball)),
    (1, publish("pkg", "1.0.0", tarball, bundle)),
    (0, publish("pkg", "1.0.0", tarball, bundle)),
    (3, publish("@scope/pkg", "2.0.0-rc.1", tarball, bundle)),
    (2, publish("@scope/pkg", "1.0.0", b"")),
    (4, publish("pkg", "1.0.0", b"tiny")),
]:
    text = json.dumps(doc, indent=None if flags & 1 else 1)
    put("npm_publish", bytes([flags, 11, flags]) + text.encode())
# A metadata-only PUT (npm deprecate): the packument without attachments.
deprecate = publish("pkg", "1.0.0", tarball)
del deprecate["_attachments"]
deprecate["versions"]["1.0.0"]["deprecated"] = "use 1.1.0 or later"
put("npm_publish", b"\x00\x07\x00" + json.dumps(deprecate).encode())

# config and rules: the deploy examples.
for f in sorted(root.glob("deploy/**/*.toml")):
    put("rules" if f.name.endswith("rules.toml") else "config", f.read_bytes())

# ... and the TOML examples of the README and docs/ (configuration or rules, by their tables).
import re
for doc in [root / "README.md", *sorted(root.glob("docs/**/*.md"))]:
    for block in re.findall(r"```toml\n(.*?)```", doc.read_text(), re.S):
        if "[[listener]]" in block or "[[registry]]" in block:
            put("config", block)
        else:
            put("rules", block)

# jwt: mode byte + token / signed parts / upload-token payload / JWKS.
def b64u(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
NOW = 1_795_651_200
claims = {"iss": "https://issuer.example", "aud": "portcullis", "sub": "repo:acme/widget:ref:refs/heads/main",
          "iat": NOW - 10, "nbf": NOW - 10, "exp": NOW + 300, "jti": "fuzz-jti",
          "repository": "acme/widget", "workflow_ref": "acme/widget/.github/workflows/release.yml@refs/heads/main"}
header = {"alg": "EdDSA", "kid": "fuzz", "typ": "JWT"}
put("jwt", b"\x01" + json.dumps(header).encode() + b"\x00" + json.dumps(claims).encode())
put("jwt", b"\x05" + json.dumps(header).encode() + b"\x00" + json.dumps({k: v for k, v in claims.items() if k != "jti"}).encode())
put("jwt", b"\x01" + json.dumps({**header, "crit": ["b64"]}).encode() + b"\x00" + json.dumps({**claims, "aud": ["portcullis", "x"]}).encode())
put("jwt", b"\x00" + f"{b64u(json.dumps(header).encode())}.{b64u(json.dumps(claims).encode())}.{b64u(bytes(64))}".encode())
none = b64u(json.dumps({"alg": "none"}).encode())
put("jwt", b"\x00" + f"{none}.{b64u(json.dumps(claims).encode())}.".encode())
payload = {"v": 1, "jti": "0123456789abcdef0123456789abcdef", "iat": NOW - 10, "exp": NOW + 600,
           "iss": "https://token.actions.githubusercontent.com", "sub": "repo:acme/widget:ref:refs/heads/main",
           "scopes": [{"registry": "pypi", "publisher": "acme-widget", "projects": ["widget"], "create": ["widget-extra"]}]}
put("jwt", b"\x02" + json.dumps(payload).encode())
put("jwt", b"\x00pcul_fuzz." + b64u(json.dumps(payload).encode()).encode() + b"." + b64u(bytes(64)).encode())
put("jwt", b"\x03" + json.dumps({"keys": [
    {"kty": "OKP", "crv": "Ed25519", "kid": "fuzz", "use": "sig", "alg": "EdDSA",
     "x": "pvB7bt7XO0Oeg9kXjV5bEt1x4D0BDplFYhvmr5YaK_Q"},
    {"kty": "EC", "crv": "P-256", "kid": "ec", "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
     "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
    {"kty": "RSA", "kid": "rsa", "alg": "RS256", "e": "AQAB", "n": b64u(b"\xc1" + bytes(255))},
]}).encode())
PY
for t in "$corpus"/*/; do echo "seed.sh: $(basename "$t"): $(ls "$t" | wc -l) seeds"; done
