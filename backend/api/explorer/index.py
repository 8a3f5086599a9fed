"""What the explorer keeps between requests: every event of a contract, fetched incrementally, and reads
remembered for the block they were made at.

`EventIndex` asks the node only for the blocks it has not seen (one `eth_getLogs` per new range, all of the
contract's events at once), so a page costs the same on block 10 and on block 10 million. A chain that went
backwards (anvil restarted, a snapshot reverted) is indexed again from the deployment block. `BlockMemo`
remembers values derived from the reads of one block (keyed by its hash, so another branch's block at the same
height starts afresh); the raw reads themselves are cached by the API's `BlockCachedClient`. A new block makes
every derived value fresh again, and the old block's values are dropped rather than kept growing.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Callable, Hashable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

from web3 import Web3

from backend.chain.client import ChainClient

__all__ = ["BlockMemo", "ChainEvent", "EventIndex", "sync_together"]


@dataclass(frozen=True)
class ChainEvent:
    """One decoded event: its name, its arguments, and where it sits in the chain."""

    name: str
    args: dict[str, Any]
    block: int
    transaction: str
    log_index: int


class EventIndex:
    """Every event of one deployed contract from `first_block` up to the last block synced."""

    def __init__(self, client: ChainClient, contract: str, address: str, first_block: int = 0):
        self.client, self.contract, self.address = client, contract, address
        self.first_block = first_block
        self._events: list[ChainEvent] = []
        self._blocks: list[int] = []  # each event's block, for bisecting (events come in chain order)
        self._synced = first_block - 1
        self._generation = 0  # counts resets: values derived from an index that went backwards are stale
        self._lock = threading.Lock()

    @property
    def version(self) -> tuple[int, int]:
        """Changes exactly when the contract's state may have: with every event indexed (every state change of
        our contracts emits one) and with every reset. Storage reads keyed by it stay right across blocks."""
        return (self._generation, len(self._events))

    def version_at(self, block: int) -> tuple[int, int]:
        """`version` as of `block` (a request pinned to an older block than the index has seen: its reads are
        that block's state, and must not be remembered as the newer one's)."""
        with self._lock:
            return (self._generation, bisect.bisect_right(self._blocks, block))

    @property
    def synced(self) -> int:
        """The last block indexed (first_block - 1 before the first sync)."""
        return self._synced

    def sync(self, head: int) -> None:
        """Index blocks up to `head` (see `sync_together`)."""
        sync_together([self], head)

    def _absorb(self, logs: list[Any], head: int) -> None:
        for log in logs:
            if int(log["blockNumber"]) <= self._synced:  # fetched for another index further behind
                continue
            self._events.append(
                ChainEvent(
                    str(log["event"]),
                    dict(log["args"]),
                    int(log["blockNumber"]),
                    log["transactionHash"].to_0x_hex(),
                    int(log["logIndex"]),
                )
            )
            self._blocks.append(int(log["blockNumber"]))
        self._synced = head

    def _reset(self) -> None:
        self._events, self._blocks, self._synced = [], [], self.first_block - 1
        self._generation += 1

    def events(self, name: str, **match: Any) -> list[ChainEvent]:
        """Events called `name` whose arguments equal `match` (addresses compared case-insensitively)."""
        wanted = {k: v.lower() if isinstance(v, str) else v for k, v in match.items()}

        def fits(event: ChainEvent) -> bool:
            for key, value in wanted.items():
                got = event.args.get(key)
                if (got.lower() if isinstance(got, str) else got) != value:
                    return False
            return True

        with self._lock:
            return [e for e in self._events if e.name == name and fits(e)]

    def timeline(self, *names: str, until: int | None = None) -> list[ChainEvent]:
        """Events called any of `names` (up to block `until`), in the order the chain holds them."""
        with self._lock:
            return [e for e in self._events if e.name in names and (until is None or e.block <= until)]


def sync_together(indexes: Sequence[EventIndex], head: int) -> None:
    """Index blocks up to `head` in every index (of one node), with one `eth_getLogs` for all that are behind.

    A `head` below what an index holds is a request pinned to an older block (others saw a newer one first), or
    a chain that was reset (anvil restarted, a snapshot reverted): the node's newest block tells which, and a
    reset index starts again from its first block."""
    if not indexes:
        return
    client = indexes[0].client
    with ExitStack() as held:
        for index in sorted(indexes, key=id):  # one order for every caller: no deadlock
            held.enter_context(index._lock)
        newest: int | None = None
        behind = []
        for index in indexes:
            if head < index._synced:
                if newest is None:
                    newest = client.block_number()
                if newest >= index._synced:
                    continue
                index._reset()
            if index._synced < head:
                behind.append(index)
        if not behind:
            return
        logs = client.contracts_events(
            {i.address: i.contract for i in behind},
            from_block=min(i._synced for i in behind) + 1,
            to_block=head,
        )
        for index in behind:
            mine = Web3.to_checksum_address(index.address)
            index._absorb([log for log in logs if Web3.to_checksum_address(log["address"]) == mine], head)


class BlockMemo:
    """Values remembered for one block: `get(block, key, thunk)` computes each key once per block (`block`: any
    key that names one block, its hash where known)."""

    def __init__(self) -> None:
        self._block: Hashable | None = None
        self._values: dict[Hashable, Any] = {}
        self._lock = threading.Lock()

    def get(self, block: Hashable, key: Hashable, thunk: Callable[[], Any]) -> Any:
        with self._lock:
            if block != self._block:
                self._block, self._values = block, {}
            if key in self._values:
                return self._values[key]
        value = thunk()  # outside the lock: a slow read must not hold up the other pages
        with self._lock:
            if block == self._block:
                self._values[key] = value
        return value
