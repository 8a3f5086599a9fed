"""Chain reads pinned to one block per request and cached by that block: one head lookup, then cached reads.

A server answers many requests from state that changes once per block. Inside `pinned_reads()` (the API opens
one per request) the first read asks the node for the head block (number and hash) and every read of the
request is made at that block, through a cache keyed by the block's hash: in steady state a request costs one
RPC, however many contract reads it makes, and all of them see one consistent state. Keyed by hash, a reorg
(or anvil's `evm_revert`) never serves one branch's values to a request pinned to another. With `head_ttl_s` > 0 the head is reused across
requests for that long (for a rate-limited hosted node); a transaction sent through this client moves the head
to its block at once, so a worker reads its own writes. Outside a pin, reads go to the node's latest state.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, NamedTuple

from eth_account.signers.local import LocalAccount
from hexbytes import HexBytes
from web3 import Web3
from web3.types import EventData, TxReceipt

from backend.chain.client import ChainClient
from backend.chain.errors import ChainError

__all__ = ["BlockCachedClient", "BlockHead", "pinned_reads"]


class BlockHead(NamedTuple):
    """The block reads are made at: its number, 0x hash and timestamp."""

    number: int
    hash: str
    timestamp: int


@dataclass
class _Pin:
    head: BlockHead | None = None  # once the request's first read asked


_PIN: ContextVar[_Pin | None] = ContextVar("trustmarket_chain_pin", default=None)


@contextmanager
def pinned_reads() -> Iterator[None]:
    """Reads in this context (threads started from it included) are made at one block, fetched on first use."""
    token = _PIN.set(_Pin())
    try:
        yield
    finally:
        _PIN.reset(token)


class BlockCachedClient(ChainClient):
    """A `ChainClient` whose reads inside `pinned_reads()` are made at the pinned block and cached by its hash."""

    def __init__(
        self,
        inner: ChainClient,
        *,
        head_ttl_s: float = 0.0,
        max_entries: int = 4096,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        # The same node, deployments and send lock as `inner`, on a connection of its own: web3's validation
        # middleware asks the node for its chain id before every eth_call (two RPCs per read, for a check that
        # only applies to transactions, whose chain id this client sets itself after checking the node's once).
        self.__dict__.update(inner.__dict__)
        timeout = getattr(inner.w3.provider, "_request_kwargs", {}).get("timeout", 10.0)
        self.w3 = Web3(Web3.HTTPProvider(inner.url, request_kwargs={"timeout": timeout}))
        self.w3.middleware_onion.remove("validation")
        self._contracts = {}
        self.head_ttl_s = head_ttl_s
        self._max_entries = max_entries
        self._clock = clock
        self._reads: OrderedDict[tuple, Any] = OrderedDict()
        self._reads_lock = threading.Lock()
        self._shared_head: tuple[float, BlockHead] | None = None
        self.head_lookups = 0

    # -- the head ----------------------------------------------------------------------------------------------

    def pinned_head(self) -> BlockHead:
        """The block this request's reads are pinned to (asked of the node on its first use); outside
        `pinned_reads()`, the node's newest block (one RPC)."""
        pin = _PIN.get()
        return self._head(pin if pin is not None else _Pin())

    def _head(self, pin: _Pin) -> BlockHead:
        if pin.head is None:
            shared = self._shared_head
            if shared is not None and shared[0] > self._clock():
                pin.head = shared[1]
            else:
                block = self._rpc(lambda: self.w3.eth.get_block("latest"))
                self.head_lookups += 1
                pin.head = BlockHead(
                    int(block["number"]), HexBytes(block["hash"]).to_0x_hex(), int(block["timestamp"])
                )
                if self.head_ttl_s > 0:
                    self._shared_head = (self._clock() + self.head_ttl_s, pin.head)
        return pin.head

    def _moved_to(self, receipt: TxReceipt) -> None:
        # Our own transaction is in a newer block: later reads (this request's too) must see it.
        number = int(receipt["blockNumber"])
        pin = _PIN.get()
        if pin is not None and pin.head is not None and pin.head[0] < number:
            pin.head = None
        shared = self._shared_head
        if shared is not None and shared[1][0] < number:
            self._shared_head = None

    # -- reads -------------------------------------------------------------------------------------------------

    def _cached(self, key: tuple, read: Callable[[], Any]) -> Any:
        try:
            hash(key)
        except TypeError:  # an argument that cannot be a key (a list): read through
            return read()
        with self._reads_lock:
            if key in self._reads:
                self._reads.move_to_end(key)
                return self._reads[key]
        value = read()  # outside the lock: a slow node must not stall other readers
        with self._reads_lock:
            self._reads[key] = value
            while len(self._reads) > self._max_entries:
                self._reads.popitem(last=False)
        return value

    def call(
        self, name: str, fn: str, *args: Any, address: str | None = None, block: int | str = "latest"
    ) -> Any:
        pin = _PIN.get()
        if pin is None or block != "latest":
            return super().call(name, fn, *args, address=address, block=block)
        number, block_hash, _ = self._head(pin)

        def read() -> Any:
            try:  # asked by number (a hash makes web3 look the block up first: one more RPC), kept under the hash
                return super(BlockCachedClient, self).call(name, fn, *args, address=address, block=number)
            except ChainError as exc:
                if type(exc) is not ChainError:  # a revert: the contract's answer, not the node's
                    raise
                # anvil may name a head whose state it has not committed yet ("block height is N-1"): latest
                return super(BlockCachedClient, self).call(name, fn, *args, address=address)

        return self._cached(("call", block_hash, name, address, fn, args), read)

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
        pin = _PIN.get()
        if pin is None or to_block != "latest":
            return super().events(
                name, event, from_block=from_block, to_block=to_block, filters=filters, address=address
            )
        number, block_hash, _ = self._head(pin)
        frozen = tuple(sorted((filters or {}).items()))
        return self._cached(
            ("events", block_hash, name, address, event, from_block, frozen),
            lambda: super(BlockCachedClient, self).events(
                name, event, from_block=from_block, to_block=number, filters=filters, address=address
            ),
        )

    # -- writes ------------------------------------------------------------------------------------------------

    def transact(self, account: LocalAccount, name: str, fn: str, *args: Any, **kwargs: Any) -> TxReceipt:
        receipt = super().transact(account, name, fn, *args, **kwargs)
        self._moved_to(receipt)
        return receipt
