"""EIP-712 typed data, written once: a domain, a struct type from its Solidity encoding, the signable payload.

A contract declares each signed struct as the string its TYPEHASH hashes, e.g.
`SubmitUpdate(address trainer,uint256 projectId,...)`; `struct_types` turns that very string into the field list
eth-account signs, so the Python side cannot drift from the contract (tests compare `typehash` with the
contract's constant). Pure: no code of ours beyond this module, so the algorithm packages may use it too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from eth_utils import keccak, to_checksum_address

__all__ = ["EIP712_DOMAIN_TYPE", "Eip712Domain", "struct_types", "typed_data", "typehash"]

EIP712_DOMAIN_TYPE: list[dict[str, str]] = [
    {"name": "name", "type": "string"},
    {"name": "version", "type": "string"},
    {"name": "chainId", "type": "uint256"},
    {"name": "verifyingContract", "type": "address"},
]

_ENCODED_TYPE = re.compile(r"^(\w+)\(([^()]*)\)$")


@dataclass(frozen=True)
class Eip712Domain:
    """Where a signature is valid: a contract's EIP712(name, version) on one chain."""

    name: str
    version: str
    chain_id: int
    verifying_contract: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "chainId": int(self.chain_id),
            "verifyingContract": to_checksum_address(self.verifying_contract),
        }


def struct_types(encoded: str) -> dict[str, list[dict[str, str]]]:
    """`{"Name": [{"name": ..., "type": ...}, ...]}` from a struct's EIP-712 encoding `Name(type field,...)`
    (one struct without nested struct types, which is all the contracts sign)."""
    match = _ENCODED_TYPE.match(encoded)
    if match is None:
        raise ValueError(f"not an EIP-712 struct encoding: {encoded!r}")
    name, body = match.groups()
    fields = []
    for member in filter(None, body.split(",")):
        kind, _, field = member.strip().partition(" ")
        if not kind or not field:
            raise ValueError(f"malformed member {member!r} in {encoded!r}")
        fields.append({"name": field, "type": kind})
    return {name: fields}


def typehash(encoded: str) -> bytes:
    """keccak256 of the encoding: the contract's `..._TYPEHASH` constant."""
    return keccak(text=encoded)


def typed_data(domain: Eip712Domain, encoded: str, message: dict[str, Any]) -> dict[str, Any]:
    """The full payload (eth_signTypedData_v4 layout) of `message`, a struct of type `encoded` under `domain`."""
    types = struct_types(encoded)
    (primary,) = types
    return {
        "types": {"EIP712Domain": EIP712_DOMAIN_TYPE, **types},
        "primaryType": primary,
        "domain": domain.as_dict(),
        "message": message,
    }
