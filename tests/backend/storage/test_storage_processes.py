"""LocalStore shared by several processes, and a process killed in the middle of writing a block."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import textwrap
from pathlib import Path

from backend.storage import LocalStore, compute_cid
from backend.storage import cids as cidlib

ROOT = Path(__file__).resolve().parents[3]

PUT = textwrap.dedent(
    """
    import hashlib, sys
    from pathlib import Path
    from backend.storage import LocalStore
    seed, size, root = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
    print(LocalStore(root).put(hashlib.shake_256(seed.encode()).digest(size)))
    """
)

# Writes half of the third block, then dies by SIGKILL: no cleanup code of ours can run.
KILLED = textwrap.dedent(
    """
    import hashlib, os, signal, sys
    from pathlib import Path
    from backend.storage import LocalStore, local
    calls = {"n": 0}
    real = os.writev
    def writev(fd, buffers):
        calls["n"] += 1
        if calls["n"] == 3:
            data = b"".join(bytes(b) for b in buffers)
            os.write(fd, data[: len(data) // 2])
            os.kill(os.getpid(), signal.SIGKILL)
        return real(fd, buffers)
    local.os.writev = writev
    LocalStore(Path(sys.argv[1])).put(hashlib.shake_256(b"killed").digest(2_000_000))
    """
)


def _run(code: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _visible_blocks_verify(store: LocalStore) -> int:
    count = 0
    for path in (store.root / "blocks").rglob("*"):
        if path.is_file() and not path.name.startswith(".tmp-"):
            digest = cidlib.digest_of(bytes(cidlib.parse_cid(path.name)))
            assert hashlib.sha256(path.read_bytes()).digest() == digest, path
            count += 1
    return count


def test_processes_putting_at_once_share_one_store(tmp_path) -> None:
    root = tmp_path / "shared"
    jobs = [("same", 3_000_000), ("same", 3_000_000), ("other", 2_000_000)]
    procs = [_run(PUT, seed, str(size), str(root)) for seed, size in jobs]
    results = [proc.communicate(timeout=120) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0, 0], [err for _, err in results]
    cids = [out.strip() for out, _ in results]
    expected = [compute_cid(hashlib.shake_256(seed.encode()).digest(size)) for seed, size in jobs]
    assert cids == expected
    store = LocalStore(root)
    assert store.get(cids[0]) == hashlib.shake_256(b"same").digest(3_000_000)
    assert store.pins() == sorted(set(cids))
    assert _visible_blocks_verify(store) == 13 + 9  # 12 leaves + root, 8 leaves + root


def test_a_killed_put_leaves_no_half_block_visible(tmp_path) -> None:
    root = tmp_path / "killed"
    proc = _run(KILLED, str(root))
    proc.communicate(timeout=120)
    assert proc.returncode == -9
    store = LocalStore(root)
    leftovers = [p for p in (root / "blocks").rglob(".tmp-*")]
    assert len(leftovers) == 1  # the half-written block, never renamed into place
    assert _visible_blocks_verify(store) == 2
    assert store.pins() == []
    assert store.gc() == 2  # the killed put's two orphans, and the temp file
    assert not [p for p in (root / "blocks").rglob(".tmp-*")]
    data = hashlib.shake_256(b"killed").digest(2_000_000)
    assert store.get(store.put(data)) == data
