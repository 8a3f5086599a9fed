"""Chain errors: each a clear, one-line message; reverts carry the contract's own error name and arguments."""

from __future__ import annotations

from typing import Any

from backend.errors import TrustmarketError

__all__ = [
    "ArtifactsMissing",
    "ChainError",
    "ChainUnavailable",
    "ContractRevert",
    "NotDeployed",
    "TransactionFailed",
    "WrongChain",
    "revert_class",
]


class ChainError(TrustmarketError):
    """Anything that went wrong talking to the chain."""


class ChainUnavailable(ChainError):
    """No node answers at the configured URL."""


class WrongChain(ChainError):
    """The node serves another chain than the one configured."""


class NotDeployed(ChainError):
    """No deployments file, no address for a contract, or no code at its address."""


class ArtifactsMissing(ChainError):
    """The compiled contracts (Ape's `.build/__local__.json`) are missing or lack a contract."""


class TransactionFailed(ChainError):
    """A transaction failed without a decodable custom error (out of gas, timeout, unknown revert data)."""


class ContractRevert(ChainError):
    """A call reverted with one of the contract's custom errors.

    Subclasses are made per Solidity error name (`revert_class("NotRegistered")`), so callers can catch the exact
    error: `except revert_class("RoundClosed")`. `error_args` holds the decoded arguments by name.
    """

    error_name: str = "ContractRevert"

    def __init__(self, contract: str, error_args: dict[str, Any]):
        self.contract = contract
        self.error_args = error_args
        rendered = ", ".join(f"{k}={_render(v)}" for k, v in error_args.items())
        super().__init__(f"{contract} reverted: {self.error_name}({rendered})")


_REVERT_CLASSES: dict[str, type[ContractRevert]] = {}


def revert_class(error_name: str) -> type[ContractRevert]:
    """The `ContractRevert` subclass for a Solidity custom error name (made once, then reused)."""
    cls = _REVERT_CLASSES.get(error_name)
    if cls is None:
        cls = type(error_name, (ContractRevert,), {"error_name": error_name, "__module__": __name__})
        _REVERT_CLASSES[error_name] = cls
    return cls


def _render(value: Any) -> str:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    return str(value)
