"""Signing keys: an encrypted keystore, an Ape account, or (local chains only) one of anvil's dev accounts.

A key never comes from a command-line argument: it would land in shell history and `ps`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from eth_account import Account
from eth_account.hdaccount import ETHEREUM_DEFAULT_PATH
from eth_account.signers.local import LocalAccount

from backend.chain.anvil import DEV_MNEMONIC
from backend.chain.errors import ChainError

__all__ = ["KeyLoadError", "ape_keystore", "create_keystore", "dev_account", "load_keystore"]

Account.enable_unaudited_hdwallet_features()

LOCAL_CHAIN_IDS = frozenset({31337, 1337})


class KeyLoadError(ChainError):
    """A key could not be loaded (missing file, wrong password, not allowed on this chain)."""


def load_keystore(path: Path, password: str) -> LocalAccount:
    """Decrypt an Ethereum keystore (V3 JSON) file."""
    try:
        keyfile = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise KeyLoadError(f"no keystore at {path}") from None
    except json.JSONDecodeError:
        raise KeyLoadError(f"{path} is not a keystore file (invalid JSON)") from None
    try:
        return Account.from_key(Account.decrypt(keyfile, password))
    except ValueError as exc:
        if "MAC mismatch" in str(exc):
            raise KeyLoadError(f"wrong password for keystore {path}") from None
        raise KeyLoadError(f"cannot decrypt keystore {path}: {exc}") from None


def create_keystore(path: Path, password: str, private_key: str | bytes | None = None) -> LocalAccount:
    """Write a new (or the given) key as an encrypted keystore; refuses to overwrite."""
    path = Path(path)
    if path.exists():
        raise KeyLoadError(f"{path} exists already; refusing to overwrite a keystore")
    account = Account.from_key(private_key) if private_key is not None else Account.create()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(Account.encrypt(account.key, password), fh)
    return account


def ape_keystore(alias: str) -> Path:
    """The keystore file of an Ape account alias (`ape accounts generate ALIAS`)."""
    data_folder = Path(os.environ.get("APE_DATA_FOLDER", Path.home() / ".ape"))
    path = data_folder / "accounts" / f"{alias}.json"
    if not path.exists():
        raise KeyLoadError(f"no Ape account named {alias!r} (looked for {path})")
    return path


def dev_account(index: int, chain_id: int) -> LocalAccount:
    """anvil's dev account `index`; refused on any chain that is not a local development chain."""
    if chain_id not in LOCAL_CHAIN_IDS:
        raise KeyLoadError(f"dev accounts are public keys, refused on chain {chain_id} (not a local chain)")
    if not 0 <= index < 1000:
        raise KeyLoadError(f"dev account index {index} out of range")
    return Account.from_mnemonic(DEV_MNEMONIC, account_path=f"{ETHEREUM_DEFAULT_PATH[:-1]}{index}")
