"""LocalStore: round trips, stat/has/pin/gc, and every failure path leaves stored content intact."""

from __future__ import annotations

import errno
import hashlib
import io
import os
from pathlib import Path

import pytest
from storage_helpers import generated

from backend.settings import Settings
from backend.storage import (
    ContentNotFound,
    ContentStore,
    CorruptedBlock,
    IntegrityError,
    KuboStore,
    LocalStore,
    StorageError,
    StoreFullError,
    compute_cid,
    fetch_verified,
    open_store,
    sha256_hex,
)
from backend.storage import cids as cidlib
from backend.storage import local as local_module
from backend.storage.dagpb import decode_node

MB = 1_000_000


def block_files(store: LocalStore) -> list[Path]:
    return sorted(p for p in (store.root / "blocks").rglob("*") if p.is_file())


def temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.startswith(".tmp-") or p.name.endswith(".partial")]


def assert_every_block_verifies(store: LocalStore) -> None:
    """No visible block may hold bytes other than those its name commits to."""
    for path in block_files(store):
        assert not path.name.startswith(".tmp-")
        digest = cidlib.digest_of(bytes(cidlib.parse_cid(path.name)))
        assert hashlib.sha256(path.read_bytes()).digest() == digest, path


def leaf_cids(store: LocalStore, root: str) -> list[bytes]:
    node = decode_node(store._read_block(bytes(cidlib.parse_cid(root))))
    return [link.cid for link in node.links]


@pytest.mark.parametrize("version", [0, 1])
def test_bytes_path_and_stream_round_trip(store, tmp_path, version) -> None:
    data = generated("round-trip", 3 * MB)
    (tmp_path / "in").write_bytes(data)
    cid = store.put(data, cid_version=version)
    assert store.put(tmp_path / "in", cid_version=version) == cid
    assert store.put(io.BytesIO(data), cid_version=version) == cid
    assert store.get(cid) == data
    store.get_to(cid, tmp_path / "out")
    assert (tmp_path / "out").read_bytes() == data
    assert temp_files(tmp_path) == []


def test_a_cidv0_and_its_cidv1_name_the_same_content(store) -> None:
    data = generated("v0-v1", 300_000)
    v0 = store.put(data)
    v1 = str(cidlib.parse_cid(v0).set(version=1, base="base32"))
    assert store.get(v1) == data


def test_stat_counts_blocks_and_bytes(store) -> None:
    data = generated("stat", 1_000_000)  # 4 leaves under one root
    cid = store.put(data)
    info = store.stat(cid)
    assert (info.cid, info.size, info.blocks, info.pinned) == (cid, len(data), 5, True)
    assert info.cumulative_size == sum(p.stat().st_size for p in block_files(store))
    raw = store.put(data, cid_version=1)
    assert store.stat(raw).blocks == 5
    store.unpin(cid)
    assert store.stat(cid).pinned is False


def test_stat_of_a_two_level_tree_reads_no_leaf(store, monkeypatch) -> None:
    cid = store.put(generated("deep", 174 * 262144 + 1))  # 175 leaves, 2 inner nodes, 1 root
    reads = []
    original = store._read_block
    monkeypatch.setattr(store, "_read_block", lambda c: reads.append(c) or original(c))
    assert store.stat(cid).blocks == 178
    assert len(reads) == 3


def test_only_hash_stores_nothing(store) -> None:
    data = generated("only-hash", 600_000)
    assert store.put(data, only_hash=True) == compute_cid(data)
    assert block_files(store) == [] and store.pins() == []


def test_unknown_cid_is_content_not_found(store, tmp_path) -> None:
    unknown = compute_cid(b"never stored")
    for call in (store.get, store.stat, store.pin, store.unpin, lambda c: store.get_to(c, tmp_path / "o")):
        with pytest.raises(ContentNotFound, match=unknown):
            call(unknown)
    assert store.has(unknown) is False
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("bad", ["not-a-cid", "Qm123", ""])
def test_malformed_cid_is_refused(store, bad) -> None:
    with pytest.raises(StorageError, match="not a valid CID"):
        store.get(bad)


