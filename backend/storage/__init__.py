"""Content-addressed storage whose CIDs equal Kubo's, and the safetensors codec for model weights.

`open_store(settings)` gives the configured `ContentStore`: `LocalStore` (a directory, the default),
`GatewayStore` (any IPFS trustless gateway, every block verified) or `KuboStore` (a Kubo node's RPC API).
Content is referenced on chain by CID + sha256; `fetch_verified` checks both.
"""

from __future__ import annotations

from pathlib import Path

from backend.settings import Settings
from backend.storage.base import ContentStat, ContentStore, compute_cid, fetch_verified, fetch_verified_file
from backend.storage.cids import sha256_hex
from backend.storage.errors import (
    CodecError,
    ContentNotFound,
    CorruptedBlock,
    IntegrityError,
    StorageError,
    StoreFullError,
    StoreUnavailable,
)
from backend.storage.kubo import KuboStore
from backend.storage.local import LocalStore
from backend.storage.remote import GatewayStore


def open_store(settings: Settings) -> ContentStore:
    """The store `settings.store` names: `local` (at `settings.resolved_store_path`), a folder, a gateway URL, a
    Kubo RPC URL (ending in `/api/v0`), or `kubo` (at `settings.kubo_url`)."""
    kind = settings.store.strip()
    token = settings.store_token.get_secret_value() if settings.store_token else None
    if kind == "local":
        return LocalStore(settings.resolved_store_path)
    if kind == "kubo":
        return KuboStore(settings.kubo_url)
    if kind.startswith(("http://", "https://")):
        if kind.rstrip("/").endswith("/api/v0"):
            return KuboStore(kind.rstrip("/").removesuffix("/api/v0"))
        return GatewayStore(kind, upload_url=settings.store_upload_url, token=token)
    if kind.startswith("file://"):
        return LocalStore(Path(kind.removeprefix("file://")))
    if kind.startswith(("/", "./", "../", "~")):
        return LocalStore(Path(kind).expanduser())
    raise StorageError(
        f"TRUSTMARKET_STORE={kind!r} is not `local`, `kubo`, a folder path, a gateway URL or a Kubo RPC URL"
    )


__all__ = [
    "CodecError",
    "ContentNotFound",
    "ContentStat",
    "ContentStore",
    "CorruptedBlock",
    "GatewayStore",
    "IntegrityError",
    "KuboStore",
    "LocalStore",
    "StorageError",
    "StoreFullError",
    "StoreUnavailable",
    "compute_cid",
    "fetch_verified",
    "fetch_verified_file",
    "open_store",
    "sha256_hex",
]
