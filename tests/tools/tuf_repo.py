#!/usr/bin/env python3
"""A tiny in-memory TUF repository server, built with python-tuf (test tooling only).

Why: the gateway's TUF tests need a *real* TUF repository, made by the reference
implementation (python-tuf 7.0.1 / securesystemslib 1.6.0), that a Rust client
(`sigstore-tuf`) can refresh against, and that a test can steer through root
rotation, new targets, expiry, rollback, corrupted targets and outages. Every
piece of metadata is built and signed by python-tuf; no TUF JSON is written here.

usage: tuf_repo.py --trusted-root FILE [--expires-seconds N]   (default 7 days)

It makes root/targets/snapshot/timestamp v1 (consistent_snapshot, one ed25519
key per top-level role, threshold 1; root expires in 365 days, the others in
N seconds) with the single target `trusted_root.json` = FILE's bytes (sha256).
It listens on 127.0.0.1:0, prints one line `{"port": N}` and serves until its
stdin reaches EOF (keep a pipe open to it) or it gets SIGTERM/SIGINT.

Layout (GET; the Sigstore / TUF consistent-snapshot layout):
  /N.root.json  every root version made (404 for the next one)
  /timestamp.json  the current timestamp (or the one chosen by serve-timestamp)
  /N.snapshot.json, /N.targets.json  every version made (but see mix-snapshot)
  /targets/<sha256>.trusted_root.json  every trusted_root.json ever published
Anything else is a 404 JSON. Each non-control GET path is recorded.

Control API (POST bodies are JSON objects, empty means {}; answers are 200 with
the state, or 400/404 with {"error": ...}):
  POST /_control/publish {"trusted_root_b64": B64}  new target; targets, snapshot
       and timestamp +1
  POST /_control/rotate-root  new root and timestamp keys (as many timestamp keys
       as before); root +1 signed by the old and the new root key, then
       timestamp +1 signed by the new keys
  POST /_control/timestamp-threshold {"keys": K, "sign_with": S}  unless the
       timestamp role has K keys already, give it K (new keys added, or the
       last ones dropped) with threshold K: root +1 signed by the root key; then
       timestamp +1 signed by only the first S of them (1 <= S <= K; S < K: a
       client must refuse it). Other timestamps are signed by all the keys
  POST /_control/timestamp {"expires_in_seconds": S}  timestamp +1 expiring in S
       seconds (negative: already expired; default N)
  POST /_control/serve-timestamp {"version": V}  serve the older timestamp V
       (as made, so signed by the key of its time) until the next new timestamp
  POST /_control/mix-snapshot {"version": M}  snapshot +1 (N) and timestamp +1
       pinning N, but /N.snapshot.json serves the bytes of the older snapshot
       version M as made (mix-and-match: a client must refuse the version), for
       good; later snapshots are served as made
  POST /_control/corrupt-target  flip one byte of the current target file
  POST /_control/down {"on": BOOL}  while on, every non-control GET is a 503
  GET  /_control/state  the state
  GET  /_control/requests  {"requests": [paths]} and clears the list
State: {"root", "timestamp", "snapshot", "targets": versions,
        "timestamp_expires": RFC 3339, "trusted_root_sha256": hex}
"""
from __future__ import annotations

import argparse
import base64
import binascii
import json
import os
import signal
import sys
import threading
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import (
    Metadata, MetaFile, Root, Snapshot, TargetFile, Targets, Timestamp,
)

TARGET = "trusted_root.json"
ROOT_EXPIRY = timedelta(days=365)


class ControlError(Exception):
    """A bad control request (answered 400)."""


def _in(seconds: float) -> datetime:
    return datetime.now(timezone.utc) + timedelta(seconds=seconds)


