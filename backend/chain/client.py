"""One typed entry point to the chain: web3.py over HTTP, contracts from Ape's artifacts and the deployments file.

Typed facades per contract (`backend.chain.training_market`, ...) build on `ChainClient.call`, `transact` and
`events`; reverts come back as `ContractRevert` subclasses named after the contract's custom errors.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

import requests
from eth_account.signers.local import LocalAccount
from hexbytes import HexBytes
from web3 import Web3
from web3.contract import Contract
from web3.exceptions import (
    ContractCustomError,
    ContractLogicError,
    ContractPanicError,
    TimeExhausted,
    Web3RPCError,
)
from web3.types import BlockIdentifier, EventData, TxParams, TxReceipt

from backend.chain.artifacts import Artifacts
from backend.chain.deployments import Deployments
from backend.chain.errors import (
    ChainError,
    ChainUnavailable,
    NotDeployed,
    TransactionFailed,
    WrongChain,
)
from backend.settings import Settings

__all__ = ["GAS_MARGIN", "ChainClient"]

# The estimate runs against the latest block, the transaction in the next one, where storage writes can cost more
# (a slot written in the same second, a timestamp that moved) and gas-reserve checks (TrainingMarket's committee
# calls) then fail short of their threshold. Unused gas is refunded, so a margin costs nothing.
GAS_MARGIN = 1.25


def _with_margin(estimate: int) -> int:
    return int(estimate * GAS_MARGIN)


_CONNECTION_ERRORS = (
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
    ConnectionError,
    OSError,
)


class ChainClient:
    """A connection to one node and the project's contracts on it."""

    def __init__(
        self,
        url: str,
        artifacts: Artifacts,
        deployments: Deployments | None = None,
        *,
        expected_chain_id: int | None = None,
        tx_timeout: float = 60.0,
        request_timeout: float = 10.0,
    ):
        self.url = url
        self.artifacts = artifacts
        self.deployments = deployments
        self.tx_timeout = tx_timeout
        self.w3 = Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": request_timeout}))
        self._expected_chain_id = expected_chain_id
        self._chain_id: int | None = None
        self._contracts: dict[tuple[str, str], Contract] = {}
        self._send_lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings, *, require_deployments: bool = True) -> ChainClient:
        """A client for the configured node, contracts and deployments (checked on first use)."""
        artifacts = Artifacts.load(settings.artifacts_path)
        deployments: Deployments | None = None
        if require_deployments or settings.deployments_file.exists():
            deployments = Deployments.load(settings.deployments_file)
        return cls(
            settings.chain_url,
            artifacts,
            deployments,
            expected_chain_id=settings.chain_id or (deployments.chain_id if deployments else None),
            tx_timeout=settings.tx_timeout,
        )

    # -- connection -------------------------------------------------------------------------------------------

    @property
    def chain_id(self) -> int:
        """The node's chain id, checked against the expected one on first use."""
        if self._chain_id is None:
            chain_id = self._rpc(lambda: self.w3.eth.chain_id)
            if self._expected_chain_id is not None and chain_id != self._expected_chain_id:
                raise WrongChain(
                    f"the node at {self.url} serves chain {chain_id}, expected {self._expected_chain_id}"
                )
            self._chain_id = chain_id
        return self._chain_id

    def check(self) -> int:
        """Raise unless the node answers with the expected chain and every deployed contract has code there."""
        chain_id = self.chain_id
        if self.deployments is not None:
            for name in self.deployments.contracts:
                self.contract(name)
        return chain_id

    def block_number(self) -> int:
        return self._rpc(lambda: self.w3.eth.block_number)

    def timestamp(self, block: BlockIdentifier = "latest") -> int:
        return int(self._rpc(lambda: self.w3.eth.get_block(block)["timestamp"]))

    def balance(self, address: str) -> int:
        return int(self._rpc(lambda: self.w3.eth.get_balance(Web3.to_checksum_address(address))))

    def _rpc(self, thunk):
        try:
            return thunk()
        except _CONNECTION_ERRORS as exc:
            raise ChainUnavailable(f"cannot reach the chain at {self.url}: {type(exc).__name__}") from None

    # -- contracts --------------------------------------------------------------------------------------------

    def address_of(self, name: str) -> str:
        if self.deployments is None:
            raise NotDeployed(f"no deployments loaded: cannot find {name}; run `trustmarket chain deploy`")
        if self.deployments.chain_id != self.chain_id:
            raise WrongChain(
                f"deployments are for chain {self.deployments.chain_id}, the node serves chain {self.chain_id}"
            )
        return self.deployments.address(name)

    def contract(self, name: str, address: str | None = None) -> Contract:
        """The web3 contract `name` at `address` (default: the deployed one), after checking code is there."""
        address = Web3.to_checksum_address(address or self.address_of(name))
        key = (name, address)
        if key not in self._contracts:
            code = self._rpc(lambda: self.w3.eth.get_code(address))
            if not code:
                raise NotDeployed(f"no contract code at {address} ({name}) on chain {self.chain_id}")
            self._contracts[key] = self.w3.eth.contract(address=address, abi=self.artifacts.abi(name))
        return self._contracts[key]

    def call(
        self, name: str, fn: str, *args: Any, address: str | None = None, block: int | str = "latest"
    ) -> Any:
        """A read-only call; reverts raise the contract's custom error."""
        function = getattr(self.contract(name, address).functions, fn)(*args)
        return self._with_decoded_reverts(name, lambda: function.call(block_identifier=block))

    def simulate(self, name: str, data: bytes, *, sender: str, address: str | None = None) -> bytes:
        """Run calldata `data` against contract `name` as `sender` without sending it (eth_call at the latest
        block): what a transaction would return, or the contract's custom error it would revert with."""
        to = Web3.to_checksum_address(address or self.address_of(name))
        call: TxParams = {"to": to, "from": Web3.to_checksum_address(sender), "data": bytes(data)}
        return bytes(self._with_decoded_reverts(name, lambda: self.w3.eth.call(call)))

    # -- transactions -----------------------------------------------------------------------------------------

    def transact(
        self,
        account: LocalAccount,
        name: str,
        fn: str,
        *args: Any,
        value: int = 0,
        address: str | None = None,
        gas: int | None = None,
    ) -> TxReceipt:
        """Sign with `account`, send, wait for the receipt; a revert raises the contract's custom error."""
        function = getattr(self.contract(name, address).functions, fn)(*args)
        params: dict[str, Any] = {"from": account.address, "value": value, "chainId": self.chain_id}
        if gas is not None:
            params["gas"] = gas
        with self._send_lock:
            # Estimating gas simulates the call, so a revert surfaces here with its data, before anything is sent.
            tx = self._with_decoded_reverts(name, lambda: function.build_transaction(params))
            if gas is None:
                tx["gas"] = _with_margin(tx["gas"])
            tx["nonce"] = self._rpc(lambda: self.w3.eth.get_transaction_count(account.address, "pending"))
            signed = account.sign_transaction(tx)
            tx_hash = self._rpc(lambda: self.w3.eth.send_raw_transaction(signed.raw_transaction))
        return self._wait(name, tx_hash, replay=lambda: function.call({**params, "gas": tx["gas"]}))

    def deploy(self, account: LocalAccount, name: str, *args: Any, value: int = 0) -> TxReceipt:
        """Deploy `name` from the artifacts; the receipt's `contractAddress` is the new address."""
        factory = self.w3.eth.contract(abi=self.artifacts.abi(name), bytecode=self.artifacts.bytecode(name))
        params = {"from": account.address, "value": value, "chainId": self.chain_id}
        with self._send_lock:
            tx = self._with_decoded_reverts(
                name, lambda: factory.constructor(*args).build_transaction(params)
            )
            tx["nonce"] = self._rpc(lambda: self.w3.eth.get_transaction_count(account.address, "pending"))
            signed = account.sign_transaction(tx)
            tx_hash = self._rpc(lambda: self.w3.eth.send_raw_transaction(signed.raw_transaction))
        return self._wait(name, tx_hash, replay=None)

    def _wait(self, name: str, tx_hash: HexBytes, replay) -> TxReceipt:
        try:
            receipt = self._rpc(
                lambda: self.w3.eth.wait_for_transaction_receipt(
                    tx_hash, timeout=self.tx_timeout, poll_latency=0.05
                )
            )
        except TimeExhausted:
            raise TransactionFailed(f"no receipt for {tx_hash.hex()} after {self.tx_timeout:.0f}s") from None
        if receipt["status"] != 1:
            if replay is not None:
                # Re-run as a call at the same state to recover the revert data the receipt does not carry.
                self._with_decoded_reverts(name, replay)
            raise TransactionFailed(
                f"{name}: transaction {tx_hash.hex()} reverted (gas used {receipt['gasUsed']})"
            )
        return receipt

    def _with_decoded_reverts(self, name: str, thunk):
        try:
            return self._rpc(thunk)
        except (ContractCustomError, ContractLogicError, ContractPanicError) as exc:
            data = exc.data if isinstance(exc.data, str) else getattr(exc, "message", None)
            decoded = self.artifacts.decode_revert(data, contract=name) if isinstance(data, str) else None
            if decoded is not None and data and data.startswith("0x"):
                raise decoded from None
            raise TransactionFailed(f"{name} reverted: {exc.message or exc}") from None
        except Web3RPCError as exc:
            raise ChainError(f"{name}: the node refused the transaction: {exc.message or exc}") from None

    # -- events -----------------------------------------------------------------------------------------------

    def events(
        self,
        name: str,
        event: str,
        *,
        from_block: int | None = None,
        to_block: int | str = "latest",
        filters: Mapping[str, Any] | None = None,
        address: str | None = None,
    ) -> Sequence[EventData]:
        """Decoded logs of `event` by block range (default: from the deployment block to the head)."""
        if from_block is None:
            from_block = self.deployments.first_block if self.deployments else 0
        event_type = getattr(self.contract(name, address).events, event)
        return self._rpc(
            lambda: event_type.get_logs(
                from_block=from_block, to_block=to_block, argument_filters=dict(filters or {})
            )
        )

    def all_events(
        self, name: str, *, from_block: int, to_block: BlockIdentifier = "latest", address: str | None = None
    ) -> list[EventData]:
        """Every decoded event of contract `name` in a block range, in chain order, in one `eth_getLogs` (an
        indexer's read: one request per range instead of one per event type). Logs the ABI does not know are
        skipped."""
        contract = self.contract(name, address)
        return self.contracts_events({contract.address: name}, from_block=from_block, to_block=to_block)

    def contracts_events(
        self, contracts: Mapping[str, str], *, from_block: int, to_block: BlockIdentifier = "latest"
    ) -> list[EventData]:
        """`all_events` of several deployed contracts (address -> contract name) in one `eth_getLogs`, in chain
        order, each log decoded by the ABI of the contract at its address."""
        bound = {Web3.to_checksum_address(a): self.contract(n, a) for a, n in contracts.items()}
        if not bound:
            return []
        logs = self._rpc(
            lambda: self.w3.eth.get_logs(
                {"address": list(bound), "fromBlock": from_block, "toBlock": to_block}
            )
        )
        decoded: list[EventData] = []
        for log in logs:
            topics = log.get("topics") or []
            contract = bound.get(Web3.to_checksum_address(log["address"]))
            if not topics or contract is None:
                continue
            try:
                event = contract.get_event_by_topic(topics[0].to_0x_hex())
            except ValueError:  # another contract's event at this address (a proxy), or an anonymous one
                continue
            decoded.append(event.process_log(log))
        return decoded
