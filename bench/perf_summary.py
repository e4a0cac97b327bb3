"""Summarises `perf script -F comm,tid,ip,sym,dso` output: for each thread-name prefix given,
the share of its samples by code area (kernel, libc, allocator, crate) and its top leaf
functions. Used by bench/profile.sh."""

import collections
import re
import sys


def area(frame: str) -> str:
    if "kernel.kallsyms" in frame:
        return "kernel"
    symbol = frame.split(" (")[0].lstrip("<")
    if "libc.so" in frame:
        return "libc " + symbol
    if symbol.startswith(("mi_", "_mi_")):
        return "mimalloc"
    if symbol.startswith("sqlite3") or "sqlite" in frame.lower() and "::" not in symbol:
        return "sqlite (C)"
    match = re.match(r"([a-z_0-9]+)::", symbol)
    return match.group(1) if match else symbol[:48]


def main() -> None:
    path, prefixes = sys.argv[1], sys.argv[2:]
    leaves = {p: collections.Counter() for p in prefixes}
    areas = {p: collections.Counter() for p in prefixes}
    comm, first = None, None

    def flush() -> None:
        if comm is None or first is None:
            return
        for p in prefixes:
            if comm.startswith(p):
                leaves[p][first.split(" (")[0][:110]] += 1
                areas[p][area(first)] += 1

    with open(path, errors="replace") as script:
        for line in script:
            if not line.strip():
                continue
            if not line[0].isspace():
                flush()
                comm, first = line.strip(), None
            elif first is None:
                parts = line.strip().split(None, 1)
                first = parts[1] if len(parts) > 1 else "?"
    flush()
    for p in prefixes:
        total = sum(areas[p].values())
        if not total:
            continue
        print(f"\n## threads '{p}': {total} samples\n\nby area:")
        for name, n in areas[p].most_common(15):
            print(f"  {100 * n / total:5.1f}%  {name}")
        print("top leaf functions:")
        for name, n in leaves[p].most_common(20):
            print(f"  {100 * n / total:5.1f}%  {name}")


if __name__ == "__main__":
    main()
