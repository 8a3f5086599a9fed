"""`trustmarket storage serve`: a `LocalStore` over HTTP by the IPFS trustless gateway protocol.

https://specs.ipfs.tech/http-gateways/trustless-gateway/ : `GET /ipfs/{cid}` answers

- `application/vnd.ipld.raw` (`Accept` header or `?format=raw`): the one block the CID names;
- `application/vnd.ipld.car` (or `?format=car`): a CARv1 of the DAG, depth first (`dag-scope=all`, the default,
  or `entity`, which for a file is the same, or `block`: the root alone);
- anything else (a browser, `curl`): the file's bytes, for convenience. Those are not verifiable by the
  receiver as such; trustmarket's own client never asks for them.

Every answer is immutable (`Cache-Control: public, max-age=29030400, immutable`). A reader needs to trust nothing
here: each block hashes to its CID. Reads are open to anyone who can reach the server: everything in a store is
public once its CID is known (CIDs go on chain), which is why a trainer's update enters the shared store only when
it is revealed, and private data never does.

Writes (`POST /ipfs/`, the body is the file) are accepted only with `Authorization: Bearer <token>` when the
server was started with a write token, up to `max_upload` bytes; the answer is `201` with the CID (also in the
`Ipfs-Hash` header, as the former writable gateway did). Without a token the gateway is read-only (`405`).

Beside the content, `/exchange/` is a small mailbox of JSON notes under names (the verifier committee's
signatures: `/exchange/<market>/<project>/<round>/<verifier>`): `PUT` a note (write token, at most 64 KiB, a JSON
object), `GET` a folder for every note in it. Notes need no trust either: each is a signature the chain checks.
"""

from __future__ import annotations

import hmac
import json
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from backend.storage import cids
from backend.storage.car import CAR_MEDIA_TYPE, RAW_MEDIA_TYPE, car_header, car_section
from backend.storage.errors import ContentNotFound, CorruptedBlock, StorageError, StoreFullError
from backend.storage.exporter import iter_blocks, iter_file
from backend.storage.local import LocalStore

IMMUTABLE = "public, max-age=29030400, immutable"
DEFAULT_MAX_UPLOAD = 1 << 30
MAX_NOTE = 64 << 10
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,80}$")


def _problem(status: int, detail: str) -> JSONResponse:
    return JSONResponse({"status": status, "detail": detail}, status_code=status)


def _format(request: Request) -> str:
    """`raw`, `car` or `file`, from `?format=` first, then the Accept header."""
    wanted = request.query_params.get("format")
    if wanted in ("raw", "car"):
        return wanted
    if wanted is not None:
        return "unsupported"
    accept = request.headers.get("accept", "")
    if RAW_MEDIA_TYPE in accept:
        return "raw"
    if CAR_MEDIA_TYPE in accept:
        return "car"
    return "file"


