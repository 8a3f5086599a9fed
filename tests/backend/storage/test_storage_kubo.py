"""KuboStore against a fake Kubo node (real HTTP, real CIDs), a node that is down, and nodes that misbehave."""

from __future__ import annotations

import io

import pytest
from fake_kubo import FakeKubo, GarbageHandler, KuboHandler, TruncatingHandler
from storage_helpers import generated, kubo_vectors

from backend.storage import (
    ContentNotFound,
    CorruptedBlock,
    LocalStore,
    StorageError,
    StoreUnavailable,
    compute_cid,
)
from backend.storage import cids as cidlib
from backend.storage.dagpb import decode_node
from backend.storage.kubo import KuboStore


@pytest.mark.parametrize("version", [0, 1])
def test_put_get_stat_round_trip(kubo, fake_kubo, tmp_path, version) -> None:
    data = generated("kubo", 1_000_000)
    (tmp_path / "in").write_bytes(data)
    cid = kubo.put(tmp_path / "in", cid_version=version)
    assert cid == compute_cid(data, version)
    assert fake_kubo.store.has(cid)  # it really went to the node
    assert kubo.get(cid) == data
    kubo.get_to(cid, tmp_path / "out")
    assert (tmp_path / "out").read_bytes() == data
    info = kubo.stat(cid)
    assert (info.cid, info.size, info.blocks, info.pinned) == (cid, len(data), 5, True)
    assert info.cumulative_size == fake_kubo.store.stat(cid).cumulative_size


def test_stream_and_bytes_sources(kubo) -> None:
    data = generated("kubo-stream", 400_000)
    assert kubo.put(io.BytesIO(data)) == kubo.put(data) == compute_cid(data)


def test_fixture_vector_through_kubo_store(kubo) -> None:
    vector = next(v for v in kubo_vectors() if v["size"] == 1_000_000)
    data = generated(vector["seed"], vector["size"])
    assert kubo.put(data) == vector["cid_v0_default"]
    assert kubo.put(data, cid_version=1) == vector["cid_v1_raw_leaves"]


def test_content_moves_between_local_and_kubo_with_the_same_cid(kubo, store) -> None:
    data = generated("move", 700_000)
    cid = store.put(data)
    assert kubo.put(store.get(cid)) == cid
    assert store.put(kubo.get(cid)) == cid


def test_only_hash_needs_no_node(dead_url) -> None:
    data = generated("only", 300_000)
    assert KuboStore(dead_url).put(data, only_hash=True, cid_version=1) == compute_cid(data, 1)


def test_has_pin_unpin(kubo, fake_kubo) -> None:
    cid = kubo.put(b"pinned on kubo")
    assert kubo.has(cid) and kubo.stat(cid).pinned
    kubo.unpin(cid)
    kubo.unpin(cid)  # Kubo says "not pinned": a no-op for us
    assert kubo.stat(cid).pinned is False
    kubo.pin(cid)
    assert kubo.stat(cid).pinned
    unknown = compute_cid(b"nobody added this")
    assert kubo.has(unknown) is False


def test_has_is_false_when_a_leaf_is_missing_on_the_node(kubo, fake_kubo) -> None:
    cid = kubo.put(generated("kubo-leaf", 600_000))
    leaf = decode_node(fake_kubo.store._read_block(bytes(cidlib.parse_cid(cid)))).links[1].cid
    fake_kubo.store._block_path(leaf).unlink()
    assert kubo.has(cid) is False


def test_unknown_cid_is_content_not_found(kubo, tmp_path) -> None:
    unknown = compute_cid(b"nobody added this")
    for call in (kubo.get, kubo.stat, kubo.pin):
        with pytest.raises(ContentNotFound, match=unknown):
            call(unknown)
    with pytest.raises(ContentNotFound):
        kubo.get_to(unknown, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_node_sending_a_wrong_block_is_caught(kubo, fake_kubo, tmp_path) -> None:
    data = generated("lie", 600_000)
    cid = kubo.put(data)
    leaf = decode_node(fake_kubo.store._read_block(bytes(cidlib.parse_cid(cid)))).links[2].cid
    fake_kubo.tampered[cidlib.cid_text(leaf)] = b"not the block you asked for"
    with pytest.raises(CorruptedBlock) as caught:
        kubo.get(cid)
    assert caught.value.cid == cidlib.cid_text(leaf)
    with pytest.raises(CorruptedBlock):
        kubo.get_to(cid, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert list(tmp_path.glob(".out*")) == []


def test_a_node_answering_another_cid_on_add_is_refused(tmp_path) -> None:
    class WrongHash(KuboHandler):
        def cmd_add(self, params, body):
            self._send(200, b'{"Name":"file","Hash":"QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH"}\n', "x")

    node = FakeKubo(tmp_path / "wrong", WrongHash)
    try:
        with pytest.raises(StoreUnavailable, match="answered CID QmbFMke1"):
            KuboStore(node.url).put(b"some content")
    finally:
        node.close()


def test_a_node_that_is_down_is_store_unavailable(dead_url) -> None:
    store = KuboStore(dead_url, timeout=5)
    cid = compute_cid(b"x")
    for call in (
        lambda: store.put(b"x"),
        lambda: store.get(cid),
        lambda: store.stat(cid),
        lambda: store.pin(cid),
    ):
        with pytest.raises(StoreUnavailable, match="unreachable"):
            call()


@pytest.mark.parametrize("handler", [GarbageHandler, TruncatingHandler], ids=["garbage", "truncated"])
def test_a_node_answering_garbage_is_store_unavailable_or_corrupt(tmp_path, handler) -> None:
    node = FakeKubo(tmp_path / "junk", handler)
    local = LocalStore(tmp_path / "local")
    cid = local.put(b"something")
    try:
        store = KuboStore(node.url, timeout=5)
        with pytest.raises(StoreUnavailable):
            store.put(b"something")
        with pytest.raises((StoreUnavailable, CorruptedBlock)):
            store.get(cid)
        with pytest.raises((StoreUnavailable, CorruptedBlock)):
            store.stat(cid)
    finally:
        node.close()


def test_a_url_that_is_not_the_rpc_api_is_store_unavailable(fake_kubo) -> None:
    store = KuboStore(fake_kubo.url + "/somewhere-else")
    with pytest.raises(StoreUnavailable, match="does not answer like a Kubo RPC API"):
        store.put(b"x")


def test_node_errors_are_reported_with_the_node_message(tmp_path) -> None:
    class Refuses(KuboHandler):
        def cmd_pin_add(self, params, body):
            self._error("pinning is disabled on this node")

    node = FakeKubo(tmp_path / "refuses", Refuses)
    try:
        store = KuboStore(node.url)
        cid = store.put(b"x")
        with pytest.raises(StorageError, match="refused pin/add: pinning is disabled on this node"):
            store.pin(cid)
    finally:
        node.close()


def test_a_source_that_breaks_mid_upload_is_a_storage_error(kubo, fake_kubo) -> None:
    class Broken(io.RawIOBase):
        def readable(self):
            return True

        def readinto(self, buffer):
            raise ConnectionResetError("peer went away")

    with pytest.raises(StorageError, match="reading the source stream failed"):
        kubo.put(Broken())
    assert fake_kubo.store.pins() == []


def test_url_must_be_http() -> None:
    with pytest.raises(StorageError, match="must start with http"):
        KuboStore("127.0.0.1:5001")
