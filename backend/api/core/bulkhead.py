"""Per-route bulkheads: a route family (dRAG queries, model queries) gets at most `limit` requests in progress in
a worker and `queue` more waiting; beyond that it answers 503 `busy` with Retry-After at once.

Waiting holds no thread (a future on the event loop), so a flood of slow queries cannot take the thread pool
and the event loop from the cheap routes; and the queue is bounded, so a flood is refused rather than
buffered until every request times out. A refused request gets its quota charge back.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from backend.api.core.errors import ServiceUnavailable

__all__ = ["Bulkhead"]


class Bulkhead:
    """A counting limit with a bounded FIFO of waiters, for coroutines on one event loop."""

    def __init__(self, name: str, limit: int, queue: int):
        if limit < 1 or queue < 0:
            raise ValueError("a bulkhead needs limit >= 1 and queue >= 0")
        self.name = name
        self.limit = limit
        self.queue = queue
        self.in_progress = 0
        self.refused = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    @asynccontextmanager
    async def slot(self, on_refused: Callable[[], None] | None = None) -> AsyncIterator[None]:
        """Hold one slot for the body of the `async with`; 503 `busy` if the queue is full."""
        await self._acquire(on_refused)
        try:
            yield
        finally:
            self._release()

    async def _acquire(self, on_refused: Callable[[], None] | None) -> None:
        if self.in_progress < self.limit and not self._waiters:
            self.in_progress += 1
            return
        if len(self._waiters) >= self.queue:
            self.refused += 1
            if on_refused is not None:
                on_refused()
            raise ServiceUnavailable(
                f"{self.limit} {self.name} requests are in progress and {self.queue} waiting; retry shortly",
                kind="busy",
                headers={"Retry-After": "1"},
            )
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter  # a releasing request hands its slot over (in_progress stays counted)
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._release()  # handed a slot just as the client went away: pass it on
            else:
                self._waiters.remove(waiter)
            raise

    def _release(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self.in_progress -= 1
