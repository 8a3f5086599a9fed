"""`LocalStore`: the embedded content store, a directory of blocks named by CID.

Layout under `root`::

    blocks/<2 chars>/<CIDv1 base32>   one file per block, sharded like Kubo's flatfs (next-to-last two chars)
    pins/<CIDv1 base32>               one file per pinned root (its text is the CID as added)
    lock                              flock: puts and pins share it, `gc` takes it alone

Writes are atomic: each block goes to a temp file in its final folder and is `os.replace`d into place, so a
reader (or a process killed half-way) never sees half a block. Reads re-hash every block and raise
`CorruptedBlock` with the block's CID on a mismatch. Several processes may use one root at once: blocks are
immutable and named by content, pins are single files, and `gc` excludes puts through the lock.

`durable=True` also fsyncs every block and the folders it lands in (power-loss safety, at the price of waiting
for the disk); without it a write survives a killed process but a power cut may lose recent blocks, which the
next read reports as missing or corrupted and the next `put` of the same content repairs.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import tempfile
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from backend.storage import cids
from backend.storage.base import ContentStat, Source, check_cid_version, compute_cid, iter_source
from backend.storage.errors import ContentNotFound, CorruptedBlock, StorageError, StoreFullError
from backend.storage.exporter import BlockGetter, DagShape, iter_file, walk_dag
from backend.storage.importer import CHUNK_SIZE, Buffer, DagBuilder
from backend.storage.pipeline import WriteBehind

_TMP_PREFIX = ".tmp-"
_FRAME_ROOM = 4096  # a leaf is its chunk plus a few bytes of dag-pb/UnixFS framing
_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}


def _os_error(exc: OSError, action: str) -> StorageError:
    if exc.errno in _FULL_ERRNOS:
        return StoreFullError(f"disk full while {action}; content stored before is unchanged")
    return StorageError(f"{action} failed: {exc.strerror or exc}")


def _unlink_quietly(path: str | Path) -> None:
    # Already gone, or the disk is in trouble: the caller's original error is the one to report.
    with contextlib.suppress(OSError):
        os.unlink(path)


def _write_all(fd: int, parts: Sequence[Buffer]) -> None:
    """Write every part with as few syscalls as the kernel allows (writev: no joined copy of the block)."""
    views = [memoryview(part).cast("B") for part in parts if len(part)]
    while views:
        written = os.writev(fd, views)
        if written <= 0:
            raise OSError(errno.EIO, "write made no progress")
        while views and written >= len(views[0]):
            written -= len(views[0])
            views.pop(0)
        if views and written:
            views[0] = views[0][written:]


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _BlockWriter:
    """The importer's sink: writes each new block atomically; skips blocks already stored intact."""

    def __init__(self, blocks_dir: Path, durable: bool) -> None:
        self._dir = str(blocks_dir)
        self._durable = durable
        self._shards: set[str] = set()
        # pid + thread + counter: unique among every writer of this root without a random name per block.
        self._tmp = f"{_TMP_PREFIX}{os.getpid()}-{threading.get_ident()}-"
        self._count = 0
        self._scratch = bytearray()  # reused to re-hash blocks that are already stored

    def write(self, cid: bytes, parts: Sequence[Buffer]) -> None:
        key = cids.block_key(cid)
        shard = os.path.join(self._dir, key[-3:-1])
        path = os.path.join(shard, key)
        if self._stored_intact(path, sum(len(part) for part in parts), cid):
            return
        if shard not in self._shards:
            try:
                os.makedirs(shard, exist_ok=True)
            except OSError as exc:
                raise _os_error(exc, f"writing block {cids.cid_text(cid)}") from exc
            self._shards.add(shard)
        tmp = f"{shard}/{self._tmp}{self._count}"
        self._count += 1
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
            try:
                _write_all(fd, parts)
                if self._durable:
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
        except BaseException as exc:
            _unlink_quietly(tmp)
            if isinstance(exc, OSError):
                raise _os_error(exc, f"writing block {cids.cid_text(cid)}") from exc
            raise

    def _stored_intact(self, path: str, size: int, cid: bytes) -> bool:
        """Whether the block is already there with the right bytes (a damaged copy gets rewritten by this put)."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return False
        try:
            if os.fstat(fd).st_size != size:
                return False
            if len(self._scratch) < size:
                self._scratch = bytearray(size)
            view = memoryview(self._scratch)[:size]
            return _read_fully(fd, view) == size and hashlib.sha256(view).digest() == cids.digest_of(cid)
        except OSError:
            return False
        finally:
            os.close(fd)

    def finish(self) -> None:
        if self._durable:
            for shard in self._shards:
                _fsync_dir(shard)


def _read_fully(fd: int, view: memoryview) -> int:
    """Read into `view` until it is full or the file ends; return the bytes read."""
    got = 0
    while got < len(view):
        n = os.readv(fd, [view[got:]])
        if n == 0:
            break
        got += n
    return got


def _incomplete(root: bytes, exc: ContentNotFound) -> ContentNotFound:
    """A missing block under `root` makes `root` incomplete: the message names both."""
    root_text = cids.cid_text(root)
    if exc.cid == root_text:
        return ContentNotFound(root_text)
    return ContentNotFound(root_text, f"content {root_text} is incomplete: block {exc.cid} is missing")


class LocalStore:
    """A content-addressed directory whose CIDs equal Kubo's; see the module docstring for the layout."""

    def __init__(self, root: Path, *, durable: bool = False) -> None:
        self.root = Path(root)
        self.durable = durable
        self._blocks = self.root / "blocks"
        self._pins = self.root / "pins"
        try:
            self._blocks.mkdir(parents=True, exist_ok=True)
            self._pins.mkdir(exist_ok=True)
        except OSError as exc:
            raise _os_error(exc, f"creating the store at {self.root}") from exc

    def __repr__(self) -> str:
        return f"LocalStore({str(self.root)!r})"

    # -- writing ---------------------------------------------------------------------------------------------

    def put(self, source: Source, *, cid_version: int = 0, only_hash: bool = False) -> str:
        """Store `source` (bytes, a Path or a binary stream) pinned, and return its CID."""
        check_cid_version(cid_version)
        if only_hash:
            return compute_cid(source, cid_version)
        with self._lock(fcntl.LOCK_SH):
            writer = _BlockWriter(self._blocks, self.durable)
            pipe = WriteBehind(CHUNK_SIZE)
            builder = DagBuilder(cid_version, lambda cid, parts: pipe.submit(writer.write, cid, parts))
            try:
                for piece in iter_source(source, pool=pipe):
                    builder.update(piece)
                cid = builder.finalize()
                pipe.close()
            except BaseException:
                pipe.abort()
                raise
            writer.finish()
            self._write_pin(builder.root_cid, cid)
        return cid

    def pin(self, cid: str) -> None:
        """Pin content that is fully present; `ContentNotFound` otherwise."""
        root = self._root(cid)
        with self._lock(fcntl.LOCK_SH):
            self._shape(root)
            self._write_pin(root, cids.cid_text(root))

    def unpin(self, cid: str) -> None:
        """Remove the pin (a no-op if there was none); `ContentNotFound` if the store never had the content."""
        root = self._root(cid)
        try:
            os.unlink(self._pin_path(root))
        except FileNotFoundError:
            if not self.has(cid):
                raise ContentNotFound(cids.cid_text(root)) from None
        except OSError as exc:
            raise _os_error(exc, f"unpinning {cid}") from exc

    def gc(self) -> int:
        """Delete blocks no pin reaches, and temp files of interrupted writes; return the blocks removed.

        Refuses (`StorageError`) if a pinned DAG cannot be walked: deleting then could destroy pinned data.
        """
        with self._lock(fcntl.LOCK_EX):
            live: set[str] = set()
            for cid in self.pins():
                root = self._root(cid)
                try:
                    walk_dag(self._read_block, root, lambda block: live.add(cids.block_key(block)))
                except StorageError as exc:
                    raise StorageError(f"gc stopped, pinned content {cid} is damaged: {exc}") from exc
            removed = 0
            for shard in self._blocks.iterdir():
                for entry in shard.iterdir():
                    if entry.name.startswith(_TMP_PREFIX):
                        _unlink_quietly(entry)  # no put runs while we hold the lock: this one was killed
                    elif entry.name not in live:
                        _unlink_quietly(entry)
                        removed += 1
            return removed

    # -- reading ---------------------------------------------------------------------------------------------

    def get(self, cid: str) -> bytes:
        """The verified bytes of `cid` (use `get_to` for content too big for memory)."""
        root = self._root(cid)
        return b"".join(self._content(root))

    def get_to(self, cid: str, path: Path) -> None:
        """Stream the verified content into `path`; on any error `path` is left untouched."""
        root = self._root(cid)
        path = Path(path)
        try:
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
        except OSError as exc:
            raise _os_error(exc, f"writing {path}") from exc
        pipe = WriteBehind(CHUNK_SIZE + _FRAME_ROOM)
        held: list[bytearray] = []

        def read_block(cid: bytes) -> memoryview:
            held.append(pipe.take())
            return self._read_block_into(cid, held[-1])

        try:
            with os.fdopen(fd, "wb", buffering=0) as out:
                for piece in self._content(root, read_block):
                    pipe.submit(_write_all, out.fileno(), (piece,))
                    for buffer in held:
                        pipe.release(buffer)
                    held.clear()
                pipe.close()
            os.replace(tmp, path)
        except BaseException as exc:
            pipe.abort()
            _unlink_quietly(tmp)
            if isinstance(exc, OSError):
                raise _os_error(exc, f"writing {path}") from exc
            raise

    def has(self, cid: str) -> bool:
        """Whether every block of `cid` is present (a damaged block still raises `CorruptedBlock`)."""
        root = self._root(cid)
        try:
            self._shape(root)
        except ContentNotFound:
            return False
        return True

    def stat(self, cid: str) -> ContentStat:
        """Size, block count and pin state; reads only the inner nodes of the DAG."""
        root = self._root(cid)
        shape = self._shape(root)
        return ContentStat(
            cid=cids.cid_text(root),
            size=shape.size,
            blocks=shape.blocks,
            cumulative_size=shape.cumulative_size,
            pinned=self._pin_path(root).exists(),
        )

    def pins(self) -> list[str]:
        """The CIDs pinned in this store, sorted."""
        found = []
        for entry in self._pins.iterdir():
            if not entry.name.startswith(_TMP_PREFIX):
                found.append(entry.read_text().strip())
        return sorted(found)

    # -- internals -------------------------------------------------------------------------------------------

    def _root(self, cid: str) -> bytes:
        if not isinstance(cid, str):
            raise StorageError(f"a CID is text, not {type(cid).__name__}")
        return bytes(cids.parse_cid(cid.strip()))

    def _block_path(self, cid: bytes) -> Path:
        key = cids.block_key(cid)
        return self._blocks / key[-3:-1] / key

    def _pin_path(self, root: bytes) -> Path:
        return self._pins / cids.block_key(root)

    def _read_block(self, cid: bytes) -> bytes:
        try:
            with open(self._block_path(cid), "rb", buffering=0) as stored:
                block = stored.read()
        except FileNotFoundError:
            raise ContentNotFound(cids.cid_text(cid)) from None
        except OSError as exc:
            raise StorageError(f"reading block {cids.cid_text(cid)} failed: {exc.strerror or exc}") from exc
        if hashlib.sha256(block).digest() != cids.digest_of(cid):
            raise CorruptedBlock(cids.cid_text(cid))
        return block

    def _read_block_into(self, cid: bytes, buffer: bytearray) -> memoryview:
        """Like `_read_block`, into a reused buffer (a fresh one only for a block bigger than it)."""
        try:
            fd = os.open(self._block_path(cid), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise ContentNotFound(cids.cid_text(cid)) from None
        except OSError as exc:
            raise StorageError(f"reading block {cids.cid_text(cid)} failed: {exc.strerror or exc}") from exc
        try:
            size = os.fstat(fd).st_size
            view = memoryview(buffer if size < len(buffer) else bytearray(size + 1))
            got = _read_fully(fd, view)
        except OSError as exc:
            raise StorageError(f"reading block {cids.cid_text(cid)} failed: {exc.strerror or exc}") from exc
        finally:
            os.close(fd)
        # Reading one byte more than the size stat gave catches a block that changed under us.
        block = view[:got]
        if hashlib.sha256(block).digest() != cids.digest_of(cid):
            raise CorruptedBlock(cids.cid_text(cid))
        return block

    def _require_block(self, cid: bytes) -> None:
        if not self._block_path(cid).exists():
            raise ContentNotFound(cids.cid_text(cid))

    def _shape(self, root: bytes) -> DagShape:
        try:
            return walk_dag(self._read_block, root, self._require_block)
        except ContentNotFound as exc:
            raise _incomplete(root, exc) from None

    def _content(self, root: bytes, read_block: BlockGetter | None = None) -> Iterator[memoryview]:
        try:
            yield from iter_file(read_block or self._read_block, root)
        except ContentNotFound as exc:
            raise _incomplete(root, exc) from None

    def _write_pin(self, root: bytes, cid_text: str) -> None:
        path = self._pin_path(root)
        if path.exists():
            return
        tmp = self._pins / f"{_TMP_PREFIX}{os.getpid()}-{threading.get_ident()}-{path.name}"
        try:
            with open(tmp, "w") as out:
                out.write(cid_text + "\n")
                if self.durable:
                    out.flush()
                    os.fsync(out.fileno())
            os.replace(tmp, path)
            if self.durable:
                _fsync_dir(str(self._pins))
        except OSError as exc:
            _unlink_quietly(tmp)
            raise _os_error(exc, f"pinning {cid_text}") from exc

    @contextmanager
    def _lock(self, mode: int) -> Iterator[None]:
        try:
            fd = os.open(self.root / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise _os_error(exc, f"locking the store at {self.root}") from exc
        try:
            fcntl.flock(fd, mode)
            yield
        finally:
            os.close(fd)  # closing releases the flock


__all__ = ["LocalStore"]
