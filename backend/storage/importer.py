"""Chunk a byte stream into a UnixFS file DAG whose root CID equals Kubo's, producing its blocks on the way.

Kubo's `ipfs add` defaults: fixed 256 KiB chunks, balanced layout with at most 174 links per node, sha2-256.
CIDv0 wraps each chunk in a dag-pb/UnixFS leaf; CIDv1 (`--cid-version=1`) implies raw leaves. A file of one
chunk is its own root (the leaf), as in Kubo and the reference JS importer.

The balanced layout is built bottom-up while the data streams in: level 0 collects leaf links; whenever a level
holds 174 links they become one parent on the next level. At the end each level is closed from the bottom, so
the tree is the one Kubo builds (full sub-trees on the left, the last one partial, a single root on top).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from backend.storage import cids, dagpb

CHUNK_SIZE = 256 * 1024
MAX_LINKS = 174

Buffer = bytes | bytearray | memoryview
#: Receives each block as soon as it exists: its binary CID and the parts whose concatenation is the block.
#: Parts may be views into the caller's buffer: a sink must use them before it returns.
BlockSink = Callable[[bytes, Sequence[Buffer]], None]


@dataclass(frozen=True, slots=True)
class _Link:
    cid: bytes
    tsize: int  # bytes of the whole sub-DAG (the block and everything under it)
    filesize: int  # bytes of file data under it


class DagBuilder:
    """Push-style importer: `update()` with the file's bytes in any pieces, then `finalize()` for the root CID.

    Every block goes to `sink` (if any) exactly once, children before parents, so a store that writes blocks
    in this order never references a block it has not written yet.
    """

    def __init__(
        self,
        cid_version: int = 0,
        sink: BlockSink | None = None,
        *,
        chunk_size: int = CHUNK_SIZE,
        max_links: int = MAX_LINKS,
    ) -> None:
        if cid_version not in (0, 1):
            raise ValueError(f"cid_version must be 0 or 1, not {cid_version!r}")
        if chunk_size < 1 or max_links < 2:
            raise ValueError(f"need chunk_size >= 1 and max_links >= 2, not {chunk_size}, {max_links}")
        self.cid_version = cid_version
        # Other values than Kubo's defaults give other CIDs (like `ipfs add --chunker`); tests use tiny ones to
        # exercise deep trees cheaply.
        self.chunk_size = chunk_size
        self.max_links = max_links
        self.size = 0
        self.blocks = 0
        self._sink = sink
        self._node_prefix = cids.DAG_PB_V0_PREFIX if cid_version == 0 else cids.DAG_PB_V1_PREFIX
        self._pending = bytearray()  # the start of a chunk that has not filled up yet
        self._levels: list[list[_Link]] = [[]]
        self._closed: list[bool] = [False]  # whether a level has already emitted a parent
        self._root: bytes | None = None

    def update(self, data: Buffer) -> None:
        """Feed the next bytes of the file. Full chunks taken straight from `data` are not copied."""
        if self._root is not None:
            raise ValueError("update() after finalize()")
        view = memoryview(data).cast("B")
        if self._pending:
            take = min(self.chunk_size - len(self._pending), len(view))
            self._pending += view[:take]
            view = view[take:]
            if len(self._pending) < self.chunk_size:
                return
            self._add_leaf(self._pending)
            self._pending = bytearray()
        while len(view) >= self.chunk_size:
            self._add_leaf(view[: self.chunk_size])
            view = view[self.chunk_size :]
        if view:
            self._pending += view

    def finalize(self) -> str:
        """Close the tree and return the root CID as text (base58btc for v0, base32 for v1)."""
        if self._root is None:
            if self._pending or (not self._levels[0] and len(self._levels) == 1):
                self._add_leaf(self._pending)  # the last short chunk, or the empty file's one leaf
                self._pending = bytearray()
            self._root = self._close_levels()
        return cids.cid_text(self._root)

    @property
    def root_cid(self) -> bytes:
        """The binary root CID (after `finalize`)."""
        if self._root is None:
            raise ValueError("root_cid before finalize()")
        return self._root

    def _add_leaf(self, chunk: Buffer) -> None:
        size = len(chunk)
        if self.cid_version == 1:
            digest = hashlib.sha256(chunk).digest()
            cid = cids.make_cid(cids.RAW_V1_PREFIX, digest)
            parts: Sequence[Buffer] = (chunk,)
            block_size = size
        else:
            head, tail = dagpb.leaf_frame(size)
            hasher = hashlib.sha256(head)
            hasher.update(chunk)
            hasher.update(tail)
            cid = cids.make_cid(cids.DAG_PB_V0_PREFIX, hasher.digest())
            parts = (head, chunk, tail)
            block_size = len(head) + size + len(tail)
        self._emit(cid, parts)
        self.size += size
        self._push(0, _Link(cid, block_size, size))

    def _push(self, level: int, link: _Link) -> None:
        links = self._levels[level]
        links.append(link)
        if len(links) == self.max_links:
            self._reduce(level)

    def _reduce(self, level: int) -> None:
        """Turn the links waiting on `level` into one parent node on `level + 1`."""
        links = self._levels[level]
        self._levels[level] = []
        self._closed[level] = True
        if level + 1 == len(self._levels):
            self._levels.append([])
            self._closed.append(False)
        self._push(level + 1, self._parent(links))

    def _parent(self, links: list[_Link]) -> _Link:
        filesize = sum(link.filesize for link in links)
        data = dagpb.encode_unixfs_file(filesize, [link.filesize for link in links])
        block = dagpb.encode_node([dagpb.PBLink(link.cid, link.tsize) for link in links], data)
        cid = cids.make_cid(self._node_prefix, hashlib.sha256(block).digest())
        self._emit(cid, (block,))
        return _Link(cid, len(block) + sum(link.tsize for link in links), filesize)

    def _close_levels(self) -> bytes:
        level = 0
        while True:
            top = level == len(self._levels) - 1
            links = self._levels[level]
            if top and not self._closed[level] and len(links) == 1:
                return links[0].cid
            if links:
                self._reduce(level)
            level += 1

    def _emit(self, cid: bytes, parts: Sequence[Buffer]) -> None:
        self.blocks += 1
        if self._sink is not None:
            self._sink(cid, parts)


__all__ = ["CHUNK_SIZE", "MAX_LINKS", "BlockSink", "DagBuilder"]
