"""The two protobuf messages of a UnixFS file: dag-pb's `PBNode`/`PBLink` and UnixFS's `Data`.

Both are tiny and no maintained Python library builds them, so they are encoded here by hand, with the varints
from `multiformats`. The byte layout follows the dag-pb spec (https://ipld.io/specs/codecs/dag-pb/spec/): a
node's Links (field 2) are written *before* its Data (field 1), and every link carries an empty Name, exactly as
Kubo (go-merkledag) writes them; otherwise the hashes, and so the CIDs, would differ from Kubo's.

UnixFS `Data` (https://specs.ipfs.tech/unixfs/): Type (1), Data (2), filesize (3), blocksizes (4, repeated,
unpacked as proto2 writes them).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from functools import lru_cache

from multiformats import varint

from backend.storage.errors import StorageError

# Protobuf wire types.
_VARINT = 0
_FIXED64 = 1
_LEN = 2
_FIXED32 = 5


class UnixFSType(IntEnum):
    """UnixFS node types (only Raw and File make up a file's DAG)."""

    RAW = 0
    DIRECTORY = 1
    FILE = 2
    METADATA = 3
    SYMLINK = 4
    HAMT_SHARD = 5


@dataclass(frozen=True, slots=True)
class PBLink:
    """A link from a dag-pb node to a child: the child's binary CID and the bytes of its whole sub-DAG."""

    cid: bytes
    tsize: int
    name: str = ""


@dataclass(slots=True)
class PBNode:
    """A decoded dag-pb node. `data` is a view into the block (no copy of a 256 KiB leaf)."""

    links: list[PBLink] = field(default_factory=list)
    data: memoryview | None = None


@dataclass(slots=True)
class UnixFSData:
    """A decoded UnixFS `Data` message."""

    type: UnixFSType
    data: memoryview | None = None
    filesize: int | None = None
    blocksizes: list[int] = field(default_factory=list)


def _key(field_number: int, wire_type: int) -> bytes:
    return varint.encode(field_number << 3 | wire_type)


_LINK_HASH = _key(1, _LEN)
_LINK_NAME = _key(2, _LEN)
_LINK_TSIZE = _key(3, _VARINT)
_NODE_DATA = _key(1, _LEN)
_NODE_LINK = _key(2, _LEN)
_FS_TYPE = _key(1, _VARINT)
_FS_DATA = _key(2, _LEN)
_FS_FILESIZE = _key(3, _VARINT)
_FS_BLOCKSIZE = _key(4, _VARINT)


def _bytes_field(key: bytes, value: bytes) -> bytes:
    return key + varint.encode(len(value)) + value


def encode_link(link: PBLink) -> bytes:
    """One PBLink message: Hash, Name (always present, even empty, as go-merkledag writes it), Tsize."""
    return (
        _bytes_field(_LINK_HASH, link.cid)
        + _bytes_field(_LINK_NAME, link.name.encode())
        + _LINK_TSIZE
        + varint.encode(link.tsize)
    )


def encode_node(links: Sequence[PBLink], data: bytes) -> bytes:
    """A whole dag-pb node: links first, then the Data field (omitted only when there is none)."""
    out = bytearray()
    for link in links:
        out += _bytes_field(_NODE_LINK, encode_link(link))
    out += _bytes_field(_NODE_DATA, data)
    return bytes(out)


def encode_unixfs_file(filesize: int, blocksizes: Sequence[int]) -> bytes:
    """UnixFS Data of an internal file node: no bytes of its own, the total size and each child's size."""
    out = bytearray(_FS_TYPE + varint.encode(UnixFSType.FILE) + _FS_FILESIZE + varint.encode(filesize))
    for size in blocksizes:
        out += _FS_BLOCKSIZE + varint.encode(size)
    return bytes(out)


@lru_cache(maxsize=64)
def leaf_frame(size: int) -> tuple[bytes, bytes]:
    """Header and trailer that wrap `size` bytes of file data into a dag-pb leaf (CIDv0's leaves).

    The leaf is `header + data + trailer`; returning the frame instead of the joined block lets the importer hash
    and write a 256 KiB chunk without copying it. An empty file has no Data field at all (Kubo's empty-file node).
    Cached: every full chunk has the same frame, and `multiformats`' varints type-check each call.
    """
    inner_head = _FS_TYPE + varint.encode(UnixFSType.FILE)
    if size:
        inner_head += _FS_DATA + varint.encode(size)
    trailer = _FS_FILESIZE + varint.encode(size)
    inner_len = len(inner_head) + size + len(trailer)
    return _NODE_DATA + varint.encode(inner_len) + inner_head, trailer


def leaf_block_size(size: int) -> int:
    """Exact length of the dag-pb leaf holding `size` bytes (lets a reader tell leaves from inner nodes)."""
    head, tail = leaf_frame(size)
    return len(head) + size + len(tail)


def _fields(buf: memoryview, what: str):
    """Yield (field number, wire type, value) of a protobuf message; value is an int or a memoryview."""
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _read_varint(buf, pos, what)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise StorageError(f"malformed {what}: field number 0")
        if wire == _VARINT:
            value, pos = _read_varint(buf, pos, what)
            yield number, wire, value
        elif wire == _LEN:
            length, pos = _read_varint(buf, pos, what)
            if pos + length > end:
                raise StorageError(f"malformed {what}: field {number} runs past the end")
            yield number, wire, buf[pos : pos + length]
            pos += length
        elif wire in (_FIXED64, _FIXED32):
            width = 8 if wire == _FIXED64 else 4
            if pos + width > end:
                raise StorageError(f"malformed {what}: field {number} runs past the end")
            yield number, wire, int.from_bytes(buf[pos : pos + width], "little")
            pos += width
        else:
            raise StorageError(f"malformed {what}: unsupported wire type {wire}")


def _read_varint(buf: memoryview, pos: int, what: str) -> tuple[int, int]:
    # Decoded inline rather than with `multiformats.varint.decode_raw`, which type-checks every call (~20 µs):
    # a 1 GB file has ~100,000 varints to read. Protobuf varints are at most 10 bytes (64 bits).
    value = shift = 0
    end = min(len(buf), pos + 10)
    while pos < end:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
    raise StorageError(f"malformed {what}: bad varint at byte {pos}")


def _expect(wire: int, wanted: int, what: str, number: int) -> None:
    if wire != wanted:
        raise StorageError(f"malformed {what}: field {number} has wire type {wire}")


def decode_node(block: bytes | memoryview) -> PBNode:
    """Parse a dag-pb block. Raises `StorageError` on anything that is not a well-formed PBNode."""
    node = PBNode()
    for number, wire, value in _fields(memoryview(block), "dag-pb node"):
        if number == 1:
            _expect(wire, _LEN, "dag-pb node", number)
            node.data = value
        elif number == 2:
            _expect(wire, _LEN, "dag-pb node", number)
            node.links.append(_decode_link(value))
        else:
            raise StorageError(f"malformed dag-pb node: unknown field {number}")
    return node


def _decode_link(buf: memoryview) -> PBLink:
    cid, name, tsize = None, "", 0
    for number, wire, value in _fields(buf, "dag-pb link"):
        if number == 1:
            _expect(wire, _LEN, "dag-pb link", number)
            cid = bytes(value)
        elif number == 2:
            _expect(wire, _LEN, "dag-pb link", number)
            name = bytes(value).decode("utf-8", errors="replace")
        elif number == 3:
            _expect(wire, _VARINT, "dag-pb link", number)
            tsize = value
    if cid is None:
        raise StorageError("malformed dag-pb link: no Hash")
    return PBLink(cid=cid, tsize=tsize, name=name)


def decode_unixfs(data: memoryview | None) -> UnixFSData:
    """Parse the UnixFS Data carried in a dag-pb node's Data field."""
    if data is None:
        raise StorageError("dag-pb node carries no UnixFS data")
    fs_type, payload, filesize, blocksizes = None, None, None, []
    for number, wire, value in _fields(data, "UnixFS data"):
        if number == 1:
            _expect(wire, _VARINT, "UnixFS data", number)
            fs_type = value
        elif number == 2:
            _expect(wire, _LEN, "UnixFS data", number)
            payload = value
        elif number == 3:
            _expect(wire, _VARINT, "UnixFS data", number)
            filesize = value
        elif number == 4:
            _expect(wire, _VARINT, "UnixFS data", number)
            blocksizes.append(value)
        # Fields 5-8 (hash type, fanout, mode, mtime) do not change a file's bytes.
    try:
        kind = UnixFSType(fs_type) if fs_type is not None else None
    except ValueError:
        kind = None
    if kind is None:
        raise StorageError(f"malformed UnixFS data: bad or missing Type {fs_type!r}")
    return UnixFSData(type=kind, data=payload, filesize=filesize, blocksizes=blocksizes)


__all__ = [
    "PBLink",
    "PBNode",
    "UnixFSData",
    "UnixFSType",
    "decode_node",
    "decode_unixfs",
    "encode_link",
    "encode_node",
    "encode_unixfs_file",
    "leaf_block_size",
    "leaf_frame",
]
