"""Typed facade over TrustmarketForwarder.sol (OpenZeppelin's ERC2771Forwarder): gasless calls of the contracts.

A trainer signs a `ForwardRequest` for a call of a contract that trusts the forwarder (TrainingMarket: a
commitment, a reveal, a claim), and anyone relays it; the target sees the signer as the caller. `forward` sends a
request through `executeBatch` with the relayer as refund receiver, so a request that ran already (a replay, or a
front-runner that relayed it first) or was invalidated is skipped rather than reverted: the relayer never pays for a
failed transaction on that account. The signer can void a request it handed out with `invalidate_nonce`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.logs import DISCARD

from backend.chain.facade import ContractFacade

__all__ = ["EIP712_DOMAIN", "FORWARD_REQUEST_TYPE", "ForwardRequest", "Forwarded", "Forwarder"]

NAME = "TrustmarketForwarder"
# The forwarder's EIP712(name, "1"); `deploy_contracts` gives it this name.
EIP712_DOMAIN = ("trustmarket Forwarder", "1")
# OpenZeppelin's ERC2771Forwarder._FORWARD_REQUEST_TYPEHASH encodes this.
FORWARD_REQUEST_TYPE = "ForwardRequest(address from,address to,uint256 value,uint256 gas,uint256 nonce,uint48 deadline,bytes data)"
# Gas a forwarded call gets (the target's own use: a commitment ~40k, a reveal ~35k, a claim ~60k).
DEFAULT_CALL_GAS = 300_000


@dataclass(frozen=True)
class ForwardRequest:
    """A signed request (ERC2771Forwarder.ForwardRequestData) and the nonce it was signed with."""

    signer: str
    to: str
    data: bytes
    nonce: int
    deadline: int
    signature: bytes
    gas: int = DEFAULT_CALL_GAS
    value: int = 0

    def to_abi(self) -> tuple:
        return (
            Web3.to_checksum_address(self.signer),
            Web3.to_checksum_address(self.to),
            self.value,
            self.gas,
            self.deadline,
            bytes(self.data),
            bytes(self.signature),
        )


@dataclass(frozen=True)
class Forwarded:
    """What relaying a request did: `executed` False when it was skipped (nonce used, invalidated or a bad
    signature), `succeeded` whether the target's call went through."""

    executed: bool
    succeeded: bool
    transaction: str


class Forwarder(ContractFacade):
    """The deployed TrustmarketForwarder (or the one at `address`)."""

    contract_name = NAME

    def nonce(self, account: str) -> int:
        """The nonce `account`'s next request must carry."""
        return int(self._call("nonces", Web3.to_checksum_address(account)))

    def typed_data(
        self, signer: str, to: str, data: bytes, nonce: int, deadline: int, gas: int = DEFAULT_CALL_GAS
    ) -> dict[str, Any]:
        """The EIP-712 payload `signer` signs to have `data` run at `to` as its own call (eth_signTypedData_v4)."""
        return self._typed_data(
            EIP712_DOMAIN,
            FORWARD_REQUEST_TYPE,
            {
                "from": Web3.to_checksum_address(signer),
                "to": Web3.to_checksum_address(to),
                "value": 0,
                "gas": int(gas),
                "nonce": int(nonce),
                "deadline": int(deadline),
                "data": "0x" + bytes(data).hex(),
            },
        )

    def sign(
        self, account: LocalAccount, to: str, data: bytes, deadline: int, *, nonce: int | None = None,
        gas: int = DEFAULT_CALL_GAS,
    ) -> ForwardRequest:  # fmt: skip
        """`account`'s signed request for `data` at `to`, with its current nonce unless one is given."""
        nonce = self.nonce(account.address) if nonce is None else nonce
        payload = self.typed_data(account.address, to, data, nonce, deadline, gas)
        signature = bytes(Account.sign_typed_data(account.key, full_message=payload).signature)
        return ForwardRequest(account.address, to, bytes(data), nonce, deadline, signature, gas)

    def verify(self, request: ForwardRequest) -> bool:
        """Whether the forwarder would execute the request now (signer, nonce, deadline, a trusting target)."""
        return bool(self._call("verify", request.to_abi()))

    def forward(self, relayer: LocalAccount, request: ForwardRequest) -> Forwarded:
        """Relay `request`; `relayer` pays the gas. Never reverts for a request that is no longer valid."""
        receipt = self._transact(relayer, "executeBatch", [request.to_abi()], relayer.address)
        contract = self.client.contract(NAME, self.address)
        executed = contract.events.ExecutedForwardRequest().process_receipt(receipt, errors=DISCARD)
        succeeded = bool(executed) and bool(executed[0]["args"]["success"])
        return Forwarded(bool(executed), succeeded, receipt["transactionHash"].to_0x_hex())

    def invalidate_nonce(self, account: LocalAccount) -> int:
        """Void `account`'s pending request; returns the nonce consumed."""
        receipt = self._transact(account, "invalidateNonce")
        return int(self._event(receipt, "NonceInvalidated")["nonce"])
