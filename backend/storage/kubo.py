"""`KuboStore`: content on a Kubo (go-ipfs) node, through its HTTP RPC API (https://docs.ipfs.tech/reference/kubo/rpc/).

Nothing the node says is trusted: `put` computes the CID locally while it uploads (one pass over the source) and
refuses an answer that differs; `get` walks the DAG block by block (`block/get`) and re-hashes every block, so a
damaged or lying node raises `CorruptedBlock` instead of handing back wrong bytes. A node that is down, times out
or answers something that is not Kubo's JSON raises `StoreUnavailable`.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from backend.storage import cids
from backend.storage.base import ContentStat, Source, check_cid_version, compute_cid, iter_source
from backend.storage.blockfiles import write_streamed
from backend.storage.errors import ContentNotFound, CorruptedBlock, StorageError, StoreUnavailable
from backend.storage.exporter import iter_file, walk_dag
from backend.storage.importer import CHUNK_SIZE, DagBuilder

_NOT_FOUND_HINTS = ("not found", "could not find", "deadline exceeded", "no link named")
_NOT_PINNED_HINTS = ("not pinned",)


class KuboStore:
    """A `ContentStore` backed by a Kubo node at `url` (e.g. `http://127.0.0.1:5001`)."""

    def __init__(self, url: str, timeout: float = 60.0) -> None:
        if not url.startswith(("http://", "https://")):
            raise StorageError(f"Kubo RPC URL must start with http:// or https://, not {url!r}")
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._client = httpx.Client(base_url=f"{self.url}/api/v0/", timeout=timeout)

    def __repr__(self) -> str:
        return f"KuboStore({self.url!r})"

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> KuboStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- ContentStore ----------------------------------------------------------------------------------------

    def put(self, source: Source, *, cid_version: int = 0, only_hash: bool = False) -> str:
        """Add `source` to the node (pinned) with Kubo's default layout; return the CID, checked locally."""
        check_cid_version(cid_version)
        if only_hash:
            return compute_cid(source, cid_version)
        builder = DagBuilder(cid_version)
        boundary = secrets.token_hex(16)

        def body() -> Iterator[bytes]:
            yield (
                f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="file"\r\n'
                "Content-Type: application/octet-stream\r\n\r\n"
            ).encode()
            for piece in iter_source(source):
                builder.update(piece)
                # Copied in chunk-sized slices: a path's buffer is reused for the next piece, and a bytes source
                # arrives as one piece that should not be duplicated whole.
                for start in range(0, len(piece), CHUNK_SIZE):
                    yield bytes(piece[start : start + CHUNK_SIZE])
            yield f"\r\n--{boundary}--\r\n".encode()

        params = {
            "cid-version": str(cid_version),
            "raw-leaves": "true" if cid_version == 1 else "false",
            "chunker": f"size-{CHUNK_SIZE}",
            "pin": "true",
            "progress": "false",
        }
        headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
        response = self._call("add", params, content=body(), headers=headers)
        answered = self._added_hash(response)
        expected = builder.finalize()
        if self._binary(answered, "add") != builder.root_cid:
            raise StoreUnavailable(
                f"Kubo node at {self.url} answered CID {answered} for content whose CID is {expected}"
            )
        return expected

    def get(self, cid: str) -> bytes:
        root = self._root(cid)
        return b"".join(iter_file(self._read_block, root))

    def get_to(self, cid: str, path: Path) -> None:
        """Stream the verified content into `path`; on any error `path` is left untouched."""
        write_streamed(path, iter_file(self._read_block, self._root(cid)))

    def has(self, cid: str) -> bool:
        """Whether the node holds every block of `cid` itself (asked offline: no search of the network)."""
        root = self._root(cid)
        try:
            walk_dag(lambda block: self._read_block(block, offline=True), root, self._require_local)
        except ContentNotFound:
            return False
        return True

    def pin(self, cid: str) -> None:
        root = self._root(cid)
        self._call("pin/add", {"arg": cids.cid_text(root), "timeout": f"{self.timeout}s"})

    def unpin(self, cid: str) -> None:
        root = self._root(cid)
        try:
            self._call("pin/rm", {"arg": cids.cid_text(root)})
        except StorageError as exc:
            if not any(hint in str(exc) for hint in _NOT_PINNED_HINTS):
                raise

    def stat(self, cid: str) -> ContentStat:
        root = self._root(cid)
        shape = walk_dag(self._read_block, root)
        return ContentStat(
            cid=cids.cid_text(root),
            size=shape.size,
            blocks=shape.blocks,
            cumulative_size=shape.cumulative_size,
            pinned=self._pinned(root),
        )

    # -- RPC -------------------------------------------------------------------------------------------------

    def _call(self, command: str, params: dict[str, str], **request: Any) -> httpx.Response:
        """POST one RPC command (Kubo accepts only POST); map transport and API failures to our errors."""
        try:
            response = self._client.post(command, params=params, **request)
        except httpx.TimeoutException as exc:
            raise StoreUnavailable(
                f"Kubo node at {self.url} timed out on {command} after {self.timeout}s"
            ) from exc
        except httpx.TransportError as exc:
            raise StoreUnavailable(f"Kubo node at {self.url} is unreachable ({command}): {exc}") from exc
        if response.status_code == 200:
            return response
        message = self._error_message(response, command)
        arg = params.get("arg")
        if arg and any(hint in message.lower() for hint in _NOT_FOUND_HINTS):
            raise ContentNotFound(arg, f"content not found on the Kubo node at {self.url}: {arg} ({message})")
        raise StorageError(f"Kubo node at {self.url} refused {command}: {message}")

    def _error_message(self, response: httpx.Response, command: str) -> str:
        # Kubo reports command errors as HTTP 500 with {"Message": ..., "Code": ..., "Type": "error"}.
        try:
            payload = response.json()
            if isinstance(payload, dict) and isinstance(payload.get("Message"), str):
                return payload["Message"]
        except ValueError:
            pass
        raise StoreUnavailable(
            f"{self.url} does not answer like a Kubo RPC API ({command}: HTTP {response.status_code})"
        )

    def _json(self, response: httpx.Response, command: str) -> dict[str, Any]:
        try:
            payload = response.json()
        except ValueError:
            payload = None
        if not isinstance(payload, dict):
            raise StoreUnavailable(
                f"Kubo node at {self.url} answered {command} with something that is not JSON"
            )
        return payload

    def _added_hash(self, response: httpx.Response) -> str:
        """The root's CID from `add`'s newline-delimited JSON (the last entry names the file added)."""
        found = None
        for line in response.text.splitlines():
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                entry = None
            if not isinstance(entry, dict):
                raise StoreUnavailable(
                    f"Kubo node at {self.url} answered add with something that is not JSON"
                )
            if entry.get("Type") == "error":
                raise StorageError(f"Kubo node at {self.url} failed to add: {entry.get('Message')}")
            if isinstance(entry.get("Hash"), str):
                found = entry["Hash"]
        if found is None:
            raise StoreUnavailable(f"Kubo node at {self.url} answered add without a CID")
        return found

    def _binary(self, cid: str, command: str) -> bytes:
        try:
            return bytes(cids.parse_cid(cid))
        except StorageError as exc:
            raise StoreUnavailable(
                f"Kubo node at {self.url} answered {command} with a bad CID {cid!r}"
            ) from exc

    def _read_block(self, cid: bytes, *, offline: bool = False) -> bytes:
        params = {"arg": cids.cid_text(cid), "timeout": f"{self.timeout}s"}
        if offline:
            params["offline"] = "true"
        block = self._call("block/get", params).content
        if hashlib.sha256(block).digest() != cids.digest_of(cid):
            raise CorruptedBlock(
                cids.cid_text(cid),
                f"Kubo node at {self.url} sent a block that does not hash to {cids.cid_text(cid)}",
            )
        return block

    def _require_local(self, cid: bytes) -> None:
        params = {"arg": cids.cid_text(cid), "offline": "true"}
        payload = self._json(self._call("block/stat", params), "block/stat")
        if not isinstance(payload.get("Size"), int):
            raise StoreUnavailable(f"Kubo node at {self.url} answered block/stat without a Size")

    def _pinned(self, root: bytes) -> bool:
        text = cids.cid_text(root)
        try:
            payload = self._json(self._call("pin/ls", {"arg": text, "type": "recursive"}), "pin/ls")
        except StorageError as exc:
            if any(hint in str(exc) for hint in _NOT_PINNED_HINTS):
                return False
            raise
        keys = payload.get("Keys")
        if not isinstance(keys, dict):
            raise StoreUnavailable(f"Kubo node at {self.url} answered pin/ls without Keys")
        return any(self._binary(key, "pin/ls") == root for key in keys)

    @staticmethod
    def _root(cid: str) -> bytes:
        if not isinstance(cid, str):
            raise StorageError(f"a CID is text, not {type(cid).__name__}")
        return bytes(cids.parse_cid(cid.strip()))


__all__ = ["KuboStore"]
