"""EIP-712 signatures that bind a source node's answer to one query, one registry epoch and the documents sent.

The node signs `Retrieval(sourceId, queryHash, documents, epoch)` under the domain of the SourceRegistry it is
registered in (name, version, chain id, registry address). `queryHash` commits to the query text, the client's
fresh nonce, the epoch and `k`, so an answer cannot be replayed for another query or epoch, nor passed off as
another source's: the orchestrator recovers the signer and compares it with the operator recorded on chain.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from eth_abi import encode as abi_encode
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_account.signers.local import LocalAccount
from eth_utils import keccak

from backend.eip712 import Eip712Domain, struct_types
from rag.errors import SignatureError

__all__ = [
    "DOMAIN_NAME",
    "DOMAIN_VERSION",
    "RETRIEVAL_TYPES",
    "SigningDomain",
    "new_nonce",
    "query_hash",
    "recover_signer",
    "sign_retrieval",
]

DOMAIN_NAME = "trustmarket dRAG"
DOMAIN_VERSION = "1"
RETRIEVAL_TYPES = struct_types(
    "Retrieval(uint32 sourceId,bytes32 queryHash,bytes32[] documents,uint64 epoch)"
)


@dataclass(frozen=True)
class SigningDomain:
    """Where signatures are valid: one chain and one SourceRegistry."""

    chain_id: int
    registry: str

    def as_dict(self) -> dict[str, Any]:
        return Eip712Domain(DOMAIN_NAME, DOMAIN_VERSION, self.chain_id, self.registry).as_dict()


def new_nonce() -> bytes:
    """A fresh 32-byte client nonce."""
    return secrets.token_bytes(32)


def query_hash(query: str, nonce: bytes, epoch: int, k: int) -> bytes:
    """keccak256(abi.encode(keccak256(query), nonce, epoch, k))."""
    if len(nonce) != 32:
        raise SignatureError(f"nonce must be 32 bytes, got {len(nonce)}")
    if not 0 <= epoch < 2**64 or not 0 < k < 2**32:
        raise SignatureError(f"epoch {epoch} or k {k} out of range")
    return keccak(
        abi_encode(["bytes32", "bytes32", "uint64", "uint32"], [keccak(text=query), nonce, epoch, k])
    )


def _signable(domain: SigningDomain, source_id: int, qhash: bytes, documents: Sequence[bytes], epoch: int):
    message = {"sourceId": source_id, "queryHash": qhash, "documents": list(documents), "epoch": epoch}
    return encode_typed_data(domain.as_dict(), RETRIEVAL_TYPES, message)


def sign_retrieval(
    account: LocalAccount,
    domain: SigningDomain,
    source_id: int,
    qhash: bytes,
    documents: Sequence[bytes],
    epoch: int,
) -> bytes:
    """The node's 65-byte signature over its answer."""
    return bytes(account.sign_message(_signable(domain, source_id, qhash, documents, epoch)).signature)


def recover_signer(
    domain: SigningDomain,
    source_id: int,
    qhash: bytes,
    documents: Sequence[bytes],
    epoch: int,
    signature: bytes,
) -> str:
    """The address that signed this exact answer (a different answer recovers a different address)."""
    try:
        return Account.recover_message(
            _signable(domain, source_id, qhash, documents, epoch), signature=signature
        )
    except Exception as exc:  # eth-account raises several types for malformed signatures
        raise SignatureError(f"malformed signature: {type(exc).__name__}") from None
