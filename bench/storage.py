"""Throughput of LocalStore put/get against sha256 of the same bytes (the floor), measured in the same run.

    python bench/storage.py                      # 1 MB, 100 MB, 1 GB; best of 3
    python bench/storage.py --sizes 1MB,100MB --repeat 5 --dir /some/disk

For each size a file of random bytes is written to a temp folder, then timed (page cache warm, best of
`--repeat`, because the machine may be shared):

- `sha256`: hashlib.sha256 over the file read in 1 MiB pieces (what `sha256sum` does): the floor for `put`;
- `copy`: the file copied to a new file (read + write): the floor for anything that stores the bytes;
- `block files`: the same bytes written as one 256 KiB file per chunk (temp file + rename, 1,024 shard folders),
  no hashing: the floor of any one-file-per-block store on this disk (file creation dominates on some VMs);
- `cid`: `compute_cid` (`ipfs add --only-hash`), CIDv0;
- `put v0`, `put v1`: `LocalStore.put(path)`; the content is unpinned and gc'ed between repeats, so later repeats
  find the shard folders made (a store in use has them all);
- `get`: `LocalStore.get_to(cid, path)`, every block re-hashed.

Ratios are time / sha256 time: the goal is `put` within 1.5x.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from backend.storage import LocalStore, compute_cid
from backend.storage.importer import CHUNK_SIZE

UNITS = {"KB": 10**3, "MB": 10**6, "GB": 10**9}


def parse_size(text: str) -> int:
    text = text.strip().upper()
    for unit, factor in UNITS.items():
        if text.endswith(unit):
            return int(float(text[: -len(unit)]) * factor)
    return int(text)


def make_file(path: Path, size: int) -> None:
    with open(path, "wb") as out:
        left = size
        while left:
            piece = os.urandom(min(left, 1 << 20))
            out.write(piece)
            left -= len(piece)


def sha256_file(path: Path) -> None:
    hasher = hashlib.sha256()
    buffer = bytearray(1 << 20)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as stream:
        while got := stream.readinto(buffer):
            hasher.update(view[:got])


def copy_file(path: Path, target: Path) -> None:
    buffer = bytearray(1 << 20)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as src, open(target, "wb", buffering=0) as dst:
        while got := src.readinto(buffer):
            dst.write(view[:got])


def block_files(path: Path, target: Path) -> None:
    """The floor of any one-file-per-block store: the same bytes as 256 KiB files (temp + rename), no hashing."""
    buffer = bytearray(CHUNK_SIZE)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as src:
        index = 0
        while got := src.readinto(buffer):
            shard = target / f"{index % 1024:03x}"
            shard.mkdir(parents=True, exist_ok=True)
            tmp = shard / f".tmp-{index}"
            with open(tmp, "wb", buffering=0) as dst:
                dst.write(view[:got])
            os.replace(tmp, shard / str(index))
            index += 1


def best_of(repeat: int, run: Callable[[], None], after: Callable[[], None] = lambda: None) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
        after()
    return min(times)


def _clear(folder: Path) -> None:
    # Keep the shard folders, as a store in use has them; drop the files.
    for shard in folder.iterdir():
        for entry in shard.iterdir():
            entry.unlink()


def bench_size(size: int, repeat: int, workdir: Path) -> dict[str, float]:
    source = workdir / "source"
    out = workdir / "out"
    make_file(source, size)
    store = LocalStore(workdir / "store")
    cids: dict[int, str] = {}

    def put(version: int) -> Callable[[], None]:
        return lambda: cids.__setitem__(version, store.put(source, cid_version=version))

    def drop(version: int) -> Callable[[], None]:
        def run() -> None:
            store.unpin(cids[version])
            store.gc()

        return run

    sha256_file(source)  # warm the page cache for everyone
    timings = {
        "sha256": best_of(repeat, lambda: sha256_file(source)),
        "copy": best_of(repeat, lambda: copy_file(source, out), lambda: out.unlink()),
        "block files": best_of(
            repeat, lambda: block_files(source, workdir / "blocks"), lambda: _clear(workdir / "blocks")
        ),
        "cid": best_of(repeat, lambda: compute_cid(source)),
        "put v0": best_of(repeat, put(0), drop(0)),
        "put v1": best_of(repeat, put(1), drop(1)),
    }
    cid = store.put(source)
    timings["get"] = best_of(repeat, lambda: store.get_to(cid, out), lambda: out.unlink())
    shutil.rmtree(workdir / "store")
    source.unlink()
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="1MB,100MB,1GB")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--dir", type=Path, default=None, help="where to write (default: the system temp dir)"
    )
    args = parser.parse_args()
    columns = ["sha256", "copy", "block files", "cid", "put v0", "put v1", "get"]
    ratios_of = ("put v0", "put v1", "get")
    print(
        f"| size | {' | '.join(columns)} | {' | '.join(f'{c} / sha256' for c in ratios_of)} | put v0 / block files |"
    )
    print("|" + " --- |" * (len(columns) + len(ratios_of) + 2))
    for text in args.sizes.split(","):
        size = parse_size(text)
        with tempfile.TemporaryDirectory(dir=args.dir, prefix="bench-storage-") as tmp:
            timings = bench_size(size, args.repeat, Path(tmp))
        rates = " | ".join(f"{size / timings[c] / 1e6:,.0f} MB/s" for c in columns)
        ratios = " | ".join(f"{timings[c] / timings['sha256']:.2f}x" for c in ratios_of)
        floor = timings["put v0"] / timings["block files"]
        print(f"| {text} | {rates} | {ratios} | {floor:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
