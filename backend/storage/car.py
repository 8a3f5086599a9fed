"""CARv1 (https://ipld.io/specs/transport/car/carv1/), the archive the trustless gateway protocol answers with.

A CAR is a varint-framed dag-cbor header `{"roots": [CID], "version": 1}` followed by varint-framed sections,
each a binary CID and the block's bytes. Only what a file's DAG needs is here: writing a one-root header and
sections, and reading sections back (the header is skipped after a sanity check: nothing in a CAR is trusted,
every block is verified against its CID by the reader).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from multiformats import varint

from backend.storage import cids
from backend.storage.errors import StorageError

CAR_MEDIA_TYPE = "application/vnd.ipld.car"
RAW_MEDIA_TYPE = "application/vnd.ipld.raw"
_MAX_HEADER = 1 << 20
_MAX_SECTION = 2 << 20  # a block is at most 256 KiB plus framing here; Kubo's limit is 2 MiB


def _cbor_head(major: int, value: int) -> bytes:
    if value < 24:
        return bytes([major << 5 | value])
    if value < 1 << 8:
        return bytes([major << 5 | 24, value])
    if value < 1 << 16:
        return bytes([major << 5 | 25]) + value.to_bytes(2, "big")
    return bytes([major << 5 | 26]) + value.to_bytes(4, "big")


def car_header(root: bytes) -> bytes:
    """The framed header naming one root (dag-cbor: map keys in length order, the CID as tag 42)."""
    cid_field = b"\x00" + root  # tag 42 carries the binary CID behind a zero byte (the identity multibase)
    body = (
        _cbor_head(5, 2)
        + _cbor_head(3, 5) + b"roots" + _cbor_head(4, 1) + b"\xd8\x2a" + _cbor_head(2, len(cid_field)) + cid_field
        + _cbor_head(3, 7) + b"version" + _cbor_head(0, 1)
    )  # fmt: skip
    return varint.encode(len(body)) + body


def car_section(cid: bytes, block: bytes | memoryview) -> bytes:
    return varint.encode(len(cid) + len(block)) + cid + bytes(block)


class ByteSource(Protocol):
    def read(self, n: int) -> bytes: ...


class CarReader:
    """Reads sections from a byte source (a streamed HTTP body); `next_block()` gives (binary CID, block)."""

    def __init__(self, source: ByteSource, where: str) -> None:
        self._source = source
        self._where = where
        self._buffer = bytearray()
        length = self._varint()
        if length is None or length > _MAX_HEADER:
            raise StorageError(f"{where} answered something that is not a CAR")
        header = self._take(length)
        if b"roots" not in header or b"version" not in header:
            raise StorageError(f"{where} answered a CAR without a CARv1 header")

    def next_block(self) -> tuple[bytes, bytes] | None:
        """The next section, or None at the end of the archive."""
        length = self._varint()
        if length is None:
            return None
        if not 0 < length <= _MAX_SECTION:
            raise StorageError(f"{self._where} answered a CAR section of {length} bytes")
        section = self._take(length)
        cid_length = _cid_length(section)
        if cid_length is None:
            raise StorageError(f"{self._where} answered a CAR section whose CID this store cannot verify")
        return bytes(section[:cid_length]), bytes(section[cid_length:])

    def __iter__(self) -> Iterator[tuple[bytes, bytes]]:
        while (item := self.next_block()) is not None:
            yield item

    def _fill(self, n: int) -> bool:
        while len(self._buffer) < n:
            piece = self._source.read(max(n - len(self._buffer), 65536))
            if not piece:
                return False
            self._buffer += piece
        return True

    def _varint(self) -> int | None:
        value, shift = 0, 0
        for i in range(10):
            if not self._fill(i + 1):
                if i == 0:
                    return None
                raise StorageError(f"{self._where} answered a truncated CAR")
            byte = self._buffer[i]
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                del self._buffer[: i + 1]
                return value
        raise StorageError(f"{self._where} answered a CAR with a malformed length")

    def _take(self, n: int) -> bytes:
        if not self._fill(n):
            raise StorageError(f"{self._where} answered a truncated CAR")
        out = bytes(self._buffer[:n])
        del self._buffer[:n]
        return out


def _cid_length(section: bytes) -> int | None:
    """Length of the binary CID at the start of a section, for the CIDs this store verifies (sha2-256)."""
    for length in (
        len(cids.MULTIHASH_PREFIX) + cids.DIGEST_SIZE,
        len(cids.RAW_V1_PREFIX) + 2 + cids.DIGEST_SIZE,
    ):
        if len(section) >= length and cids.is_block_cid(section[:length]):
            return length
    return None


__all__ = ["CAR_MEDIA_TYPE", "RAW_MEDIA_TYPE", "CarReader", "car_header", "car_section"]
