"""What every content store shares: the `ContentStore` protocol, `ContentStat`, and reading a put's source.

A source is bytes, a file path or a binary stream. Paths and streams are read in 256 KiB pieces into one reused
buffer, so a 1 GB file never sits whole in memory and no piece is allocated per chunk.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import BinaryIO, Protocol, runtime_checkable

from backend.storage import cids
from backend.storage.errors import IntegrityError, StorageError
from backend.storage.importer import CHUNK_SIZE, DagBuilder

Source = bytes | bytearray | memoryview | Path | BinaryIO

_SHA256_HEX = re.compile(r"^(0x)?[0-9a-fA-F]{64}$")


@dataclass(frozen=True, slots=True)
class ContentStat:
    """What a store knows about one piece of content."""

    cid: str
    size: int  # bytes of the file
    blocks: int  # blocks in its DAG, root included
    cumulative_size: int  # bytes of all those blocks (what Kubo calls CumulativeSize)
    pinned: bool

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@runtime_checkable
class ContentStore(Protocol):
    """Content-addressed storage whose CIDs equal Kubo's (`ipfs add` defaults, or `--cid-version=1`)."""

    def put(self, source: Source, *, cid_version: int = 0, only_hash: bool = False) -> str:
        """Store `source` (pinned) and return its CID; with `only_hash`, compute the CID and store nothing."""
        ...

    def get(self, cid: str) -> bytes:
        """The content's bytes, every block verified against its CID."""
        ...

    def get_to(self, cid: str, path: Path) -> None:
        """Stream the verified content into `path` (which appears only once complete)."""
        ...

    def has(self, cid: str) -> bool:
        """Whether the store holds the content."""
        ...

    def pin(self, cid: str) -> None:
        """Keep the content (it must be present)."""
        ...

    def unpin(self, cid: str) -> None:
        """Stop keeping the content (a no-op if it was not pinned)."""
        ...

    def stat(self, cid: str) -> ContentStat:
        """Size, number of blocks and pin state of the content."""
        ...


def check_cid_version(cid_version: int) -> None:
    if cid_version not in (0, 1):
        raise StorageError(f"cid_version must be 0 or 1, not {cid_version!r}")


class BufferPool(Protocol):
    """Where `iter_source` gets the buffers it reads into, and gives them back once a piece is used."""

    def take(self) -> bytearray: ...

    def release(self, buffer: bytearray) -> None: ...


class _OneBuffer:
    """The default pool: one buffer, reused for every piece (the consumer uses each piece before the next)."""

    def __init__(self, size: int) -> None:
        self._buffer = bytearray(size)

    def take(self) -> bytearray:
        return self._buffer

    def release(self, buffer: bytearray) -> None:
        pass


def iter_source(
    source: Source, chunk_size: int = CHUNK_SIZE, pool: BufferPool | None = None
) -> Iterator[memoryview]:
    """Yield the bytes of `source` in pieces.

    Pieces of paths and streams live in buffers from `pool` (by default one shared buffer): a piece is valid until
    the consumer asks for the next one, when its buffer goes back to the pool.
    """
    if isinstance(source, bytes | bytearray | memoryview):
        yield memoryview(source)
        return
    pool = pool or _OneBuffer(chunk_size)
    if isinstance(source, os.PathLike):
        path = Path(source)
        try:
            stream = open(path, "rb", buffering=0)  # noqa: SIM115 - closed below; raw I/O avoids a copy
        except OSError as exc:
            raise StorageError(f"cannot read {path}: {exc.strerror or exc}") from exc
        with stream:
            yield from _iter_stream(stream, pool, str(path))
        return
    if isinstance(source, str):
        raise TypeError("pass file contents as bytes or a file name as pathlib.Path, not str")
    if hasattr(source, "read"):
        yield from _iter_stream(source, pool, "the source stream")
        return
    raise TypeError(f"cannot store a {type(source).__name__}: pass bytes, a Path or a binary stream")


def _iter_stream(stream: BinaryIO, pool: BufferPool, name: str) -> Iterator[memoryview]:
    readinto = getattr(stream, "readinto", None)
    while True:
        buffer = pool.take()
        try:
            if readinto is not None:
                got = readinto(buffer)
                if got is None:  # a non-blocking stream with nothing ready: not something we can stream from
                    raise StorageError(f"{name} is non-blocking and has no data ready")
                piece = memoryview(buffer)[:got]
            else:
                data = stream.read(len(buffer))
                if not isinstance(data, bytes | bytearray):
                    raise StorageError(
                        f"{name} returned {type(data).__name__}, not bytes (open it in binary mode)"
                    )
                piece = memoryview(data)
        except OSError as exc:
            raise StorageError(f"reading {name} failed: {exc}") from exc
        if not len(piece):
            pool.release(buffer)
            return
        yield piece
        pool.release(buffer)


def compute_cid(source: Source, cid_version: int = 0) -> str:
    """The CID Kubo would give `source` (`ipfs add --only-hash`), without storing anything."""
    check_cid_version(cid_version)
    builder = DagBuilder(cid_version)
    for piece in iter_source(source):
        builder.update(piece)
    return builder.finalize()


def _expected_sha256(sha256_hex: str) -> str:
    if not isinstance(sha256_hex, str) or not _SHA256_HEX.match(sha256_hex):
        raise IntegrityError(f"expected sha256 must be 64 hex digits, not {sha256_hex!r}")
    return sha256_hex.lower().removeprefix("0x")


def _check_sha256(cid: str, actual: str, expected: str) -> None:
    if actual != expected:
        raise IntegrityError(f"content {cid} has sha256 {actual}, but {expected} was recorded for it")


def fetch_verified(store: ContentStore, cid: str, sha256_hex: str) -> bytes:
    """Fetch `cid` and check the sha256 recorded with it (e.g. on chain); `IntegrityError` on a mismatch."""
    expected = _expected_sha256(sha256_hex)
    data = store.get(cid)
    _check_sha256(cid, cids.sha256_hex(data), expected)
    return data


def fetch_verified_file(store: ContentStore, cid: str, sha256_hex: str, path: Path) -> Path:
    """`fetch_verified` into the file `path`, streamed (content bigger than memory never sits in it whole):
    the file exists afterwards only if its sha256 matched."""
    expected = _expected_sha256(sha256_hex)
    store.get_to(cid, path)
    digest = hashlib.sha256()
    try:
        with open(path, "rb", buffering=0) as stored:
            while piece := stored.read(CHUNK_SIZE * 4):
                digest.update(piece)
        _check_sha256(cid, digest.hexdigest(), expected)
    except BaseException as exc:
        Path(path).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise StorageError(f"reading {path} failed: {exc.strerror or exc}") from exc
        raise
    return Path(path)


__all__ = [
    "BufferPool",
    "ContentStat",
    "ContentStore",
    "Source",
    "check_cid_version",
    "compute_cid",
    "fetch_verified",
    "fetch_verified_file",
    "iter_source",
]