def test_wrong_source_types_are_refused(store, tmp_path) -> None:
    with pytest.raises(TypeError, match=r"pathlib\.Path"):
        store.put("some text")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="cannot store a int"):
        store.put(42)  # type: ignore[arg-type]
    with pytest.raises(StorageError, match="cannot read"):
        store.put(tmp_path)
    with pytest.raises(StorageError, match="cannot read"):
        store.put(tmp_path / "missing")
    with pytest.raises(StorageError, match="open it in binary mode"):
        store.put(io.StringIO("text"))  # type: ignore[arg-type]


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_a_damaged_block_is_reported_with_its_cid_and_a_new_put_repairs_it(store, tmp_path, damage) -> None:
    data = generated("corrupt", 1_000_000)
    cid = store.put(data)
    victim = leaf_cids(store, cid)[2]
    path = store._block_path(victim)
    raw = bytearray(path.read_bytes())
    if damage == "flip":
        raw[100] ^= 1
        path.write_bytes(raw)
    else:
        path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(CorruptedBlock) as caught:
        store.get(cid)
    assert caught.value.cid == cidlib.cid_text(victim)
    assert cidlib.cid_text(victim) in str(caught.value)
    with pytest.raises(CorruptedBlock):
        store.get_to(cid, tmp_path / "out")
    assert not (tmp_path / "out").exists() and temp_files(tmp_path) == []
    assert store.put(data) == cid  # the damaged copy is rewritten
    assert store.get(cid) == data


def test_a_missing_inner_block_names_content_and_block(store) -> None:
    cid = store.put(generated("missing", 174 * 262144 + 1))
    inner = leaf_cids(store, cid)[1]
    store._block_path(inner).unlink()
    with pytest.raises(
        ContentNotFound, match=f"{cid} is incomplete: block {cidlib.cid_text(inner)} is missing"
    ):
        store.get(cid)
    assert store.has(cid) is False


def test_a_missing_leaf_makes_has_false(store) -> None:
    cid = store.put(generated("leaf", 600_000))
    store._block_path(leaf_cids(store, cid)[0]).unlink()
    assert store.has(cid) is False
    with pytest.raises(ContentNotFound):
        store.stat(cid)


def _fail_writes_after(monkeypatch, allowed: int, code: int = errno.ENOSPC) -> None:
    real = os.writev
    calls = {"n": 0}

    def writev(fd, buffers):
        calls["n"] += 1
        if calls["n"] > allowed:
            raise OSError(code, os.strerror(code))
        return real(fd, buffers)

    monkeypatch.setattr(local_module.os, "writev", writev)


@pytest.mark.parametrize("allowed", [0, 2])
def test_disk_full_during_put_keeps_what_was_stored(store, monkeypatch, allowed) -> None:
    kept = generated("kept", 700_000)
    kept_cid = store.put(kept)
    before = {p: p.read_bytes() for p in block_files(store)}
    _fail_writes_after(monkeypatch, allowed)
    new = generated("new", 2 * MB)
    with pytest.raises(StoreFullError, match="disk full"):
        store.put(new)
    monkeypatch.undo()
    assert temp_files(store.root) == []
    assert {p: p.read_bytes() for p in before} == before
    assert store.get(kept_cid) == kept
    assert store.pins() == [kept_cid]
    assert_every_block_verifies(store)
    assert store.put(new) == compute_cid(new)  # works again once there is room


def test_disk_full_while_pinning_leaves_the_content_unpinned(store, monkeypatch) -> None:
    kept_cid = store.put(b"kept")
    _fail_writes_after(monkeypatch, 1)  # the block goes in, the pin file does not
    with pytest.raises(StoreFullError, match="disk full while pinning"):
        store.put(b"one block, then the pin")
    monkeypatch.undo()
    assert store.pins() == [kept_cid] and temp_files(store.root) == []
    assert store.get(kept_cid) == b"kept"


def test_other_write_errors_are_storage_errors(store, monkeypatch) -> None:
    _fail_writes_after(monkeypatch, 0, errno.EIO)
    with pytest.raises(StorageError, match=r"writing block .* failed") as caught:
        store.put(generated("eio", 1000))
    assert not isinstance(caught.value, StoreFullError)
    assert temp_files(store.root) == []


def test_disk_full_during_get_to_leaves_no_output(store, tmp_path, monkeypatch) -> None:
    cid = store.put(generated("get-full", 800_000))
    _fail_writes_after(monkeypatch, 1)
    with pytest.raises(StoreFullError):
        store.get_to(cid, tmp_path / "out")
    assert not (tmp_path / "out").exists() and temp_files(tmp_path) == []


class _BrokenStream(io.RawIOBase):
    """A stream that delivers some bytes, then fails like a dropped connection."""

    def __init__(self, good: int) -> None:
        self._left = good

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self._left <= 0:
            raise ConnectionResetError(errno.ECONNRESET, "connection reset by peer")
        n = min(len(buffer), self._left)
        buffer[:n] = b"x" * n
        self._left -= n
        return n


