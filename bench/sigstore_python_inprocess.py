#!/usr/bin/env python3
"""In-process Sigstore bundle verification cost with sigstore-python (offline).

Usage: sigstore_python_inprocess.py [--json] CASE_DIR TRUSTED_ROOT N

CASE_DIR is a sigstore-conformance `bundle-verify` case (bundle.sigstore.json, optional
`artifact`, `identity`, `issuer`; the artifact defaults to `../a.txt`). TRUSTED_ROOT is a
trusted_root.json. The Verifier is built from that trusted root only: no TUF, no network.

Verifies once (must succeed), then times N verifications two ways, with time.perf_counter
(wall) and time.process_time (process CPU, user + system):
  - parse + verify: Bundle.from_json + verification each iteration; the same work as one
    iteration of Portcullis's in-process bench (bench/src/bin/verify.rs);
  - verify only: the Bundle parsed once, verification repeated.
Verification is what `sigstore verify identity` does: `verify_artifact` for message
signatures; `verify_dsse` for DSSE envelopes, then the in-toto payload type and a subject
matching the artifact's SHA-256 are checked.

Prints µs per verification (wall and CPU); with --json, one JSON object instead.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path

from sigstore import dsse
from sigstore.errors import VerificationError
from sigstore.hashes import Hashed
from sigstore.models import Bundle, TrustedRoot
from sigstore.verify import Verifier
from sigstore.verify.policy import Identity
from sigstore_models.common.v1 import HashAlgorithm

DEFAULT_IDENTITY = (
    "https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon/"
    ".github/workflows/extremely-dangerous-oidc-beacon.yml@refs/heads/main"
)
DEFAULT_ISSUER = "https://token.actions.githubusercontent.com"


def _case_file(case: Path, name: str) -> Path | None:
    path = case / name
    return path if path.is_file() else None


def _verify_once(verifier: Verifier, bundle: Bundle, hashed: Hashed, policy: Identity) -> None:
    if bundle._dsse_envelope is not None:
        type_, payload = verifier.verify_dsse(bundle=bundle, policy=policy)
        if type_ != dsse.Envelope._TYPE:
            raise VerificationError(f"expected in-toto JSON payload, got {type_}")
        if not dsse.Statement(payload)._matches_digest(hashed):
            raise VerificationError("in-toto statement has no subject for the artifact digest")
    else:
        verifier.verify_artifact(input_=hashed, bundle=bundle, policy=policy)


def main(argv: list[str]) -> int:
    as_json = "--json" in argv
    args = [a for a in argv if a != "--json"]
    if len(args) != 3:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    case, root_path, iterations = Path(args[0]), Path(args[1]), int(args[2])
    if iterations < 1:
        print("N must be at least 1", file=sys.stderr)
        return 2

    bundle_json = (case / "bundle.sigstore.json").read_bytes()
    artifact = _case_file(case, "artifact") or case.parent / "a.txt"
    identity_file, issuer_file = _case_file(case, "identity"), _case_file(case, "issuer")
    identity = identity_file.read_text().strip() if identity_file else DEFAULT_IDENTITY
    issuer = issuer_file.read_text().strip() if issuer_file else DEFAULT_ISSUER

    # Offline: the verifier knows only this trusted root (no TUF repository, no network).
    verifier = Verifier(trusted_root=TrustedRoot.from_file(str(root_path)))
    policy = Identity(identity=identity, issuer=issuer)
    hashed = Hashed(
        algorithm=HashAlgorithm.SHA2_256,
        digest=hashlib.sha256(artifact.read_bytes()).digest(),
    )

    bundle = Bundle.from_json(bundle_json)
    kind = "dsse" if bundle._dsse_envelope is not None else "message_signature"
    _verify_once(verifier, bundle, hashed, policy)  # must succeed (raises otherwise)

    cpu0, wall0 = time.process_time(), time.perf_counter()
    for _ in range(iterations):
        _verify_once(verifier, Bundle.from_json(bundle_json), hashed, policy)
    parse_wall = (time.perf_counter() - wall0) * 1e6 / iterations
    parse_cpu = (time.process_time() - cpu0) * 1e6 / iterations

    cpu0, wall0 = time.process_time(), time.perf_counter()
    for _ in range(iterations):
        _verify_once(verifier, bundle, hashed, policy)
    only_wall = (time.perf_counter() - wall0) * 1e6 / iterations
    only_cpu = (time.process_time() - cpu0) * 1e6 / iterations

    result = {
        "case": case.name,
        "kind": kind,
        "iterations": iterations,
        "parse_verify_wall_us": parse_wall,
        "parse_verify_cpu_us": parse_cpu,
        "verify_only_wall_us": only_wall,
        "verify_only_cpu_us": only_cpu,
    }
    if as_json:
        print(json.dumps(result))
    else:
        print(f"{case.name} ({kind}), {iterations} verifications, sigstore-python in-process:")
        print(f"  parse + verify: {parse_wall:.0f} µs wall, {parse_cpu:.0f} µs CPU per verification")
        print(f"  verify only:    {only_wall:.0f} µs wall, {only_cpu:.0f} µs CPU per verification")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
