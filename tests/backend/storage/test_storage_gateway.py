"""The trustless gateway (`storage serve`) and `GatewayStore` over real HTTP on loopback: round trips, what the
protocol answers, and every way a gateway or an upload endpoint can be wrong."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from storage_helpers import generated

from backend.chain.anvil import free_port
from backend.settings import Settings
from backend.storage import (
    ContentNotFound,
    CorruptedBlock,
    GatewayStore,
    KuboStore,
    LocalStore,
    StorageError,
    StoreUnavailable,
    compute_cid,
    open_store,
)
from backend.storage import cids as cidlib
from backend.storage.car import CarReader, car_header, car_section
from backend.storage.exporter import iter_blocks
from backend.storage.gateway import Gateway

TOKEN = "write-token-for-tests"
SIZES = [
    0,
    1,
    262144,
    262145,
    1_000_000,
]  # empty, one byte, one chunk exactly, a chunk and a byte, four chunks


@contextmanager
def serving(app) -> Iterator[str]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the test server did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(5)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    store = LocalStore(tmp_path_factory.mktemp("served"))
    with serving(Gateway(store, write_token=TOKEN, max_upload=2_000_000).app) as url:
        yield store, url


@pytest.fixture
def client(served):
    gateway = GatewayStore(served[1], token=TOKEN)
    yield gateway
    gateway.close()


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("version", [0, 1])
def test_round_trip_through_the_gateway(client, served, tmp_path, size, version):
    store, _ = served
    data = generated("size", size)
    cid = client.put(data, cid_version=version)
    assert cid == compute_cid(data, version)
    assert store.has(cid)  # it landed in the served store
    assert client.get(cid) == data
    client.get_to(cid, tmp_path / "out")
    assert (tmp_path / "out").read_bytes() == data
    local = store.stat(cid)
    remote = client.stat(cid)
    assert (remote.size, remote.blocks, remote.cumulative_size) == (
        local.size,
        local.blocks,
        local.cumulative_size,
    )
    assert client.has(cid)


def test_a_file_path_streams_up(client, tmp_path):
    path = tmp_path / "big"
    path.write_bytes(generated("7", 900_000))
    assert client.put(path) == compute_cid(path)


def test_raw_blocks_and_cars_as_the_protocol_says(client, served):
    store, url = served
    data = generated("3", 600_000)
    cid = client.put(data)
    root = bytes(cidlib.parse_cid(cid))
    raw = httpx.get(f"{url}/ipfs/{cid}", headers={"Accept": "application/vnd.ipld.raw"})
    assert raw.status_code == 200 and raw.headers["content-type"] == "application/vnd.ipld.raw"
    assert "immutable" in raw.headers["cache-control"]
    assert raw.content == store.read_block(root)
    car = httpx.get(f"{url}/ipfs/{cid}?format=car")
    assert car.headers["content-type"].startswith("application/vnd.ipld.car; version=1; order=dfs")
    sections = list(CarReader(_reader(car.content), "test"))
    assert [c for c, _ in sections] == [c for c, _ in iter_blocks(store.read_block, root)]
    assert len(sections) == store.stat(cid).blocks
    only_root = list(
        CarReader(_reader(httpx.get(f"{url}/ipfs/{cid}?format=car&dag-scope=block").content), "t")
    )
    assert [c for c, _ in only_root] == [root]
    assert httpx.get(f"{url}/ipfs/{cid}").content == data  # a plain request gets the file itself
    head = httpx.head(f"{url}/ipfs/{cid}?format=car")
    assert head.status_code == 200 and head.content == b""


def test_bad_requests_answer_the_right_status(served):
    _, url = served
    missing = compute_cid(b"nobody stored this")
    assert httpx.get(f"{url}/ipfs/{missing}?format=car").status_code == 404
    assert httpx.get(f"{url}/ipfs/{missing}?format=raw").status_code == 404
    assert httpx.get(f"{url}/ipfs/not-a-cid").status_code == 400
    assert httpx.get(f"{url}/ipfs/{missing}?format=tar").status_code == 400
    assert httpx.get(f"{url}/ipfs/{missing}?format=car&dag-scope=some").status_code == 404
    assert httpx.get(f"{url}/ipfs/{missing}/a/path").status_code == 404


def test_unknown_and_malformed_cids(client):
    with pytest.raises(ContentNotFound):
        client.get(compute_cid(b"nobody stored this"))
    assert not client.has(compute_cid(b"nobody stored this either"))
    with pytest.raises(StorageError, match="not a valid CID"):
        client.get("not-a-cid")


def test_a_gateway_that_is_down(tmp_path):
    gateway = GatewayStore(f"http://127.0.0.1:{free_port()}")
    with pytest.raises(StoreUnavailable, match="unreachable"):
        gateway.get(compute_cid(b"x"))
    with pytest.raises(StoreUnavailable, match="unreachable"):
        gateway.put(b"x")


# -- writes -------------------------------------------------------------------------------------------------------


def test_uploads_need_the_token_and_fit_the_cap(served, tmp_path):
    store, url = served
    anonymous = GatewayStore(url)
    with pytest.raises(StorageError, match="write token"):
        anonymous.put(b"no token")
    wrong = GatewayStore(url, token="guess")
    with pytest.raises(StorageError, match="write token"):
        wrong.put(b"wrong token")
    assert not store.has(compute_cid(b"no token"))
    with pytest.raises(StorageError, match="at most 2000000 bytes"):
        GatewayStore(url, token=TOKEN).put(generated("1", 2_000_001))
    with (
        serving(Gateway(LocalStore(tmp_path / "ro")).app) as ro,
        pytest.raises(StorageError, match="read-only"),
    ):
        GatewayStore(ro, token=TOKEN).put(b"x")


def test_an_endpoint_that_answers_another_cid_is_refused():
    async def liar(request: Request) -> JSONResponse:
        await request.body()
        return JSONResponse({"cid": compute_cid(b"something else")}, status_code=201)

    app = Starlette(routes=[Route("/ipfs/", liar, methods=["POST"])])
    with serving(app) as url, pytest.raises(StoreUnavailable, match="answered CID"):
        GatewayStore(url).put(b"mine")


# -- gateways that lie --------------------------------------------------------------------------------------------


def _lying_gateway(store: LocalStore, mode: str) -> Starlette:
    """Serves CARs of `store`, damaged as `mode` says."""

    async def content(request: Request) -> Response:
        text = request.path_params["cid"]
        root = bytes(cidlib.parse_cid(text))
        blocks = list(iter_blocks(store.read_block, root))
        if request.query_params.get("format") == "raw":  # asked for one block: this liar sends it as it is
            return Response(store.read_block(root), media_type="application/vnd.ipld.raw")
        if mode == "tamper":
            cid, block = blocks[-1]
            blocks[-1] = (cid, bytes(block[:-1]) + bytes([block[-1] ^ 1]))
        elif mode == "omit":
            blocks = blocks[:-1]
        elif mode == "shuffle":
            blocks = [blocks[0], *reversed(blocks[1:])]
        elif mode == "truncate":
            body = car_header(root) + b"".join(car_section(c, b) for c, b in blocks)
            return Response(body[:-10], media_type="application/vnd.ipld.car")
        elif mode == "not-car":
            return Response(b"<html>hello</html>", media_type="text/html")
        body = car_header(root) + b"".join(car_section(c, b) for c, b in blocks)
        return Response(body, media_type="application/vnd.ipld.car")

    return Starlette(routes=[Route("/ipfs/{cid}", content)])


@pytest.fixture
def three_chunks(tmp_path):
    store = LocalStore(tmp_path / "liar")
    data = generated("11", 700_000)
    return store, store.put(data), data


def test_a_tampered_block_is_caught(three_chunks):
    store, cid, _ = three_chunks
    with (
        serving(_lying_gateway(store, "tamper")) as url,
        pytest.raises(CorruptedBlock, match="does not hash"),
    ):
        GatewayStore(url).get(cid)


def test_blocks_left_out_or_out_of_order_are_still_verified(three_chunks):
    store, cid, data = three_chunks
    for mode in ("omit", "shuffle"):
        with serving(_lying_gateway(store, mode)) as url:
            assert GatewayStore(url).get(cid) == data, mode


def test_truncated_and_non_car_answers(three_chunks):
    store, cid, _ = three_chunks
    for mode, message in (("truncate", "truncated CAR"), ("not-car", "not a CAR")):
        with serving(_lying_gateway(store, mode)) as url, pytest.raises(StorageError, match=message):
            GatewayStore(url).get(cid)


# -- TRUSTMARKET_STORE ------------------------------------------------------------------------------------------


def test_the_store_setting_takes_a_path_a_gateway_or_kubo(tmp_path):
    assert isinstance(open_store(Settings(store=str(tmp_path / "a"))), LocalStore)
    assert isinstance(open_store(Settings(store=f"file://{tmp_path / 'b'}")), LocalStore)
    gateway = open_store(
        Settings(store="http://gw.example:8080/", store_upload_url="http://api:8000/v1/uploads")
    )
    assert isinstance(gateway, GatewayStore) and gateway.upload_url == "http://api:8000/v1/uploads"
    kubo = open_store(Settings(store="http://127.0.0.1:5001/api/v0"))
    assert isinstance(kubo, KuboStore) and kubo.url == "http://127.0.0.1:5001"
    with pytest.raises(StorageError, match="is not `local`"):
        open_store(Settings(store="ipfs"))


def _reader(data: bytes):
    class Once:
        def __init__(self) -> None:
            self.sent = False

        def read(self, n: int) -> bytes:
            if self.sent:
                return b""
            self.sent = True
            return data

    return Once()


def test_the_mailbox_keeps_notes_for_writers_with_the_token(served):
    _, url = served
    auth = {"Authorization": f"Bearer {TOKEN}"}
    note = {"verifier": "0xabc", "signature": ["0x1", "0x2"]}
    assert httpx.put(f"{url}/exchange/m/1/0/v1", json=note, headers=auth).status_code == 201
    assert httpx.put(f"{url}/exchange/m/1/0/v2", json={"x": 1}, headers=auth).status_code == 201
    assert httpx.get(f"{url}/exchange/m/1/0").json() == {"v1": note, "v2": {"x": 1}}
    assert httpx.get(f"{url}/exchange/m/1/9").json() == {}
    assert httpx.put(f"{url}/exchange/m/1/0/v3", json=note).status_code == 401
    assert httpx.put(f"{url}/exchange/m/1/0/v3", content=b"[1]", headers=auth).status_code == 400
    assert httpx.put(f"{url}/exchange/m/1/0/v3", content=b"x" * 70_000, headers=auth).status_code == 413
    assert httpx.get(f"{url}/exchange/m/../../etc").status_code in (400, 404)
    assert httpx.get(f"{url}/exchange/m/%2e%2e/x").status_code == 400
