"""`GatewayStore`: content from any IPFS trustless gateway (trustmarket's `storage serve`, Kubo's, a public one),
none of which has to be trusted, and writes to a writable endpoint.

Reads ask for a CAR of the DAG (`GET /ipfs/{cid}?format=car&dag-scope=all`) and check every block against its
CID before using it; the walk needs no block twice, and a gateway that sends another order, extra blocks or too
few is handled (a block it left out is asked for alone, `?format=raw`). A lying gateway raises `CorruptedBlock`,
one that is down `StoreUnavailable`, unknown content `ContentNotFound`.

Writes compute the CID locally while uploading and refuse an endpoint that answers another one. The endpoint is
the gateway itself (`POST /ipfs/`, trustmarket's `storage serve` started with a write token), Kubo's RPC API
(`.../api/v0`, through `KuboStore`), or the REST API's `/v1/uploads` (model updates only: it accepts safetensors).
A gateway cannot pin: content stays as long as the server that stores it keeps it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from backend.storage import cids
from backend.storage.base import ContentStat, Source, check_cid_version, compute_cid, iter_source
from backend.storage.blockfiles import write_streamed
from backend.storage.car import CAR_MEDIA_TYPE, RAW_MEDIA_TYPE, CarReader
from backend.storage.errors import ContentNotFound, CorruptedBlock, StorageError, StoreUnavailable
from backend.storage.exporter import iter_file, walk_dag
from backend.storage.importer import CHUNK_SIZE, DagBuilder
from backend.storage.kubo import KuboStore

# Blocks a gateway sent ahead of the walk (another order than depth first), kept until the walk needs them.
_MAX_AHEAD = 256


class _Chunks:
    """A streamed HTTP body as something `CarReader` can `read`."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks

    def read(self, n: int) -> bytes:
        return next(self._chunks, b"")


class _Blocks:
    """Verified blocks of one DAG, taken from a CAR stream as the walk asks for them."""

    def __init__(self, store: GatewayStore, root: bytes, reader: CarReader) -> None:
        self._store = store
        self._reader: CarReader | None = reader
        self._ahead: dict[bytes, bytes] = {}
        self.root = root

    def get(self, cid: bytes) -> bytes:
        key = cids.block_key(cid).encode()
        if key in self._ahead:
            return self._ahead.pop(key)
        while self._reader is not None:
            item = self._reader.next_block()
            if item is None:
                self._reader = None
                break
            got, block = item
            self._store.check_block(got, block)
            got_key = cids.block_key(got).encode()
            if got_key == key:
                return block
            if len(self._ahead) < _MAX_AHEAD:
                self._ahead[got_key] = block
        return self._store.raw_block(cid)  # left out of the CAR: ask for it alone


