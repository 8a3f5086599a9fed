"""Exceptions of the content store and the model codec.

Every one is a `backend.errors.TrustmarketError`, so the CLI prints it as one line (exit code 2) and the API as
problem+json. Messages name the CID (or the tensor) at fault so that the user can act on them.
"""

from __future__ import annotations

from backend.errors import TrustmarketError


class StorageError(TrustmarketError):
    """Content could not be stored or read (bad CID, unsupported DAG, bad answer from a node)."""


class ContentNotFound(StorageError):
    """The store does not hold the requested CID (or one of the blocks under it)."""

    def __init__(self, cid: str, detail: str | None = None) -> None:
        self.cid = cid
        super().__init__(detail or f"content not found: {cid}")


class CorruptedBlock(StorageError):
    """A block's bytes do not hash to its CID: the copy on disk (or the node's answer) is damaged."""

    def __init__(self, cid: str, detail: str | None = None) -> None:
        self.cid = cid
        super().__init__(detail or f"corrupted block {cid}: its bytes do not hash to its CID")


class IntegrityError(StorageError):
    """Fetched content does not match the sha256 recorded for it (e.g. on chain)."""


class StoreUnavailable(StorageError):
    """The store cannot be reached (a Kubo node that is down, times out or answers garbage)."""


class StoreFullError(StorageError):
    """The disk under the store is full; nothing already stored was changed."""


class CodecError(TrustmarketError):
    """Model bytes are not valid safetensors, or their tensors do not match the expected spec."""


__all__ = [
    "CodecError",
    "ContentNotFound",
    "CorruptedBlock",
    "IntegrityError",
    "StorageError",
    "StoreFullError",
    "StoreUnavailable",
]
