"""Throughput of LocalStore put/get against sha256 of the same bytes (the floor), measured in the same run.

    python bench/storage.py                      # 1 MB, 100 MB, 1 GB; best of 3
    python bench/storage.py --sizes 1MB,100MB --repeat 5 --dir /some/disk

For each size a file of random bytes is written to a temp folder, then every operation is timed once per round
(page cache warm, `os.sync()` before each, `--repeat` rounds). Throughput is the best round; each ratio is the
median over rounds of that round's own ratio, so both sides of a ratio ran next to each other in time (the
machine may be shared):

- `sha256`: hashlib.sha256 over the file read in 1 MiB pieces (what `sha256sum` does): the floor for `put`;
- `copy`: the file copied to a new file (read + write): the floor for anything that stores the bytes;
- `block files`: the same bytes written as one 256 KiB file per chunk (temp file + rename, 1,024 shard folders),
  no hashing: the floor of any one-file-per-block store on this disk (file creation dominates on some VMs);
- `cid`: `compute_cid` (`ipfs add --only-hash`), CIDv0;
- `put v0`, `put v1`: `LocalStore.put(path)`; the content is unpinned and gc'ed after each put, so later rounds
  find the shard folders made (a store in use has them all);
- `get`: `LocalStore.get_to(cid, path)`, every block re-hashed.

Ratios are time / sha256 time: the goal is `put` within 1.5x.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
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


def timed(run: Callable[[], object]) -> float:
    # Flush other writes first (untimed), so that one measurement does not pay for the last one's writeback.
    os.sync()
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def _clear(folder: Path) -> None:
    # Keep the shard folders, as a store in use has them; drop the files.
    for shard in folder.iterdir():
        for entry in shard.iterdir():
            entry.unlink()


def _put(store: LocalStore, source: Path, version: int, made: dict[int, str]) -> None:
    made[version] = store.put(source, cid_version=version)


def bench_size(size: int, repeat: int, workdir: Path) -> dict[str, list[float]]:
    """`repeat` rounds; each round times every operation once, so a ratio is taken between neighbours in time."""
    source = workdir / "source"
    out = workdir / "out"
    make_file(source, size)
    store = LocalStore(workdir / "store")
    sha256_file(source)  # page cache warm for everyone
    rounds: dict[str, list[float]] = {}
    for _ in range(repeat):
        times = {
            "sha256": timed(lambda: sha256_file(source)),
            "copy": timed(lambda: copy_file(source, out)),
            "block files": timed(lambda: block_files(source, workdir / "blocks")),
            "cid": timed(lambda: compute_cid(source)),
        }
        out.unlink()
        _clear(workdir / "blocks")
        made: dict[int, str] = {}
        for version in (0, 1):
            times[f"put v{version}"] = timed(partial(_put, store, source, version, made))
            if version == 0:
                times["get"] = timed(partial(store.get_to, made[0], out))
                out.unlink()
            store.unpin(made[version])
            store.gc()  # the next round's puts find the shard folders, not the blocks
        for name, seconds in times.items():
            rounds.setdefault(name, []).append(seconds)
    shutil.rmtree(workdir / "store")
    source.unlink()
    return rounds


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
    ratios = [("put v0", "sha256"), ("put v1", "sha256"), ("get", "sha256"), ("put v0", "block files")]
    print("Throughput: best round. Ratios: median over rounds of each round's own ratio.\n")
    print(f"| size | {' | '.join(columns)} | {' | '.join(f'{a} / {b}' for a, b in ratios)} |")
    print("|" + " --- |" * (len(columns) + len(ratios) + 1))
    for text in args.sizes.split(","):
        size = parse_size(text)
        with tempfile.TemporaryDirectory(dir=args.dir, prefix="bench-storage-") as tmp:
            rounds = bench_size(size, args.repeat, Path(tmp))
        rates = " | ".join(f"{size / min(rounds[c]) / 1e6:,.0f} MB/s" for c in columns)
        medians = " | ".join(
            f"{statistics.median(x / y for x, y in zip(rounds[a], rounds[b], strict=True)):.2f}x"
            for a, b in ratios
        )
        print(f"| {text} | {rates} | {medians} |", flush=True)


if __name__ == "__main__":
    main()
