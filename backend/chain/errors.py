"""Chain errors: each a clear, one-line message; reverts carry the contract's own error name and arguments."""

from __future__ import annotations

from typing import Any

from backend.errors import TrustmarketError

__all__ = [
    "ArtifactsMissing",
    "ChainError",
    "ChainUnavailable",
    "ContractErrors",
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
    """A call reverted with one of a contract's custom errors (or Solidity's `Error(string)` / `Panic(uint256)`).

    Subclasses are made per contract and error name, `revert_class("TrainingMarket", "NotRegistered")` (also
    `TrainingMarket.errors.NotRegistered` on a facade), so callers catch exactly the error they mean: the same
    name in another contract is another class. The class is named after the error (its `__qualname__` is
    `Contract.Error`); `error_args` holds the decoded arguments by name.
    """

    contract_name: str = ""
    error_name: str = "ContractRevert"

    def __init__(self, contract: str, error_args: dict[str, Any]):
        self.contract = contract
        self.error_args = error_args
        rendered = ", ".join(f"{k}={_render(v)}" for k, v in error_args.items())
        super().__init__(f"{contract} reverted: {self.error_name}({rendered})")


_REVERT_CLASSES: dict[tuple[str, str], type[ContractRevert]] = {}


def revert_class(contract: str, error_name: str) -> type[ContractRevert]:
    """The `ContractRevert` subclass for `contract`'s custom error `error_name` (made once, then reused).

    `contract` is the contract whose ABI declares the error (for an error raised inside a called contract and
    bubbled up, that contract); `Error` and `Panic` exist for every contract.
    """
    key = (contract, error_name)
    cls = _REVERT_CLASSES.get(key)
    if cls is None:
        cls = type(
            error_name,
            (ContractRevert,),
            {
                "contract_name": contract,
                "error_name": error_name,
                "__module__": __name__,
                "__qualname__": f"{contract}.{error_name}",
            },
        )
        _REVERT_CLASSES[key] = cls
    return cls


class ContractErrors:
    """The revert classes of one contract by attribute: `ContractErrors("TrainingMarket").NotRegistered`."""

    def __init__(self, contract: str):
        self._contract = contract

    def __getattr__(self, error_name: str) -> type[ContractRevert]:
        if error_name.startswith("_"):
            raise AttributeError(error_name)
        return revert_class(self._contract, error_name)

    def __repr__(self) -> str:
        return f"ContractErrors({self._contract!r})"


def _render(value: Any) -> str:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    label = getattr(value, "label", None)  # a ContractEnum member: its Solidity name
    return label if isinstance(label, str) else str(value)
