"""A verifier's BLS key file: the secret and both public keys as hex, created owner-only (mode 0600)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from backend.committee import bls
from backend.errors import TrustmarketError

__all__ = ["KeyFileError", "load_key", "public_keys", "write_key"]


class KeyFileError(TrustmarketError, ValueError):
    """A BLS key file that cannot be written or read (defined here: the key commands need no chain client)."""


def public_keys(keys: bls.KeyPair) -> dict[str, list[str]]:
    """The public halves as the key file and `--json` output write them."""
    return {"public_g1": [hex(v) for v in keys.public_g1], "public_g2": [hex(v) for v in keys.public_g2]}


def write_key(path: Path, keys: bls.KeyPair, *, force: bool = False) -> None:
    """Write a key file, refusing to replace one unless `force` (the old key would be lost)."""
    if path.exists() and not force:
        raise KeyFileError(f"{path} exists; pass --force to replace it (the old key is lost)")
    path.parent.mkdir(parents=True, exist_ok=True)
    # Created owner-only before anything is written: the file holds a secret key.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(json.dumps({"secret": hex(keys.secret), **public_keys(keys)}, indent=2) + "\n")


def load_key(path: Path) -> bls.KeyPair:
    """The key pair in a key file written by `write_key`; a one-line error for anything else."""
    data: Any = read_json(path, "BLS key file")
    try:
        return bls.keypair_from_secret(int(data["secret"], 16))
    except (KeyError, TypeError, ValueError):
        raise KeyFileError(f"{path}: not a BLS key file (needs a hex 'secret')") from None


def read_json(path: Path, what: str) -> Any:
    """A JSON file the committee tools read (key, signature, attestation), with a one-line error."""
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise KeyFileError(f"{path}: not a {what} (invalid JSON: {exc.msg})") from None
