"""Typed facade over `AccessRegistry.sol`: API tiers with expiry, and terms accepted by EIP-712 signature.

Grantors (an on-chain role) set a wallet's tier; a wallet accepts the current terms by signing typed data that
anyone may relay (`accept_terms_for`), so the user pays no gas. `access_of` answers everything the API gates on in
one call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import keccak
from web3 import Web3
from web3.types import TxReceipt

from backend.chain.facade import ContractFacade

__all__ = ["ACCEPT_TERMS_TYPE", "EIP712_DOMAIN", "AccessGrant", "AccessRegistry", "TermsInfo", "decision_ref"]

CONTRACT = "AccessRegistry"
# The contract's EIP712(name, version), and the string ACCEPT_TERMS_TYPEHASH hashes.
EIP712_DOMAIN = ("trustmarket AccessRegistry", "1")
ACCEPT_TERMS_TYPE = "AcceptTerms(address account,bytes32 termsHash,uint256 nonce,uint256 deadline)"


@dataclass(frozen=True)
class AccessGrant:
    """What the chain says about one wallet now (`tier` is 0 when never granted, revoked or expired)."""

    account: str
    tier: int
    expires_at: int
    accepted_current_terms: bool
    grantor: bool


@dataclass(frozen=True)
class TermsInfo:
    """The terms in force: their hash (zero before the first publication) and version."""

    terms_hash: bytes
    version: int

    @property
    def published(self) -> bool:
        return self.version > 0


def decision_ref(text: str) -> bytes:
    """The bytes32 a grant or revocation carries on chain to point at its off-chain decision."""
    return keccak(text=text)


class AccessRegistry(ContractFacade):
    """The deployed AccessRegistry (or the one at `address`), through a `ChainClient`."""

    contract_name = CONTRACT

    # -- reads -----------------------------------------------------------------------------------------------

    def access_of(self, account: str) -> AccessGrant:
        checksum = Web3.to_checksum_address(account)
        tier, expires_at, accepted, grantor = self._call("accessOf", checksum)
        return AccessGrant(checksum, int(tier), int(expires_at), bool(accepted), bool(grantor))

    def terms(self) -> TermsInfo:
        return TermsInfo(bytes(self._call("currentTermsHash")), int(self._call("termsVersion")))

    def terms_uri(self, version: int) -> str | None:
        """Where terms `version` can be read, from its TermsPublished event (None if never published)."""
        logs = self.client.events(
            CONTRACT, "TermsPublished", filters={"version": version}, address=self._address
        )
        return str(logs[-1]["args"]["uri"]) if logs else None

    def max_tier(self) -> int:
        return int(self._call("maxTier"))

    def nonce_of(self, account: str) -> int:
        return int(self._call("nonces", Web3.to_checksum_address(account)))

    def acceptance_typed_data(self, account: str, terms_hash: bytes, deadline: int) -> dict[str, Any]:
        """The EIP-712 payload `account` signs to accept `terms_hash` (eth_signTypedData_v4 layout)."""
        return self._typed_data(
            EIP712_DOMAIN,
            ACCEPT_TERMS_TYPE,
            {
                "account": Web3.to_checksum_address(account),
                "termsHash": "0x" + bytes(terms_hash).hex(),
                "nonce": self.nonce_of(account),
                "deadline": int(deadline),
            },
        )

    def sign_acceptance(self, signer: LocalAccount, terms_hash: bytes, deadline: int) -> bytes:
        """Sign the acceptance of `terms_hash` with a local key (tests, CLI users holding a keystore)."""
        payload = self.acceptance_typed_data(signer.address, terms_hash, deadline)
        signed = Account.sign_typed_data(signer.key, full_message=payload)
        return bytes(signed.signature)

    # -- writes ----------------------------------------------------------------------------------------------

    def set_tier(
        self, grantor: LocalAccount, account: str, tier: int, expires_at: int, ref: bytes
    ) -> TxReceipt:
        return self._transact(grantor, "setTier", Web3.to_checksum_address(account), tier, expires_at, ref)

    def revoke(self, grantor: LocalAccount, account: str, ref: bytes) -> TxReceipt:
        return self._transact(grantor, "revoke", Web3.to_checksum_address(account), ref)

    def publish_terms(self, admin: LocalAccount, terms_hash: bytes, uri: str) -> TxReceipt:
        return self._transact(admin, "publishTerms", terms_hash, uri)

    def accept_terms_for(
        self, relayer: LocalAccount, account: str, terms_hash: bytes, deadline: int, signature: bytes
    ) -> TxReceipt:
        """Relay `account`'s signed acceptance; `relayer` pays the gas."""
        return self._transact(
            relayer, "acceptTermsFor", Web3.to_checksum_address(account), terms_hash, deadline, signature
        )
