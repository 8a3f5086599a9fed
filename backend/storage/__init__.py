"""Content-addressed storage whose CIDs equal Kubo's, and the safetensors codec for model weights.

`open_store(settings)` gives the configured `ContentStore`: `LocalStore` (a directory, the default) or
`KuboStore` (a Kubo node over HTTP). Content is referenced on chain by CID + sha256; `fetch_verified` checks both.
"""

from __future__ import annotations

from backend.settings import Settings
from backend.storage.base import ContentStat, ContentStore, compute_cid, fetch_verified
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


def open_store(settings: Settings) -> ContentStore:
    """The store `settings` asks for: `local` at `settings.resolved_store_path`, or `kubo` at `settings.kubo_url`."""
    if settings.store == "local":
        return LocalStore(settings.resolved_store_path)
    if settings.store == "kubo":
        return KuboStore(settings.kubo_url)
    raise StorageError(f"unknown store kind {settings.store!r} (expected 'local' or 'kubo')")


__all__ = [
    "CodecError",
    "ContentNotFound",
    "ContentStat",
    "ContentStore",
    "CorruptedBlock",
    "IntegrityError",
    "KuboStore",
    "LocalStore",
    "StorageError",
    "StoreFullError",
    "StoreUnavailable",
    "compute_cid",
    "fetch_verified",
    "open_store",
    "sha256_hex",
]