class Gateway:
    """The routes over one store; `app` is the ASGI application."""

    def __init__(
        self, store: LocalStore, *, write_token: str | None = None, max_upload: int = DEFAULT_MAX_UPLOAD
    ):
        self.store = store
        self.write_token = write_token
        self.max_upload = max_upload
        self.app = Starlette(
            routes=[
                Route("/", self.info, methods=["GET"]),
                Route("/ipfs/", self.upload, methods=["POST"]),
                Route("/ipfs/{cid}", self.content, methods=["GET", "HEAD"]),
                Route("/ipfs/{cid}/{path:path}", self.no_paths, methods=["GET", "HEAD"]),
                Route("/exchange/{path:path}", self.note, methods=["GET", "PUT"]),
            ]
        )
        self.notes = store.root / "exchange"

    async def info(self, request: Request) -> JSONResponse:
        return JSONResponse(
            {"service": "trustmarket trustless gateway", "writable": self.write_token is not None}
        )

    async def no_paths(self, request: Request) -> JSONResponse:
        return _problem(404, "this gateway serves files by CID; paths inside a DAG are not supported")

    async def content(self, request: Request) -> Response:
        text = request.path_params["cid"]
        try:
            root = bytes(cids.parse_cid(text))
        except StorageError as exc:
            return _problem(400, str(exc))
        kind = _format(request)
        if kind == "unsupported":
            return _problem(400, "format must be raw or car")
        try:
            if kind == "raw":
                block = await run_in_threadpool(self.store.read_block, root)
                headers = {
                    "Cache-Control": IMMUTABLE,
                    "Etag": f'"{text}.raw"',
                    "X-Content-Type-Options": "nosniff",
                }
                return Response(
                    block if request.method == "GET" else b"", media_type=RAW_MEDIA_TYPE, headers=headers
                )
            # Check the whole DAG is here before the first byte goes out: a 200 cannot be taken back.
            await run_in_threadpool(self.store.stat, text)
        except ContentNotFound as exc:
            return _problem(404, str(exc))
        except CorruptedBlock as exc:
            return _problem(500, f"this gateway holds a damaged copy: {exc}")
        if kind == "car":
            scope = request.query_params.get("dag-scope", "all")
            if scope not in ("all", "entity", "block"):
                return _problem(400, "dag-scope must be all, entity or block")
            media = f"{CAR_MEDIA_TYPE}; version=1; order=dfs; dups=n"
            headers = {
                "Cache-Control": IMMUTABLE,
                "Etag": f'"{text}.car.{scope}"',
                "X-Content-Type-Options": "nosniff",
            }
            body = self._car(root, scope) if request.method == "GET" else iter(())
            return StreamingResponse(iterate_in_threadpool(body), media_type=media, headers=headers)
        headers = {"Cache-Control": IMMUTABLE, "Etag": f'"{text}"'}
        body = self._file(root) if request.method == "GET" else iter(())
        return StreamingResponse(
            iterate_in_threadpool(body), media_type="application/octet-stream", headers=headers
        )

    def _car(self, root: bytes, scope: str) -> Iterator[bytes]:
        yield car_header(root)
        if scope == "block":
            yield car_section(root, self.store.read_block(root))
            return
        for cid, block in iter_blocks(self.store.read_block, root):
            yield car_section(cid, block)

    def _file(self, root: bytes) -> Iterator[bytes]:
        for piece in iter_file(self.store.read_block, root):
            yield bytes(piece)

    def _refuse_write(self, request: Request) -> JSONResponse | None:
        if self.write_token is None:
            return _problem(405, "this gateway is read-only")
        given = request.headers.get("authorization", "")
        if not given.startswith("Bearer ") or not hmac.compare_digest(
            given[7:].encode(), self.write_token.encode()
        ):
            return _problem(401, "uploads need the gateway's write token (Authorization: Bearer ...)")
        return None

    async def note(self, request: Request) -> JSONResponse:
        parts = [p for p in request.path_params["path"].split("/") if p]
        if not parts or len(parts) > 8 or not all(_NAME.match(p) and p not in (".", "..") for p in parts):
            return _problem(400, "a note's name is 1 to 8 parts of letters, digits, '_', '.' and '-'")
        where = self.notes.joinpath(*parts)
        if request.method == "GET":
            return JSONResponse(await run_in_threadpool(_read_notes, where))
        refused = self._refuse_write(request)
        if refused is not None:
            return refused
        body = await request.body()
        if len(body) > MAX_NOTE:
            return _problem(413, f"a note is at most {MAX_NOTE} bytes")
        try:
            note = json.loads(body)
        except ValueError:
            return _problem(400, "a note is a JSON object")
        if not isinstance(note, dict):
            return _problem(400, "a note is a JSON object")
        await run_in_threadpool(_write_note, where, body)
        return JSONResponse({"stored": "/".join(parts)}, status_code=201)

    async def upload(self, request: Request) -> JSONResponse:
        refused = self._refuse_write(request)
        if refused is not None:
            return refused
        version = request.query_params.get("cid-version", "0")
        if version not in ("0", "1"):
            return _problem(400, "cid-version must be 0 or 1")
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_upload:
            return _problem(413, f"uploads are at most {self.max_upload} bytes")
        with tempfile.TemporaryDirectory(dir=self.store.root) as spool:
            path = Path(spool) / "upload"
            size = 0
            with open(path, "wb") as out:
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > self.max_upload:
                        return _problem(413, f"uploads are at most {self.max_upload} bytes")
                    await run_in_threadpool(out.write, chunk)
            try:
                cid = await run_in_threadpool(self.store.put, path, cid_version=int(version))
            except StoreFullError as exc:
                return _problem(507, str(exc))
        body: dict[str, Any] = {"cid": cid, "size": size}
        return JSONResponse(body, status_code=201, headers={"Ipfs-Hash": cid, "Location": f"/ipfs/{cid}"})


def _write_note(where: Path, body: bytes) -> None:
    where.parent.mkdir(parents=True, exist_ok=True)
    partial = where.with_name(f".{where.name}.partial")
    partial.write_bytes(body)
    partial.replace(where)  # a reader sees the old note or the new one, never half


def _read_notes(folder: Path) -> dict[str, Any]:
    """The notes directly in `folder`, by name (unreadable ones are left out: their writers can send again)."""
    notes: dict[str, Any] = {}
    if not folder.is_dir():
        return notes
    for entry in sorted(folder.iterdir()):
        if entry.is_file() and not entry.name.startswith("."):
            try:
                notes[entry.name] = json.loads(entry.read_bytes())
            except (OSError, ValueError):
                continue
    return notes


__all__ = ["DEFAULT_MAX_UPLOAD", "MAX_NOTE", "Gateway"]
