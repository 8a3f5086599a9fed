"""Read a UnixFS file DAG back: its bytes in order, or its shape (size, blocks) without reading the leaves.

Both walks take a `BlockGetter` that returns a block's bytes *already verified* against its CID (LocalStore
re-hashes the file, KuboStore the node's answer), so everything read here is authenticated by the root CID.
Walks are iterative (an explicit stack), so a deep or hostile DAG cannot exhaust Python's recursion limit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from backend.storage import cids, dagpb
from backend.storage.errors import StorageError

BlockGetter = Callable[[bytes], bytes | memoryview]
#: Called with the binary CID of every block of the DAG (children after their parent).
BlockVisitor = Callable[[bytes], None]

_FILE_TYPES = (dagpb.UnixFSType.FILE, dagpb.UnixFSType.RAW)


@dataclass(frozen=True, slots=True)
class DagShape:
    """What `walk_dag` learns: bytes of file data, number of blocks, and bytes of all blocks together."""

    size: int
    blocks: int
    cumulative_size: int


def _file_node(root: bytes, cid: bytes, block: bytes | memoryview) -> tuple[dagpb.PBNode, dagpb.UnixFSData]:
    node = dagpb.decode_node(block)
    fs = dagpb.decode_unixfs(node.data)
    if fs.type not in _FILE_TYPES:
        raise StorageError(
            f"{cids.cid_text(root)} is not a file: block {cids.cid_text(cid)} is a UnixFS {fs.type.name.lower()}"
        )
    if node.links and len(fs.blocksizes) != len(node.links):
        raise StorageError(
            f"malformed UnixFS node {cids.cid_text(cid)}: {len(node.links)} links but "
            f"{len(fs.blocksizes)} block sizes"
        )
    for link in node.links:
        if not cids.is_block_cid(link.cid):
            cids.parse_cid(
                link.cid
            )  # only sha2-256 dag-pb/raw children can be verified: this names the problem
            raise StorageError(
                f"block {cids.cid_text(cid)} links to {link.cid.hex()}, which cannot be verified"
            )
    return node, fs


def iter_file(get_block: BlockGetter, root: bytes) -> Iterator[memoryview]:
    """Yield the file's bytes in order, one block's worth at a time (views into the verified blocks)."""
    expected: int | None = None
    produced = 0
    stack = [root]
    while stack:
        cid = stack.pop()
        block = get_block(cid)
        if cids.codec_of(cid) == cids.RAW:
            produced += len(block)
            yield memoryview(block)
            continue
        node, fs = _file_node(root, cid, block)
        if expected is None:
            expected = fs.filesize if fs.filesize is not None else len(fs.data or b"")
        if fs.data is not None and len(fs.data):
            produced += len(fs.data)
            yield fs.data
        stack.extend(link.cid for link in reversed(node.links))
    if expected is not None and produced != expected:
        raise StorageError(
            f"malformed DAG {cids.cid_text(root)}: {produced} bytes but the root says {expected}"
        )


def iter_blocks(get_block: BlockGetter, root: bytes) -> Iterator[tuple[bytes, bytes | memoryview]]:
    """Every block of a file DAG as (binary CID, bytes), depth first, parents before children: the order the
    trustless gateway protocol's CARs use (`order=dfs`), so a reader can verify and use each block as it comes."""
    stack = [root]
    while stack:
        cid = stack.pop()
        block = get_block(cid)
        yield cid, block
        if cids.codec_of(cid) == cids.DAG_PB:
            node, _ = _file_node(root, cid, block)
            stack.extend(link.cid for link in reversed(node.links))


def _is_leaf(link: dagpb.PBLink, blocksize: int) -> bool:
    """Whether a child is a leaf, from its parent alone.

    A raw child always is. A dag-pb child is a leaf when its Tsize is exactly the size of a Kubo leaf holding
    `blocksize` bytes: an inner node covering the same bytes is always larger (its own links plus at least one
    leaf's framing), so this never mistakes an inner node for a leaf. Anything else is fetched and inspected.
    """
    if cids.codec_of(link.cid) == cids.RAW:
        return True
    return link.tsize == dagpb.leaf_block_size(blocksize)


def walk_dag(get_block: BlockGetter, root: bytes, visit: BlockVisitor | None = None) -> DagShape:
    """Visit every block of a file DAG, fetching only inner nodes (a 1 GB file costs ~25 reads, not 4,000)."""
    block = get_block(root)
    if visit is not None:
        visit(root)
    if cids.codec_of(root) == cids.RAW:
        return DagShape(size=len(block), blocks=1, cumulative_size=len(block))
    node, fs = _file_node(root, root, block)
    size = fs.filesize if fs.filesize is not None else len(fs.data or b"")
    cumulative = len(block) + sum(link.tsize for link in node.links)
    blocks = 1
    stack = [(node, fs)]
    while stack:
        node, fs = stack.pop()
        for link, blocksize in zip(node.links, fs.blocksizes, strict=True):
            blocks += 1
            if _is_leaf(link, blocksize):
                if visit is not None:
                    visit(link.cid)
                continue
            child = get_block(link.cid)
            if visit is not None:
                visit(link.cid)
            stack.append(_file_node(root, link.cid, child))
    return DagShape(size=size, blocks=blocks, cumulative_size=cumulative)


__all__ = ["BlockGetter", "BlockVisitor", "DagShape", "iter_blocks", "iter_file", "walk_dag"]