class Repository:
    """The repository: keys, current metadata, and every file it ever served."""

    def __init__(self, target: bytes, expires_seconds: int) -> None:
        self.expires_seconds = expires_seconds
        self.files: dict[str, bytes] = {}  # as served
        self.made: dict[str, bytes] = {}  # metadata as made
        self.timestamps: dict[int, bytes] = {}
        self.served_timestamp: int | None = None
        self.down = False
        self.requests: list[str] = []
        self.lock = threading.Lock()  # held around every use of the repository
        self.signers = {r: CryptoSigner.generate_ed25519() for r in
                        (Root.type, Targets.type, Snapshot.type)}
        self.ts_signers = [CryptoSigner.generate_ed25519()]  # threshold: all
        root = Root(expires=datetime.now(timezone.utc) + ROOT_EXPIRY,
                    consistent_snapshot=True)
        for role, signer in self.signers.items():
            root.add_key(signer.public_key, role)
        root.add_key(self.ts_signers[0].public_key, Timestamp.type)
        self.root = Metadata(root)
        self._store(self.root, [self.signers[Root.type]])
        self.targets = Metadata(Targets(expires=_in(expires_seconds)))
        self.snapshot = Metadata(Snapshot(expires=_in(expires_seconds)))
        self.timestamp = Metadata(Timestamp(expires=_in(expires_seconds)))
        self.target = target
        self._set_target(target)
        self._store(self.targets, [self.signers[Targets.type]])
        self._store(self.snapshot, [self.signers[Snapshot.type]])
        self._store_timestamp()

    # -- building ---------------------------------------------------------
    @staticmethod
    def _sign(md: Metadata[Any], signers: list[CryptoSigner]) -> bytes:
        """Sign md with only these signers (in order); its bytes."""
        for i, signer in enumerate(signers):
            md.sign(signer, append=i > 0)
        return md.to_bytes()

    def _store(self, md: Metadata[Any], signers: list[CryptoSigner]) -> None:
        """Sign md and keep it as N.<role>.json."""
        name = f"{md.signed.version}.{md.signed.type}.json"
        self.files[name] = self.made[name] = self._sign(md, signers)

    def _store_timestamp(self, sign_with: int | None = None) -> None:
        md = self.timestamp
        self.timestamps[md.signed.version] = self._sign(md, self.ts_signers[:sign_with])
        self.served_timestamp = None

    def _set_target(self, data: bytes) -> None:
        info = TargetFile.from_data(TARGET, data, ["sha256"])
        self.targets.signed.targets[TARGET] = info
        self.files[f"targets/{info.hashes['sha256']}.{TARGET}"] = data
        self.target = data

    def _new_timestamp(self, expires_seconds: float, sign_with: int | None = None) -> None:
        ts = self.timestamp.signed
        ts.version += 1
        ts.expires = _in(expires_seconds)
        ts.snapshot_meta = MetaFile(self.snapshot.signed.version)
        self._store_timestamp(sign_with)

    def _new_snapshot(self) -> None:
        snapshot = self.snapshot.signed
        snapshot.version += 1
        snapshot.expires = _in(self.expires_seconds)
        snapshot.meta["targets.json"] = MetaFile(self.targets.signed.version)
        self._store(self.snapshot, [self.signers[Snapshot.type]])

    def _new_root(self, signers: list[CryptoSigner]) -> None:
        root = self.root.signed
        root.version += 1
        root.expires = datetime.now(timezone.utc) + ROOT_EXPIRY
        self._store(self.root, signers)

    def _set_ts_keys(self, signers: list[CryptoSigner]) -> None:
        """Make signers the timestamp keys, with threshold all of them."""
        root = self.root.signed
        for old in self.ts_signers:
            root.revoke_key(old.public_key.keyid, Timestamp.type)
        for new in signers:
            root.add_key(new.public_key, Timestamp.type)
        root.roles[Timestamp.type].threshold = len(signers)
        self.ts_signers = signers

    # -- control ----------------------------------------------------------
    def publish(self, data: bytes) -> None:
        targets = self.targets.signed
        targets.version += 1
        targets.expires = _in(self.expires_seconds)
        self._set_target(data)
        self._store(self.targets, [self.signers[Targets.type]])
        self._new_snapshot()
        self._new_timestamp(self.expires_seconds)

    def rotate_root(self) -> None:
        root = self.root.signed
        old_root, new_root = self.signers[Root.type], CryptoSigner.generate_ed25519()
        root.revoke_key(old_root.public_key.keyid, Root.type)
        root.add_key(new_root.public_key, Root.type)
        self.signers[Root.type] = new_root
        self._set_ts_keys([CryptoSigner.generate_ed25519() for _ in self.ts_signers])
        self._new_root([new_root, old_root])
        self._new_timestamp(self.expires_seconds)

    def timestamp_threshold(self, keys: int, sign_with: int) -> None:
        if not 1 <= sign_with <= keys:
            raise ControlError("need 1 <= sign_with <= keys")
        if keys != len(self.ts_signers):
            kept = self.ts_signers[:keys]
            self._set_ts_keys(kept + [CryptoSigner.generate_ed25519()
                                      for _ in range(keys - len(kept))])
            self._new_root([self.signers[Root.type]])
        self._new_timestamp(self.expires_seconds, sign_with)

    def mix_snapshot(self, version: int) -> None:
        old = self.made.get(f"{version}.snapshot.json")
        if old is None:
            raise ControlError(f"no snapshot version {version}")
        self._new_snapshot()
        self._new_timestamp(self.expires_seconds)
        self.files[f"{self.snapshot.signed.version}.snapshot.json"] = old

    def new_timestamp(self, expires_seconds: float) -> None:
        self._new_timestamp(expires_seconds)

    def serve_timestamp(self, version: int) -> None:
        if version not in self.timestamps:
            raise ControlError(f"no timestamp version {version}")
        self.served_timestamp = version

    def corrupt_target(self) -> None:
        if not self.target:
            raise ControlError("the target is empty; nothing to corrupt")
        bad = bytearray(self.target)
        bad[len(bad) // 2] ^= 0x01
        self.files[f"targets/{self._target_sha256()}.{TARGET}"] = bytes(bad)

    # -- reading ----------------------------------------------------------
    def _target_sha256(self) -> str:
        return self.targets.signed.targets[TARGET].hashes["sha256"]

    def get(self, path: str) -> bytes | None:
        if path == "timestamp.json":
            version = self.served_timestamp or self.timestamp.signed.version
            return self.timestamps[version]
        return self.files.get(path)

    def state(self) -> dict[str, Any]:
        expires = self.timestamp.signed.expires
        return {
            "root": self.root.signed.version,
            "timestamp": self.timestamp.signed.version,
            "snapshot": self.snapshot.signed.version,
            "targets": self.targets.signed.version,
            "timestamp_expires": expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "trusted_root_sha256": self._target_sha256(),
        }


def _field(body: dict[str, Any], name: str, kind: type, default: Any = None) -> Any:
    value = body.get(name, default)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ControlError(f"{name!r} must be a {kind.__name__}")
    return value


def control(repo: Repository, action: str, body: dict[str, Any]) -> None:
    """Apply one POST control action (caller holds repo.lock)."""
    if action == "publish":
        try:
            data = base64.b64decode(_field(body, "trusted_root_b64", str), validate=True)
        except binascii.Error as e:
            raise ControlError(f"trusted_root_b64: {e}") from e
        repo.publish(data)
    elif action == "rotate-root":
        repo.rotate_root()
    elif action == "timestamp":
        repo.new_timestamp(_field(body, "expires_in_seconds", int, repo.expires_seconds))
    elif action == "timestamp-threshold":
        repo.timestamp_threshold(_field(body, "keys", int), _field(body, "sign_with", int))
    elif action == "mix-snapshot":
        repo.mix_snapshot(_field(body, "version", int))
    elif action == "serve-timestamp":
        repo.serve_timestamp(_field(body, "version", int))
    elif action == "corrupt-target":
        repo.corrupt_target()
    elif action == "down":
        repo.down = _field(body, "on", bool)
    else:
        raise KeyError(action)


class RepoServer(ThreadingHTTPServer):
    def __init__(self, repo: Repository) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.repo = repo


class Handler(BaseHTTPRequestHandler):
    server: RepoServer
    server_version = "tuf-repo-test/1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def _send(self, status: int, body: bytes | dict[str, Any]) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802
        path, repo = urlsplit(self.path).path, self.server.repo
        with repo.lock:
            if path == "/_control/state":
                return self._send(200, repo.state())
            if path == "/_control/requests":
                paths, repo.requests = repo.requests, []
                return self._send(200, {"requests": paths})
            repo.requests.append(path)
            if repo.down:
                return self._send(503, {"error": "repository is down"})
            data = repo.get(path.lstrip("/"))
        if data is None:
            return self._send(404, {"error": f"not found: {path}"})
        return self._send(200, data)

    def do_POST(self) -> None:  # noqa: N802
        path, repo = urlsplit(self.path).path, self.server.repo
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            body = json.loads(raw) if raw.strip() else {}
            if not isinstance(body, dict):
                raise ControlError("the body must be a JSON object")
            if not path.startswith("/_control/"):
                raise KeyError(path)
            with repo.lock:
                control(repo, path.removeprefix("/_control/"), body)
                return self._send(200, repo.state())
        except KeyError:
            return self._send(404, {"error": f"no such control endpoint: {path}"})
        except (ControlError, ValueError) as e:
            return self._send(400, {"error": str(e)})


def _wait_for_stdin_eof(stop: threading.Event) -> None:
    """Set stop at stdin EOF (raw reads: no buffer lock to trip exit)."""
    try:
        while os.read(sys.stdin.fileno(), 65536):
            pass
    except (OSError, ValueError):
        pass
    stop.set()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trusted-root", required=True, help="bytes of the target")
    parser.add_argument("--expires-seconds", type=int, default=7 * 24 * 3600)
    args = parser.parse_args()
    with open(args.trusted_root, "rb") as f:
        server = RepoServer(Repository(f.read(), args.expires_seconds))
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    threading.Thread(target=_wait_for_stdin_eof, args=(stop,), daemon=True).start()
    threading.Thread(target=server.serve_forever, args=(0.1,), daemon=True).start()
    print(json.dumps({"port": server.server_address[1]}), flush=True)
    while not stop.wait(0.2):
        pass
    server.shutdown()
    server.server_close()


if __name__ == "__main__":
    main()
