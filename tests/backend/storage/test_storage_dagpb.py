"""dag-pb/UnixFS encoding and decoding, the DAG walkers on hostile input, and the write-behind pipeline."""

from __future__ import annotations

import hashlib
import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st
from multiformats import varint

from backend.storage import cids, dagpb, exporter
from backend.storage.errors import StorageError
from backend.storage.importer import DagBuilder
from backend.storage.pipeline import WriteBehind


def test_empty_file_node_is_kubos() -> None:
    head, tail = dagpb.leaf_frame(0)
    assert head + tail == bytes.fromhex("0a0408021800")


def test_leaf_frame_wraps_data_and_decodes_back() -> None:
    head, tail = dagpb.leaf_frame(5)
    block = head + b"hello" + tail
    assert len(block) == dagpb.leaf_block_size(5)
    fs = dagpb.decode_unixfs(dagpb.decode_node(block).data)
    assert (fs.type, bytes(fs.data), fs.filesize, fs.blocksizes) == (dagpb.UnixFSType.FILE, b"hello", 5, [])


def test_inner_node_round_trip_puts_links_before_data() -> None:
    links = [dagpb.PBLink(cids.make_cid(cids.RAW_V1_PREFIX, bytes([i]) * 32), 300 + i) for i in range(3)]
    block = dagpb.encode_node(links, dagpb.encode_unixfs_file(900, [300, 300, 300]))
    assert block[0] == 0x12  # field 2 (Links) first, as Kubo writes it
    node = dagpb.decode_node(block)
    assert node.links == links
    fs = dagpb.decode_unixfs(node.data)
    assert (fs.filesize, fs.blocksizes) == (900, [300, 300, 300])


@pytest.mark.parametrize(
    ("block", "message"),
    [
        (b"\x0a\x10abc", "runs past the end"),
        (b"\x0a", "bad varint"),
        (b"\x1a\x00", "unknown field 3"),
        (b"\x08\x01", "field 1 has wire type 0"),
        (b"\x12\x02\x18\x00", "no Hash"),
        (b"\x0b", "unsupported wire type 3"),
        (b"\x00\x00", "field number 0"),
        (b"\x0a\x02\x08\x09", "bad or missing Type 9"),
        (b"\x0a\x02\x18\x01", "bad or missing Type None"),
    ],
)
def test_malformed_blocks_are_storage_errors(block, message) -> None:
    with pytest.raises(StorageError, match=message):
        node = dagpb.decode_node(block)
        dagpb.decode_unixfs(node.data)


def _serve(blocks: dict[bytes, bytes]):
    return lambda cid: blocks[cid]


def _dag_pb(block: bytes) -> bytes:
    return cids.make_cid(cids.DAG_PB_V0_PREFIX, hashlib.sha256(block).digest())


def test_a_directory_is_not_a_file() -> None:
    block = dagpb.encode_node([], bytes([0x08, dagpb.UnixFSType.DIRECTORY]))
    root = _dag_pb(block)
    with pytest.raises(StorageError, match=r"is not a file.*UnixFS directory"):
        list(exporter.iter_file(_serve({root: block}), root))
    with pytest.raises(StorageError, match="is not a file"):
        exporter.walk_dag(_serve({root: block}), root)


def test_links_and_block_sizes_must_agree() -> None:
    child = cids.make_cid(cids.RAW_V1_PREFIX, bytes(32))
    block = dagpb.encode_node([dagpb.PBLink(child, 1)], dagpb.encode_unixfs_file(1, []))
    root = _dag_pb(block)
    with pytest.raises(StorageError, match="1 links but 0 block sizes"):
        list(exporter.iter_file(_serve({root: block}), root))


def test_a_root_that_lies_about_its_size_is_caught() -> None:
    blocks: dict[bytes, bytes] = {}
    builder = DagBuilder(1, lambda cid, parts: blocks.__setitem__(cid, b"".join(bytes(p) for p in parts)))
    builder.update(b"x" * 300_000)
    builder.finalize()
    children = dagpb.decode_node(blocks[builder.root_cid]).links
    liar = dagpb.encode_node(children, dagpb.encode_unixfs_file(999, [262144, 300_000 - 262144]))
    root = _dag_pb(liar)
    blocks[root] = liar
    with pytest.raises(StorageError, match="300000 bytes but the root says 999"):
        b"".join(exporter.iter_file(_serve(blocks), root))


def test_a_link_to_an_unverifiable_cid_is_refused() -> None:
    cbor = bytes.fromhex("01711220") + bytes(32)  # dag-cbor child
    block = dagpb.encode_node([dagpb.PBLink(cbor, 10)], dagpb.encode_unixfs_file(10, [10]))
    root = _dag_pb(block)
    with pytest.raises(StorageError, match="unsupported codec"):
        list(exporter.iter_file(_serve({root: block}), root))


def test_write_behind_runs_jobs_in_order_and_recycles_buffers() -> None:
    done: list[int] = []
    pipe = WriteBehind(16, depth=2)
    taken = []
    for i in range(10):
        buffer = pipe.take()
        taken.append(id(buffer))
        pipe.submit(done.append, i)
        pipe.release(buffer)
    pipe.close()
    assert done == list(range(10))
    assert len(set(taken)) <= 3  # never more than depth (+1 while one is on its way back)


def test_write_behind_reraises_the_first_error_and_skips_later_jobs() -> None:
    done: list[int] = []
    gate = threading.Event()
    pipe = WriteBehind(16)

    def boom() -> None:
        gate.wait(5)
        raise OSError("disk on fire")

    pipe.submit(boom)
    pipe.submit(done.append, 1)
    gate.set()
    with pytest.raises(OSError, match="disk on fire"):
        pipe.close()
    assert done == []


def test_write_behind_does_not_deadlock_when_the_caller_holds_every_buffer() -> None:
    pipe = WriteBehind(16, depth=2)
    held = [pipe.take() for _ in range(5)]  # more than depth, none released: new ones, no waiting
    assert len({id(b) for b in held}) == 5
    pipe.abort()


@given(st.integers(min_value=0, max_value=2**63 - 1))
def test_inline_varint_decoder_agrees_with_multiformats(value: int) -> None:
    encoded = varint.encode(value) + b"\x01"
    assert dagpb._read_varint(memoryview(encoded), 0, "test") == (value, len(encoded) - 1)


def test_varint_longer_than_ten_bytes_is_refused() -> None:
    with pytest.raises(StorageError, match="bad varint"):
        dagpb._read_varint(memoryview(b"\xff" * 11), 0, "test")
