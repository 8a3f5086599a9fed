"""A small Kubo RPC server for tests: real HTTP on loopback, a real `LocalStore` underneath, so CIDs are real.

It implements the commands `KuboStore` uses (`add`, `block/get`, `block/stat`, `pin/add`, `pin/rm`, `pin/ls`)
with Kubo's conventions: POST only, arguments in the query string, errors as HTTP 500 with
`{"Message", "Code", "Type": "error"}`, `add` answering newline-delimited JSON. `tamper` lets a test make the node
lie about one block; `GarbageHandler` answers every request with non-JSON.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from backend.storage import cids
from backend.storage.errors import ContentNotFound, StorageError
from backend.storage.local import LocalStore


class FakeKubo:
    """Owns the server thread; `url` is what `KuboStore` is given."""

    def __init__(self, root: Path, handler: type[BaseHTTPRequestHandler] | None = None) -> None:
        self.store = LocalStore(root)
        self.tampered: dict[str, bytes] = {}  # block CID text -> bytes to send instead
        self.requests: list[str] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler or KuboHandler)
        self.server.kubo = self  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class KuboHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:  # keep test output quiet
        pass

    @property
    def kubo(self) -> FakeKubo:
        return self.server.kubo  # type: ignore[attr-defined]

    def do_GET(self) -> None:
        # Kubo refuses GET on the RPC API (a CSRF guard); so does the fake.
        self._body()
        self._send(405, b"405 - Method Not Allowed", "text/plain")

    def do_POST(self) -> None:
        url = urlparse(self.path)
        params = {key: values[-1] for key, values in parse_qs(url.query).items()}
        command = url.path.removeprefix("/api/v0/")
        self.kubo.requests.append(command)
        body = self._body()
        handler = getattr(self, "cmd_" + command.replace("/", "_"), None)
        if handler is None:
            self._send(404, b"404 page not found", "text/plain")
            return
        try:
            handler(params, body)
        except ContentNotFound as exc:
            self._error(f"block was not found locally (offline): ipld: could not find {exc.cid}")
        except StorageError as exc:
            self._error(str(exc))

    # -- commands --------------------------------------------------------------------------------------------

    def cmd_add(self, params: dict[str, str], body: bytes) -> None:
        data = _multipart_file(self.headers["Content-Type"], body)
        version = int(params.get("cid-version", "0"))
        if params.get("raw-leaves", "false") != ("true" if version == 1 else "false"):
            self._error("fake kubo only does Kubo's default leaves for each CID version")
            return
        cid = self.kubo.store.put(data, cid_version=version, only_hash=params.get("only-hash") == "true")
        line = json.dumps({"Name": "file", "Hash": cid, "Size": str(len(data))}) + "\n"
        self._send(200, line.encode(), "application/json")

    def cmd_block_get(self, params: dict[str, str], body: bytes) -> None:
        cid = params["arg"]
        if cid in self.kubo.tampered:
            self._send(200, self.kubo.tampered[cid], "text/plain")
            return
        self._send(200, self.kubo.store._read_block(bytes(cids.parse_cid(cid))), "text/plain")

    def cmd_block_stat(self, params: dict[str, str], body: bytes) -> None:
        block = self.kubo.store._read_block(bytes(cids.parse_cid(params["arg"])))
        self._json({"Key": params["arg"], "Size": len(block)})

    def cmd_pin_add(self, params: dict[str, str], body: bytes) -> None:
        self.kubo.store.pin(params["arg"])
        self._json({"Pins": [params["arg"]]})

    def cmd_pin_rm(self, params: dict[str, str], body: bytes) -> None:
        if params["arg"] not in self.kubo.store.pins():
            self._error("not pinned or pinned indirectly")
            return
        self.kubo.store.unpin(params["arg"])
        self._json({"Pins": [params["arg"]]})

    def cmd_pin_ls(self, params: dict[str, str], body: bytes) -> None:
        if params["arg"] not in self.kubo.store.pins():
            self._error(f"path '{params['arg']}' is not pinned")
            return
        self._json({"Keys": {params["arg"]: {"Type": "recursive"}}})

    # -- HTTP plumbing ---------------------------------------------------------------------------------------

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                parts.append(self.rfile.read(size))
                self.rfile.readline()  # the CRLF after each chunk
                if size == 0:
                    return b"".join(parts)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _send(self, status: int, payload: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _json(self, payload: object) -> None:
        self._send(200, json.dumps(payload).encode(), "application/json")

    def _error(self, message: str) -> None:
        self._send(
            500, json.dumps({"Message": message, "Code": 0, "Type": "error"}).encode(), "application/json"
        )


class GarbageHandler(KuboHandler):
    """A server on the Kubo port that is not Kubo: HTTP 200 and HTML for everything."""

    def do_POST(self) -> None:
        self._body()
        self._send(200, b"<html><body>it works</body></html>", "text/html")


class TruncatingHandler(KuboHandler):
    """Announces a full body but closes the connection half-way (a node that dies mid-answer)."""

    def _send(self, status: int, payload: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload) + 100))
        self.end_headers()
        self.wfile.write(payload)
        self.close_connection = True


def _multipart_file(content_type: str, body: bytes) -> bytes:
    """The first part's payload of a multipart/form-data body."""
    boundary = content_type.split("boundary=", 1)[1].strip().strip('"').encode()
    part = body.split(b"--" + boundary)[1]
    head_end = part.index(b"\r\n\r\n") + 4
    return part[head_end:].removesuffix(b"\r\n")
