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

import fcntl
import hashlib
import os
import secrets
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from backend.storage import cids
from backend.storage.base import ContentStat, Source, check_cid_version, compute_cid, iter_source
from backend.storage.blockfiles import (
    FRAME_ROOM,
    TMP_PREFIX,
    BlockWriter,
    fsync_dir,
    os_error,
    read_fully,
    replace_atomically,
    unlink_quietly,
    write_all,
)
from backend.storage.errors import ContentNotFound, CorruptedBlock, StorageError
from backend.storage.exporter import BlockGetter, DagShape, iter_file, walk_dag
from backend.storage.importer import CHUNK_SIZE, DagBuilder
from backend.storage.pipeline import WriteBehind


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
            raise os_error(exc, f"creating the store at {self.root}") from exc

    def __repr__(self) -> str:
        return f"LocalStore({str(self.root)!r})"

    # -- writing ---------------------------------------------------------------------------------------------

    def put(self, source: Source, *, cid_version: int = 0, only_hash: bool = False) -> str:
        """Store `source` (bytes, a Path or a binary stream) pinned, and return its CID."""
        check_cid_version(cid_version)
        if only_hash:
            return compute_cid(source, cid_version)
        with self._lock(fcntl.LOCK_SH):
            writer = BlockWriter(self._blocks, self.durable)
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
            raise os_error(exc, f"unpinning {cid}") from exc

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
            for entry in self._pins.iterdir():
                if entry.name.startswith(TMP_PREFIX):
                    unlink_quietly(entry)
            removed = 0
            for shard in self._blocks.iterdir():
                if not shard.is_dir():
                    continue
                for entry in shard.iterdir():
                    if entry.name.startswith(TMP_PREFIX):
                        unlink_quietly(entry)  # no put runs while we hold the lock: this one was killed
                    elif entry.name not in live:
                        unlink_quietly(entry)
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
            raise os_error(exc, f"writing {path}") from exc
        pipe = WriteBehind(CHUNK_SIZE + FRAME_ROOM)
        held: list[bytearray] = []

        def read_block(cid: bytes) -> memoryview:
            held.append(pipe.take())
            return self._read_block_into(cid, held[-1])

        try:
            try:
                for piece in self._content(root, read_block):
                    pipe.submit(write_all, fd, (piece,))
                    for buffer in held:
                        pipe.release(buffer)
                    held.clear()
                pipe.close()
            except BaseException:
                pipe.abort()  # before the fd is closed: its number must not be reused under a pending write
                raise
            finally:
                os.close(fd)
            os.replace(tmp, path)
        except BaseException as exc:
            unlink_quietly(tmp)
            if isinstance(exc, OSError):
                raise os_error(exc, f"writing {path}") from exc
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

    def read_block(self, cid: bytes) -> bytes:
        """One block by binary CID, verified (what the gateway serves as `application/vnd.ipld.raw`)."""
        return self._read_block(cid)

    def pins(self) -> list[str]:
        """The CIDs pinned in this store, sorted."""
        found = []
        for entry in self._pins.iterdir():
            if entry.name.startswith(TMP_PREFIX):
                continue
            try:
                found.append(entry.read_text().strip())
            except FileNotFoundError:
                continue  # unpinned by another process while we listed
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
            got = read_fully(fd, view)
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
        tmp = self._pins / f"{TMP_PREFIX}{os.getpid()}-{secrets.token_hex(4)}-{path.name}"
        line = (cid_text.encode() + b"\n",)
        replace_atomically(str(tmp), str(path), line, durable=self.durable, action=f"pinning {cid_text}")
        if self.durable:
            try:
                fsync_dir(str(self._pins))
            except OSError as exc:
                raise os_error(exc, f"pinning {cid_text}") from exc

    @contextmanager
    def _lock(self, mode: int) -> Iterator[None]:
        try:
            fd = os.open(self.root / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise os_error(exc, f"locking the store at {self.root}") from exc
        try:
            fcntl.flock(fd, mode)
            yield
        finally:
            os.close(fd)  # closing releases the flock


__all__ = ["LocalStore"]