class GatewayStore:
    """A `ContentStore` reading from the gateway at `url`, writing to `upload_url` (default: the gateway)."""

    def __init__(
        self,
        url: str,
        *,
        upload_url: str | None = None,
        token: str | None = None,
        timeout: float = 60.0,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise StorageError(f"a gateway URL starts with http:// or https://, not {url!r}")
        self.url = url.rstrip("/")
        self.upload_url = (upload_url or self.url).rstrip("/")
        self.timeout = timeout
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._client = httpx.Client(timeout=timeout, headers=headers, follow_redirects=True)
        self._kubo = (
            KuboStore(self.upload_url.removesuffix("/api/v0"))
            if self.upload_url.endswith("/api/v0")
            else None
        )

    def __repr__(self) -> str:
        return f"GatewayStore({self.url!r})"

    def close(self) -> None:
        self._client.close()
        if self._kubo is not None:
            self._kubo.close()

    # -- reading -----------------------------------------------------------------------------------------------

    def get(self, cid: str) -> bytes:
        return b"".join(self._walk(cid, iter_file))

    def get_to(self, cid: str, path: Path) -> None:
        """Stream the verified content into `path`; on any error `path` is left untouched."""
        write_streamed(path, self._walk(cid, iter_file))

    def has(self, cid: str) -> bool:
        try:
            self.stat(cid)
        except ContentNotFound:
            return False
        return True

    def stat(self, cid: str) -> ContentStat:
        root = self._root(cid)
        with self._car(root) as blocks:
            shape = walk_dag(blocks.get, root)
        # A gateway says nothing about pins: what it serves is kept as long as its server keeps it.
        return ContentStat(cids.cid_text(root), shape.size, shape.blocks, shape.cumulative_size, pinned=False)

    def pin(self, cid: str) -> None:
        if self._kubo is not None:
            return self._kubo.pin(cid)
        if not self.has(cid):
            raise ContentNotFound(cid)
        # Nothing more to do: the server that accepted the upload keeps it (LocalStore pins every put).

    def unpin(self, cid: str) -> None:
        if self._kubo is not None:
            return self._kubo.unpin(cid)
        raise StorageError(f"the gateway at {self.url} cannot unpin: unpin on the server that stores {cid}")

    # -- writing -----------------------------------------------------------------------------------------------

    def put(self, source: Source, *, cid_version: int = 0, only_hash: bool = False) -> str:
        """Upload `source` to the writable endpoint; its answer must be the CID computed here."""
        check_cid_version(cid_version)
        if only_hash:
            return compute_cid(source, cid_version)
        if self._kubo is not None:
            return self._kubo.put(source, cid_version=cid_version)
        builder = DagBuilder(cid_version)

        def body() -> Iterator[bytes]:
            for piece in iter_source(source):
                builder.update(piece)
                for start in range(0, len(piece), CHUNK_SIZE):
                    yield bytes(piece[start : start + CHUNK_SIZE])

        if self.upload_url.endswith("/v1/uploads"):
            if cid_version != 0:
                raise StorageError("the API's /v1/uploads stores CIDv0 content only")
            target, params = self.upload_url, {}
        else:
            target, params = f"{self.upload_url}/ipfs/", {"cid-version": str(cid_version)}
        response = self._request("POST", target, params=params, content=body(),
                                 headers={"Content-Type": "application/octet-stream"})  # fmt: skip
        if response.status_code not in (200, 201):
            raise StorageError(f"{target} refused the upload: {_detail(response)}")
        answered = self._json(response, target).get("cid")
        expected = builder.finalize()
        if not isinstance(answered, str) or self._binary(answered, target) != builder.root_cid:
            raise StoreUnavailable(f"{target} answered CID {answered!r} for content whose CID is {expected}")
        return expected

    # -- blocks ------------------------------------------------------------------------------------------------

    def check_block(self, cid: bytes, block: bytes) -> None:
        if hashlib.sha256(block).digest() != cids.digest_of(cid):
            raise CorruptedBlock(
                cids.cid_text(cid),
                f"the gateway at {self.url} sent a block that does not hash to {cids.cid_text(cid)}",
            )

    def raw_block(self, cid: bytes) -> bytes:
        text = cids.cid_text(cid)
        response = self._request("GET", f"{self.url}/ipfs/{text}", params={"format": "raw"},
                                 headers={"Accept": RAW_MEDIA_TYPE})  # fmt: skip
        self._raise_for(response, text)
        self.check_block(cid, response.content)
        return response.content

    def _walk(self, cid: str, walker: Any) -> Iterator[memoryview]:
        root = self._root(cid)
        with self._car(root) as blocks:
            yield from walker(blocks.get, root)

    def _car(self, root: bytes) -> _CarStream:
        return _CarStream(self, root)

    def open_car(self, root: bytes) -> tuple[httpx.Response, CarReader]:
        text = cids.cid_text(root)
        request = self._client.build_request(
            "GET", f"{self.url}/ipfs/{text}", params={"format": "car", "dag-scope": "all"},
            headers={"Accept": f"{CAR_MEDIA_TYPE}; version=1; order=dfs; dups=n"},
        )  # fmt: skip
        try:
            response = self._client.send(request, stream=True)
        except httpx.TimeoutException as exc:
            raise StoreUnavailable(f"the gateway at {self.url} timed out after {self.timeout}s") from exc
        except httpx.TransportError as exc:
            raise StoreUnavailable(f"the gateway at {self.url} is unreachable: {exc}") from exc
        if response.status_code != 200:
            response.read()
            response.close()
            self._raise_for(response, text)
        media = response.headers.get("content-type", "")
        if not media.startswith(CAR_MEDIA_TYPE):
            response.close()
            raise StoreUnavailable(
                f"the gateway at {self.url} answered {media or 'untyped content'}, not a CAR"
            )
        try:
            return response, CarReader(_Chunks(response.iter_bytes()), f"the gateway at {self.url}")
        except BaseException:
            response.close()
            raise

    # -- HTTP --------------------------------------------------------------------------------------------------

    def _request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        try:
            return self._client.request(method, url, **kwargs)
        except httpx.TimeoutException as exc:
            raise StoreUnavailable(f"{url} timed out after {self.timeout}s") from exc
        except httpx.TransportError as exc:
            raise StoreUnavailable(f"{url} is unreachable: {exc}") from exc

    def _raise_for(self, response: httpx.Response, cid: str) -> None:
        if response.status_code == 200:
            return
        if response.status_code in (404, 410):
            raise ContentNotFound(cid, f"content not found on the gateway at {self.url}: {cid}")
        if response.status_code in (400, 422):
            raise StorageError(f"the gateway at {self.url} refused {cid}: {_detail(response)}")
        raise StoreUnavailable(f"the gateway at {self.url} answered HTTP {response.status_code} for {cid}")

    def _json(self, response: httpx.Response, where: str) -> dict[str, Any]:
        try:
            payload = response.json()
        except ValueError:
            payload = None
        if not isinstance(payload, dict):
            raise StoreUnavailable(f"{where} answered something that is not JSON")
        return payload

    def _binary(self, cid: str, where: str) -> bytes:
        try:
            return bytes(cids.parse_cid(cid))
        except StorageError as exc:
            raise StoreUnavailable(f"{where} answered a bad CID {cid!r}") from exc

    @staticmethod
    def _root(cid: str) -> bytes:
        if not isinstance(cid, str):
            raise StorageError(f"a CID is text, not {type(cid).__name__}")
        return bytes(cids.parse_cid(cid.strip()))


class _CarStream:
    """A CAR being read for one walk; closes the HTTP response however the walk ends."""

    def __init__(self, store: GatewayStore, root: bytes) -> None:
        self._store = store
        self._root = root
        self._response: httpx.Response | None = None

    def __enter__(self) -> _Blocks:
        self._response, reader = self._store.open_car(self._root)
        return _Blocks(self._store, self._root, reader)

    def __exit__(self, *exc: object) -> None:
        if self._response is not None:
            self._response.close()


def _detail(response: httpx.Response) -> str:
    try:
        payload = response.json()
    except ValueError:
        return f"HTTP {response.status_code}"
    if isinstance(payload, dict):
        return str(payload.get("detail") or payload.get("title") or payload.get("Message") or payload)
    return f"HTTP {response.status_code}"


__all__ = ["GatewayStore"]
