"""What every typed contract facade shares: its address, calls, transactions and the events of a receipt."""

from __future__ import annotations

from typing import Any, ClassVar

from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.logs import DISCARD
from web3.types import TxReceipt

from backend.chain.client import ChainClient
from backend.chain.errors import ChainError

__all__ = ["ContractFacade", "typed_data"]

_EIP712_DOMAIN = [
    {"name": "name", "type": "string"},
    {"name": "version", "type": "string"},
    {"name": "chainId", "type": "uint256"},
    {"name": "verifyingContract", "type": "address"},
]


class ContractFacade:
    """Base of `TrainingMarket`, `SourceRegistry`, ...: the deployed contract (or the one at `address`)."""

    contract_name: ClassVar[str]

    def __init__(self, client: ChainClient, address: str | None = None):
        self.client = client
        self._address = address

    @property
    def address(self) -> str:
        return Web3.to_checksum_address(self._address or self.client.address_of(self.contract_name))

    def _call(self, fn: str, *args: Any) -> Any:
        return self.client.call(self.contract_name, fn, *args, address=self._address)

    def _transact(self, account: LocalAccount, fn: str, *args: Any, value: int = 0) -> TxReceipt:
        return self.client.transact(
            account, self.contract_name, fn, *args, value=value, address=self._address
        )

    def _event(self, receipt: TxReceipt, name: str) -> Any:
        """The arguments of the first `name` event in `receipt` (its other events are skipped, not errors)."""
        contract = self.client.contract(self.contract_name, self._address)
        logs = getattr(contract.events, name)().process_receipt(receipt, errors=DISCARD)
        if not logs:
            raise ChainError(
                f"{self.contract_name}: transaction {receipt['transactionHash'].to_0x_hex()} emitted no {name}"
            )
        return logs[0]["args"]


def typed_data(
    client: ChainClient,
    address: str,
    domain: tuple[str, str],
    types: dict[str, Any],
    primary_type: str,
    message: dict[str, Any],
) -> dict[str, Any]:
    """An EIP-712 payload (eth_signTypedData_v4 layout) under the domain (name, version) of the contract at
    `address` on `client`'s chain."""
    name, version = domain
    return {
        "types": {"EIP712Domain": _EIP712_DOMAIN, **types},
        "primaryType": primary_type,
        "domain": {
            "name": name,
            "version": version,
            "chainId": client.chain_id,
            "verifyingContract": address,
        },
        "message": message,
    }
