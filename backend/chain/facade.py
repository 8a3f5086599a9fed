"""What every typed contract facade shares: its address, calls, transactions and the events of a receipt."""

from __future__ import annotations

from typing import Any, ClassVar

from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.logs import DISCARD
from web3.types import TxReceipt

from backend.chain.abi import struct_from_abi, struct_to_abi
from backend.chain.client import ChainClient
from backend.chain.errors import ChainError, ContractErrors
from backend.eip712 import Eip712Domain, typed_data

__all__ = ["ContractFacade"]


class ContractFacade:
    """Base of `TrainingMarket`, `SourceRegistry`, ...: the deployed contract (or the one at `address`).

    `errors` holds the contract's revert classes by name (`TrainingMarket.errors.NotRegistered`), so a caller
    catches one contract's error, never a namesake of another's.
    """

    contract_name: ClassVar[str]
    errors: ClassVar[ContractErrors]

    def __init_subclass__(cls, **kwargs: Any):
        super().__init_subclass__(**kwargs)
        if "contract_name" in cls.__dict__:
            cls.errors = ContractErrors(cls.contract_name)

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

    def _abi_item(self, kind: str, name: str) -> dict[str, Any]:
        for item in self.client.artifacts.abi(self.contract_name):
            if item.get("type") == kind and item.get("name") == name:
                return item
        raise ChainError(f"{self.contract_name} has no {kind} {name!r} in its compiled ABI")

    def _struct(self, cls: type, fn: str, value: Any, **extra: Any) -> Any:
        """`cls` from what view `fn` returns: its one struct output, or its several outputs (a public getter)."""
        outputs = self._abi_item("function", fn)["outputs"]
        components = outputs[0]["components"] if len(outputs) == 1 else outputs
        return struct_from_abi(cls, components, value, **extra)

    def _struct_arg(self, fn: str, obj: Any, index: int = 0) -> tuple:
        """The struct argument `index` of `fn`, encoded from the dataclass `obj`."""
        return struct_to_abi(obj, self._abi_item("function", fn)["inputs"][index]["components"])

    def _typed_data(
        self, domain: tuple[str, str], encoded_type: str, message: dict[str, Any]
    ) -> dict[str, Any]:
        """An EIP-712 payload of struct `encoded_type` under this contract's EIP712(name, version) `domain`."""
        name, version = domain
        return typed_data(
            Eip712Domain(name, version, self.client.chain_id, self.address), encoded_type, message
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
