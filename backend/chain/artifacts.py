"""Compiled contracts, read from the manifest `ape compile` writes (`.build/__local__.json`)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from eth_abi import decode as abi_decode
from eth_utils import function_abi_to_4byte_selector, to_checksum_address

from backend.chain.abi import enum_for
from backend.chain.errors import ArtifactsMissing, ContractRevert, revert_class

__all__ = ["Artifacts"]

# Solidity's built-in revert forms: Error(string) and Panic(uint256).
_ERROR_STRING = bytes.fromhex("08c379a0")
_PANIC = bytes.fromhex("4e487b71")


@dataclass(frozen=True)
class Artifacts:
    """ABIs and bytecode by contract name."""

    path: Path
    contract_types: dict[str, dict[str, Any]] = field(repr=False)

    @classmethod
    def load(cls, path: Path) -> Artifacts:
        try:
            manifest = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise ArtifactsMissing(
                f"no compiled contracts at {path}: run `ape compile` (or `make install`)"
            ) from None
        except json.JSONDecodeError as exc:
            raise ArtifactsMissing(f"{path} is not a valid Ape manifest: {exc}") from None
        return cls(path=Path(path), contract_types=manifest.get("contractTypes") or {})

    def names(self) -> list[str]:
        return sorted(self.contract_types)

    def _get(self, name: str) -> dict[str, Any]:
        try:
            return self.contract_types[name]
        except KeyError:
            raise ArtifactsMissing(
                f"contract {name!r} is not among the compiled contracts in {self.path}"
            ) from None

    def abi(self, name: str) -> list[dict[str, Any]]:
        return self._get(name)["abi"]

    def bytecode(self, name: str) -> str:
        code = (self._get(name).get("deploymentBytecode") or {}).get("bytecode")
        if not code or code == "0x":
            raise ArtifactsMissing(
                f"contract {name!r} has no deployment bytecode (abstract or an interface?)"
            )
        return code

    @staticmethod
    def _deployable(ctype: dict[str, Any]) -> bool:
        return ((ctype.get("deploymentBytecode") or {}).get("bytecode") or "0x") != "0x"

    @cached_property
    def _errors_by_selector(self) -> dict[bytes, list[tuple[str, dict[str, Any]]]]:
        """Every contract's custom errors by selector (a selector may be declared by several contracts)."""
        table: dict[bytes, list[tuple[str, dict[str, Any]]]] = {}
        # Deployable contracts before the interfaces and abstract modules that declare the same errors.
        ordered = sorted(self.contract_types.items(), key=lambda kv: (not self._deployable(kv[1]), kv[0]))
        for contract, ctype in ordered:
            for item in ctype.get("abi", []):
                if item.get("type") == "error":
                    table.setdefault(function_abi_to_4byte_selector(item), []).append((contract, item))
        return table

    def decode_revert(self, data: bytes | str, contract: str | None = None) -> ContractRevert | None:
        """Decode revert data from a call to `contract` into that contract's `ContractRevert` class for the error;
        an error `contract` does not declare (bubbled up from a contract it called) is decoded as the declaring
        contract's. None if the data is not decodable."""
        raw = bytes.fromhex(data.removeprefix("0x")) if isinstance(data, str) else bytes(data)
        selector, payload = raw[:4], raw[4:]
        label = contract or "contract"
        if selector == _ERROR_STRING:
            (message,) = abi_decode(["string"], payload)
            return revert_class(label, "Error")(label, {"message": message})
        if selector == _PANIC:
            (code,) = abi_decode(["uint256"], payload)
            return revert_class(label, "Panic")(label, {"code": hex(code)})
        declared = self._errors_by_selector.get(selector)
        if not declared:
            return None
        # The called contract's own declaration first, so its class is the one raised.
        source, item = next(((c, i) for c, i in declared if c == contract), declared[0])
        inputs = item.get("inputs", [])
        try:
            values = abi_decode([_abi_type(i) for i in inputs], payload)
        except Exception:
            return None
        args = {
            (i.get("name") or f"arg{n}"): _decoded_arg(i, v)
            for n, (i, v) in enumerate(zip(inputs, values, strict=True))
        }
        return revert_class(source, item["name"])(contract or source, args)


def _decoded_arg(param: dict[str, Any], value: Any) -> Any:
    """An error argument as callers want it: addresses checksummed, registered enums as their members."""
    if param["type"] == "address":
        return to_checksum_address(value)
    enum = enum_for(param.get("internalType", ""))
    if enum is not None:
        try:
            return enum(value)
        except ValueError:
            return value
    return value


def _abi_type(param: dict[str, Any]) -> str:
    """The canonical ABI type string of a parameter, tuples included."""
    kind = param["type"]
    if kind.startswith("tuple"):
        inner = ",".join(_abi_type(c) for c in param.get("components", []))
        return f"({inner}){kind[len('tuple') :]}"
    return kind
