#!/usr/bin/env python3
"""The bootstrap ceremony of a test RSTUF repository, with python-tuf (tests/src/rstuf.rs).

    rstuf_bootstrap.py keys DIR          makes DIR/online.pem (the online key RSTUF signs with,
                                         as `fn:online.pem`) and DIR/root.pem (the offline
                                         root key), before the workers start
    rstuf_bootstrap.py bootstrap DIR API builds root metadata v1 (root key threshold 1; the
                                         online key for timestamp, snapshot and targets), signs
                                         it, posts it to API's /api/v1/bootstrap/ with 4 hashed
                                         bins, waits for the task, and writes DIR/1.root.json:
                                         the trust anchor a TUF client starts from

Prints one JSON line on success; exits non-zero with the reason otherwise. Loops are bounded.
"""
import json
import sys
import time
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from securesystemslib.signer import CryptoSigner, SSlibKey
from tuf.api.metadata import Metadata, Root


def pem(key):
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def keys(directory: Path):
    directory.mkdir(parents=True, exist_ok=True)
    for name in ("online.pem", "root.pem"):
        (directory / name).write_bytes(pem(Ed25519PrivateKey.generate()))
    print(json.dumps({"keys": str(directory)}))


def call(method, url, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def bootstrap(directory: Path, api: str):
    load = lambda name: serialization.load_pem_private_key((directory / name).read_bytes(), None)
    online = SSlibKey.from_crypto(load("online.pem").public_key())
    online.unrecognized_fields["x-rstuf-online-key-uri"] = "fn:online.pem"
    online.unrecognized_fields["x-rstuf-key-name"] = "online"
    root_signer = CryptoSigner(load("root.pem"))
    root_key = root_signer.public_key
    root_key.unrecognized_fields["x-rstuf-key-name"] = "root1"
    root = Root(expires=datetime.now(timezone.utc).replace(microsecond=0) + timedelta(days=365), consistent_snapshot=True)
    root.add_key(root_key, "root")
    for role in ("timestamp", "snapshot", "targets"):
        root.add_key(online, role)
    metadata = Metadata(root)
    metadata.sign(root_signer)
    payload = {
        "settings": {
            "roles": {
                "root": {"expiration": 365},
                "targets": {"expiration": 365},
                "snapshot": {"expiration": 1},
                "timestamp": {"expiration": 1},
                "bins": {"expiration": 30, "number_of_delegated_bins": 4},
            }
        },
        "metadata": {"root": metadata.to_dict()},
        "timeout": 300,
    }
    task = call("POST", f"{api}/api/v1/bootstrap/", payload)["data"]["task_id"]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        data = call("GET", f"{api}/api/v1/task/?task_id={task}")["data"]
        if data["state"] in ("SUCCESS", "FAILURE", "ERRORED"):
            result = data.get("result") or {}
            if data["state"] != "SUCCESS" or not result.get("status"):
                sys.exit(f"bootstrap failed: {data}")
            (directory / "1.root.json").write_bytes(metadata.to_bytes())
            print(json.dumps({"bootstrap": task}))
            return
        time.sleep(0.2)
    sys.exit(f"bootstrap task {task} did not finish in 120 s")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "keys":
        keys(Path(sys.argv[2]))
    elif len(sys.argv) == 4 and sys.argv[1] == "bootstrap":
        bootstrap(Path(sys.argv[2]), sys.argv[3].rstrip("/"))
    else:
        sys.exit(__doc__)
