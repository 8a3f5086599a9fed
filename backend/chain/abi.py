"""One decoder between ABI structs and the facades' dataclasses, so no facade writes a struct's fields out by hand.

A dataclass field `round_opened_at` is the ABI component `roundOpenedAt`. Values convert by the ABI type and the
field's annotation: `bytes32` travels as 64 lower-case hex digits (no 0x) where the field is a `str`, addresses
are checksummed, `uint8` enums become the field's `IntEnum`; everything else passes as is.
"""

from __future__ import annotations

import dataclasses
import re
import typing
from enum import IntEnum
from functools import cache
from typing import Any, TypeVar

from web3 import Web3

from backend.chain.errors import ChainError

__all__ = [
    "AbiInputError",
    "ContractEnum",
    "camel",
    "enum_for",
    "hash_bytes",
    "plain",
    "snake",
    "struct_from_abi",
    "struct_to_abi",
]

T = TypeVar("T")


class AbiInputError(ChainError, ValueError):
    """A value that cannot go to the contract as given (e.g. a hash that is not 64 hex digits)."""


_ENUMS: dict[str, type[ContractEnum]] = {}


class ContractEnum(IntEnum):
    """A Solidity enum: members in the contract's order, UPPER_SNAKE_CASE here; `label` is the Solidity spelling
    (`ProjectStatus.ACTIVE.label == "Active"`, `ROUND_DURATION` -> "RoundDuration"), what JSON output and pages
    show. `solidity="ITrainingMarket.Status"` registers the enum, so decoded revert arguments of that type come back
    as members (`enum_for`)."""

    def __init_subclass__(cls, solidity: str | None = None, **kwargs: Any):
        super().__init_subclass__(**kwargs)
        if solidity is not None:
            _ENUMS[solidity] = cls

    @property
    def label(self) -> str:
        return "".join(part.capitalize() for part in self.name.split("_"))


def enum_for(internal_type: str) -> type[ContractEnum] | None:
    """The registered Python enum of an ABI parameter's internalType (`enum ITrainingMarket.Status`), if any."""
    return _ENUMS.get(internal_type.removeprefix("enum ")) if internal_type.startswith("enum ") else None


def plain(value: Any) -> Any:
    """A facade dataclass (or list, dict) as JSON-ready values: enums by their Solidity label."""
    if isinstance(value, ContractEnum):
        return value.label
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def snake(name: str) -> str:
    """`roundOpenedAt` -> `round_opened_at` (`initialModelSha256` -> `initial_model_sha256`)."""
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


def camel(name: str) -> str:
    """`round_opened_at` -> `roundOpenedAt`."""
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def hash_bytes(hex_digest: str) -> bytes:
    """A 32-byte hash given as 64 hex digits (an optional 0x) as bytes; anything else is refused."""
    digits = hex_digest.lower().removeprefix("0x") if isinstance(hex_digest, str) else None
    if digits is None or len(digits) != 64 or any(c not in "0123456789abcdef" for c in digits):
        raise AbiInputError(f"expected a 32-byte hash as 64 hex digits, got {hex_digest!r}")
    return bytes.fromhex(digits)


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _from_abi(abi_type: str, hint: Any, value: Any) -> Any:
    if abi_type == "address":
        return Web3.to_checksum_address(value)
    if abi_type == "address[]":
        return [Web3.to_checksum_address(v) for v in value]
    if abi_type == "bytes32" and hint is str:
        return bytes(value).hex()
    if isinstance(hint, type) and issubclass(hint, IntEnum):
        return hint(value)
    if isinstance(value, tuple) and typing.get_origin(hint) is list:
        return list(value)
    return value


def struct_from_abi(cls: type[T], components: list[dict[str, Any]], value: Any, **extra: Any) -> T:
    """The dataclass `cls` from a struct `value` decoded by web3 against `components` (its ABI fields); fields of
    `cls` that the struct lacks come from `extra`, components `cls` has no field for are dropped."""
    hints = _hints(cls)  # type: ignore[arg-type]  # a class is hashable
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    values = dict(extra)
    for component, item in zip(components, value, strict=True):
        field = snake(component["name"])
        if field in names and field not in values:
            values[field] = _from_abi(component["type"], hints[field], item)
    return cls(**values)


def _to_abi(abi_type: str, value: Any) -> Any:
    if abi_type == "address":
        return Web3.to_checksum_address(value)
    if abi_type == "address[]":
        return [Web3.to_checksum_address(v) for v in value]
    if abi_type == "bytes32" and isinstance(value, str):
        return hash_bytes(value)
    if abi_type.endswith("[]"):
        return list(value)
    if isinstance(value, IntEnum):
        return int(value)
    return value


def struct_to_abi(obj: Any, components: list[dict[str, Any]]) -> tuple:
    """The tuple web3 encodes for a struct with `components` from the dataclass `obj` (fields by snake name)."""
    try:
        return tuple(_to_abi(c["type"], getattr(obj, snake(c["name"]))) for c in components)
    except AttributeError as exc:
        raise AbiInputError(f"{type(obj).__name__} lacks a field the contract expects: {exc}") from None
