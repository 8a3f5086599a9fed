"""Rate limits and quotas per wallet and tier, kept in the database so they survive restarts and span workers.

Two fixed windows per wallet: requests per UTC minute, and cost units per UTC day (each endpoint has a cost).
The database holds, per wallet and window, how much has been reserved; a worker reserves in blocks (a lease)
with one atomic statement (`... SET used = used + n WHERE used + n <= limit`) and spends a block in memory, so
most requests touch no database at all while the limit still holds across workers and restarts: nothing is
ever spent that was not reserved first. When a block cannot be had, the worker asks for exactly what the
request needs, so a single worker refuses at exactly the limit (several workers may refuse up to one block
early, never late). Unspent reservations are handed back on shutdown.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Engine, text

from backend.api.core.config import TierPolicy
from backend.api.core.errors import TooManyRequests

__all__ = ["DAY", "MINUTE", "QuotaBook", "Usage"]

MINUTE = "minute"
DAY = "day"
_SPAN = {MINUTE: 60, DAY: 86_400}
# A lease is this fraction of the window's limit: few writes per window, little held back from other workers.
_LEASE_FRACTION = 0.02

# One statement per reservation, on SQLite and PostgreSQL alike; no row back means the limit would be passed.
_RESERVE = text(
    'INSERT INTO api_usage (wallet, "window", window_start, used) VALUES (:wallet, :window, :start, :amount) '
    'ON CONFLICT (wallet, "window", window_start) DO UPDATE SET used = api_usage.used + :amount '
    "WHERE api_usage.used + :amount <= :limit RETURNING used"
)
_RELEASE = text(
    "UPDATE api_usage SET used = used - :amount "
    'WHERE wallet = :wallet AND "window" = :window AND window_start = :start AND used >= :amount'
)
_USED = text(
    'SELECT used FROM api_usage WHERE wallet = :wallet AND "window" = :window AND window_start = :start'
)
_PRUNE = text(
    "DELETE FROM api_usage WHERE (\"window\" = 'minute' AND window_start < :minutes) OR window_start < :days"
)


@dataclass(frozen=True)
class Usage:
    minute_used: int
    minute_limit: int
    day_used: int
    day_limit: int
    day_resets_at: int


@dataclass
class _Lease:
    reserved: int = 0  # reserved in the database by this worker, this window
    spent: int = 0

    @property
    def left(self) -> int:
        return self.reserved - self.spent


class QuotaBook:
    def __init__(self, engine: Engine, *, clock: Callable[[], float] = time.time):
        self._engine = engine
        self._clock = clock
        self._leases: dict[tuple[str, str, int], _Lease] = {}
        self._lock = threading.Lock()
        # SQLite has one writer at a time; queueing in-process is cheaper than its busy-wait retries.
        self._write_lock = threading.Lock()

    def try_local(self, wallet: str, cost: int) -> bool:
        """Admit from this worker's leases without any I/O; False if a reservation is needed first."""
        now = self._clock()
        keys = _keys(wallet, now)
        with self._lock:
            minute, day = self._leases.get(keys[0]), self._leases.get(keys[1])
            if minute is None or day is None or minute.left < 1 or day.left < cost:
                return False
            minute.spent += 1
            day.spent += cost
        return True

    def consume(self, wallet: str, policy: TierPolicy, cost: int) -> None:
        """Count one request costing `cost` units, or raise `TooManyRequests` and count nothing (may block)."""
        now = self._clock()
        keys = _keys(wallet, now)
        with self._write_lock:
            self._ensure(keys[0], 1, policy.requests_per_minute, now, policy)
            try:
                self._ensure(keys[1], cost, policy.daily_units, now, policy)
            except TooManyRequests:
                with self._lock:
                    self._leases[keys[0]].spent -= 1  # the minute's request is not counted either
                raise

    def refund(self, wallet: str, cost: int) -> None:
        """Give back what an admitted request was charged (it was refused later, e.g. 503 busy): the units
        return to this worker's lease, so nothing is written and the limit still holds."""
        keys = _keys(wallet, self._clock())
        with self._lock:
            for key, amount in zip(keys, (1, cost), strict=True):
                lease = self._leases.get(key)
                if lease is not None:
                    lease.spent = max(0, lease.spent - amount)

    def usage(self, wallet: str, policy: TierPolicy) -> Usage:
        """What the wallet has used: the database's count less what this worker holds unspent."""
        now = self._clock()
        keys = _keys(wallet, now)
        used = []
        with self._engine.connect() as conn:
            for key in keys:
                stored = conn.execute(_USED, _params(key)).scalar() or 0
                with self._lock:
                    lease = self._leases.get(key)
                    used.append(int(stored) - (lease.left if lease else 0))
        return Usage(
            used[0], policy.requests_per_minute, used[1], policy.daily_units, keys[1][2] + _SPAN[DAY]
        )

    def release(self) -> None:
        """Hand unspent reservations back (on shutdown), so a restart charges nobody for them."""
        with self._write_lock, self._lock, self._engine.begin() as conn:
            for key, lease in self._leases.items():
                if lease.left > 0:
                    conn.execute(_RELEASE, {**_params(key), "amount": lease.left})
                    lease.reserved = lease.spent
            self._leases.clear()

    def prune(self) -> int:
        """Drop counters of windows that have ended (minutes after an hour, days after two days)."""
        now = self._clock()
        with self._lock:
            for key in [k for k in self._leases if k[2] + _SPAN[k[1]] < now]:
                del self._leases[key]
        with self._write_lock, self._engine.begin() as conn:
            return conn.execute(_PRUNE, {"minutes": now - 3600, "days": now - 172_800}).rowcount or 0

    def _ensure(
        self, key: tuple[str, str, int], amount: int, limit: int, now: float, policy: TierPolicy
    ) -> None:
        """Spend `amount` from the lease of `key`, reserving more first if it is short."""
        with self._lock:
            lease = self._leases.setdefault(key, _Lease())
            if lease.left >= amount:
                lease.spent += amount
                return
            shortfall = amount - lease.left
        block = max(shortfall, int(limit * _LEASE_FRACTION))
        # A block if the window has room for one, else exactly the shortfall: one worker refuses exactly at the limit.
        granted = self._reserve(key, block, limit) if block > shortfall else 0
        if not granted:
            granted = self._reserve(key, shortfall, limit)
        if not granted:
            window = key[1]
            raise TooManyRequests(
                f"rate limit: {policy.requests_per_minute} requests per minute for tier {policy.name!r}"
                if window == MINUTE
                else f"daily quota: {policy.daily_units} units for tier {policy.name!r}; this call costs {amount}",
                retry_after=max(1, int(key[2] + _SPAN[window] - now + 0.999)),
                kind="rate-limited" if window == MINUTE else "quota-exceeded",
            )
        with self._lock:
            lease.reserved += granted
            lease.spent += amount

    def _reserve(self, key: tuple[str, str, int], amount: int, limit: int) -> int:
        if amount > limit:
            return 0
        with self._engine.begin() as conn:
            row = conn.execute(_RESERVE, {**_params(key), "amount": amount, "limit": limit}).first()
        return amount if row is not None else 0


def _keys(wallet: str, now: float) -> tuple[tuple[str, str, int], tuple[str, str, int]]:
    return (wallet, MINUTE, int(now // 60 * 60)), (wallet, DAY, int(now // 86_400 * 86_400))


def _params(key: tuple[str, str, int]) -> dict[str, object]:
    return {"wallet": key[0], "window": key[1], "start": key[2]}