def test_a_stream_that_breaks_mid_way_stores_nothing_usable(store) -> None:
    with pytest.raises(StorageError, match="reading the source stream failed"):
        store.put(_BrokenStream(1_000_000))
    assert store.pins() == [] and temp_files(store.root) == []
    assert_every_block_verifies(store)


def test_gc_removes_what_no_pin_reaches(store) -> None:
    kept = generated("gc", 1_000_000)
    kept_cid = store.put(kept)
    # The dropped content shares its first 3 chunks with the kept one: they must survive.
    dropped_cid = store.put(kept[: 3 * 262144] + generated("gc-extra", 600_000))
    store.unpin(dropped_cid)
    (store.root / "blocks" / "aa").mkdir(exist_ok=True)
    (store.root / "blocks" / "aa" / ".tmp-999-1-0").write_bytes(b"left by a killed put")
    (store.root / "pins" / ".tmp-999-1-pin").write_text("left by a killed pin")
    (store.root / "blocks" / "stray-file").write_text("not a shard folder: ignored")
    removed = store.gc()
    assert removed == 4  # 3 leaves of its own + its root
    assert store.get(kept_cid) == kept
    assert store.has(dropped_cid) is False
    assert temp_files(store.root) == []


def test_gc_refuses_when_a_pinned_dag_is_damaged(store) -> None:
    cid = store.put(generated("gc-damaged", 174 * 262144 + 1))
    store.put(b"unpinned soon")
    store.unpin(compute_cid(b"unpinned soon"))
    store._block_path(leaf_cids(store, cid)[0]).unlink()
    count = len(block_files(store))
    with pytest.raises(StorageError, match=f"gc stopped, pinned content {cid} is damaged"):
        store.gc()
    assert len(block_files(store)) == count


def test_pin_and_unpin(store) -> None:
    cid = store.put(b"pin me")
    store.unpin(cid)
    store.unpin(cid)  # not pinned any more: a no-op
    assert store.pins() == []
    store.pin(cid)
    store.pin(cid)
    assert store.pins() == [cid]


def test_durable_mode_fsyncs_blocks_folders_and_pins(tmp_path, monkeypatch) -> None:
    synced = []
    real = os.fsync
    monkeypatch.setattr(local_module.os, "fsync", lambda fd: synced.append(fd) or real(fd))
    durable = LocalStore(tmp_path / "durable", durable=True)
    data = generated("durable", 600_000)
    cid = durable.put(data)
    assert durable.get(cid) == data
    assert len(synced) >= 4 + 1 + 1  # 4 blocks, their folders, the pin


def test_fetch_verified_checks_the_recorded_sha256(store) -> None:
    data = generated("verified", 5000)
    cid = store.put(data)
    assert fetch_verified(store, cid, sha256_hex(data)) == data
    assert fetch_verified(store, cid, "0x" + sha256_hex(data).upper()) == data
    with pytest.raises(IntegrityError, match="was recorded for it"):
        fetch_verified(store, cid, sha256_hex(b"other"))
    with pytest.raises(IntegrityError, match="64 hex digits"):
        fetch_verified(store, cid, "abc")


def test_open_store_follows_settings(tmp_path) -> None:
    local = open_store(Settings(store="local", store_path=tmp_path / "s"))
    assert isinstance(local, LocalStore) and local.root == tmp_path / "s"
    kubo = open_store(Settings(store="kubo", kubo_url="http://127.0.0.1:5999"))
    assert isinstance(kubo, KuboStore) and kubo.url == "http://127.0.0.1:5999"
    assert isinstance(local, ContentStore) and isinstance(kubo, ContentStore)
    with pytest.raises(StorageError, match="TRUSTMARKET_STORE='ftp' is not"):
        open_store(Settings.model_construct(store="ftp"))


class _GeneratedStream(io.RawIOBase):
    """`size` bytes made on the fly: the test itself never holds the content."""

    def __init__(self, size: int) -> None:
        self._left = size
        self._counter = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = min(len(buffer), self._left, 1 << 20)
        piece = hashlib.shake_256(self._counter.to_bytes(8, "big")).digest(n)
        buffer[:n] = piece
        self._counter += 1
        self._left -= n
        return n


def test_put_and_get_to_stream_in_bounded_memory(store, tmp_path) -> None:
    import tracemalloc

    size = 40 * MB
    tracemalloc.start()
    try:
        cid = store.put(_GeneratedStream(size))
        _, put_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        store.get_to(cid, tmp_path / "out")
        _, get_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (tmp_path / "out").stat().st_size == size
    # A handful of 256 KiB buffers and 1 MiB pieces, never the 40 MB.
    assert put_peak < 8 * MB and get_peak < 8 * MB, (put_peak, get_peak)
