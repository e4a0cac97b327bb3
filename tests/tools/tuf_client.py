#!/usr/bin/env python3
"""python-tuf's ngclient, the reference TUF client, as a download client verifies (tests/src/rstuf.rs).

    tuf_client.py ROOT METADATA_URL TARGETS_URL WORK TARGET [TARGET ...]

Starts from the trusted root file ROOT, refreshes the metadata published at METADATA_URL (top-level
roles, then the hashed bin that delegates each TARGET), and for each TARGET path downloads
TARGETS_URL + TARGET and checks its length and hashes against the signed target info. Consistent
snapshots name metadata by version; targets are fetched by their plain path (the registry serves
them there), so prefix_targets_with_hash is off, as PyPI's PEP 458 set-up has it.

Prints one JSON object: {"<target>": {"found": bool, "verified": bool, "length": n,
"hashes": {...}, "custom": {...}, "error": "..."}}. Exits 0 whatever the verdicts; non-zero only
when the metadata itself cannot be refreshed.
"""
import json
import shutil
import sys
from pathlib import Path

from tuf.ngclient import Updater, UpdaterConfig


def main():
    if len(sys.argv) < 6:
        sys.exit(__doc__)
    root, metadata_url, targets_url, work = sys.argv[1:5]
    work = Path(work)
    shutil.rmtree(work, ignore_errors=True)
    (work / "metadata").mkdir(parents=True)
    (work / "targets").mkdir()
    updater = Updater(
        metadata_dir=str(work / "metadata"),
        metadata_base_url=metadata_url,
        target_base_url=targets_url,
        target_dir=str(work / "targets"),
        config=UpdaterConfig(prefix_targets_with_hash=False),
        bootstrap=Path(root).read_bytes(),
    )
    updater.refresh()
    verdicts = {}
    for target in sys.argv[5:]:
        info = updater.get_targetinfo(target)
        if info is None:
            verdicts[target] = {"found": False, "verified": False}
            continue
        verdict = {"found": True, "length": info.length, "hashes": info.hashes, "custom": info.custom}
        try:
            updater.download_target(info, str(work / "targets" / target.replace("/", "_")))
            verdict["verified"] = True
        except Exception as e:  # noqa: BLE001  (the verdict names it)
            verdict["verified"] = False
            verdict["error"] = f"{type(e).__name__}: {e}"
        verdicts[target] = verdict
    print(json.dumps(verdicts))


if __name__ == "__main__":
    main()
