"""Block files: written atomically (temp file + `os.replace`), read fully, errors mapped to storage errors.

`BlockWriter` is the importer's sink for `LocalStore.put`; it runs on the write-behind thread.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import secrets
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

from backend.storage import cids
from backend.storage.errors import StorageError, StoreFullError
from backend.storage.importer import Buffer

TMP_PREFIX = ".tmp-"
FRAME_ROOM = 4096  # a leaf is its chunk plus a few bytes of dag-pb/UnixFS framing
_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}


def os_error(exc: OSError, action: str) -> StorageError:
    if exc.errno in _FULL_ERRNOS:
        return StoreFullError(f"disk full while {action}; content stored before is unchanged")
    return StorageError(f"{action} failed: {exc.strerror or exc}")


def unlink_quietly(path: str | Path) -> None:
    # Already gone, or the disk is in trouble: the caller's original error is the one to report.
    with contextlib.suppress(OSError):
        os.unlink(path)


def write_all(fd: int, parts: Sequence[Buffer]) -> None:
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


def replace_atomically(tmp: str, path: str, parts: Sequence[Buffer], *, durable: bool, action: str) -> None:
    """Write `parts` into `tmp` (created exclusively) and rename it over `path`: readers see the old file or the
    whole new one, never half. The temp file is removed on any failure."""
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        try:
            write_all(fd, parts)
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException as exc:
        unlink_quietly(tmp)
        if isinstance(exc, OSError):
            raise os_error(exc, action) from exc
        raise


def write_streamed(path: Path, pieces: Iterable[Buffer]) -> None:
    """Stream `pieces` into `path`, which appears only once complete; on any error `path` is left untouched
    (the pieces are verified content, so a failure half-way must not leave a plausible file behind)."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    except OSError as exc:
        raise os_error(exc, f"writing {path}") from exc
    try:
        with os.fdopen(fd, "wb") as out:
            for piece in pieces:
                out.write(piece)
        os.replace(tmp, path)
    except BaseException as exc:
        unlink_quietly(tmp)
        if isinstance(exc, OSError):
            raise os_error(exc, f"writing {path}") from exc
        raise


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class BlockWriter:
    """The importer's sink: writes each new block atomically; skips blocks already stored intact."""

    def __init__(self, blocks_dir: Path, durable: bool) -> None:
        self._dir = str(blocks_dir)
        self._durable = durable
        self._shards: set[str] = set()
        # pid + a random token + a counter: unique among every writer of this root (even if a pid is reused after
        # a killed writer left temp files) without drawing a random name per block.
        self._tmp = f"{TMP_PREFIX}{os.getpid()}-{secrets.token_hex(4)}-"
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
                raise os_error(exc, f"writing block {cids.cid_text(cid)}") from exc
            self._shards.add(shard)
        tmp = f"{shard}/{self._tmp}{self._count}"
        self._count += 1
        replace_atomically(
            tmp, path, parts, durable=self._durable, action=f"writing block {cids.cid_text(cid)}"
        )

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
            return read_fully(fd, view) == size and hashlib.sha256(view).digest() == cids.digest_of(cid)
        except OSError:
            return False
        finally:
            os.close(fd)

    def finish(self) -> None:
        if self._durable:
            for shard in self._shards:
                fsync_dir(shard)


def read_fully(fd: int, view: memoryview) -> int:
    """Read into `view` until it is full or the file ends; return the bytes read."""
    got = 0
    while got < len(view):
        n = os.readv(fd, [view[got:]])
        if n == 0:
            break
        got += n
    return got


__all__ = [
    "FRAME_ROOM",
    "TMP_PREFIX",
    "BlockWriter",
    "fsync_dir",
    "os_error",
    "read_fully",
    "replace_atomically",
    "unlink_quietly",
    "write_all",
    "write_streamed",
]
