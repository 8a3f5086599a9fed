"""Rate limits and quotas per wallet and tier, kept in the database so they survive restarts and span workers.

Two fixed windows per wallet: requests per UTC minute, and cost units per UTC day (each endpoint has a cost).
A request is admitted by one transaction that checks and increments both counters
(`UPDATE ... SET used = used + n WHERE used + n <= limit`), so concurrent requests can never overspend; when
either window is full the request is refused with the seconds until that window ends (`Retry-After`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from backend.api.core.config import TierPolicy
from backend.api.core.errors import TooManyRequests
from backend.api.core.tables import UsageCounter
from backend.db import session_scope

__all__ = ["DAY", "MINUTE", "QuotaBook", "Usage"]

MINUTE = "minute"
DAY = "day"
_SPAN = {MINUTE: 60, DAY: 86_400}


@dataclass(frozen=True)
class Usage:
    minute_used: int
    minute_limit: int
    day_used: int
    day_limit: int
    day_resets_at: int


class QuotaBook:
    def __init__(self, sessions: sessionmaker[Session], *, clock: Callable[[], float] = time.time):
        self._sessions = sessions
        self._clock = clock
        # SQLite has one writer at a time; queueing in-process is cheaper than its busy-wait retries.
        self._write_lock = threading.Lock()

    def consume(self, wallet: str, policy: TierPolicy, cost: int) -> Usage:
        """Count one request costing `cost` units, or raise `TooManyRequests` and count nothing."""
        now = self._clock()
        minute, day = _start(now, MINUTE), _start(now, DAY)
        with self._write_lock, session_scope(self._sessions) as session:
            minute_used = self._take(session, wallet, MINUTE, minute, 1, policy.requests_per_minute)
            if minute_used is None:
                session.rollback()
                raise TooManyRequests(
                    f"rate limit: {policy.requests_per_minute} requests per minute for tier {policy.name!r}",
                    retry_after=_retry_after(now, minute, MINUTE),
                    kind="rate-limited",
                )
            day_used = self._take(session, wallet, DAY, day, cost, policy.daily_units)
            if day_used is None:
                session.rollback()  # the minute's request is not counted either
                raise TooManyRequests(
                    f"daily quota: {policy.daily_units} units for tier {policy.name!r}; this call costs {cost}",
                    retry_after=_retry_after(now, day, DAY),
                    kind="quota-exceeded",
                )
        return Usage(minute_used, policy.requests_per_minute, day_used, policy.daily_units, day + _SPAN[DAY])

    def usage(self, wallet: str, policy: TierPolicy) -> Usage:
        now = self._clock()
        minute, day = _start(now, MINUTE), _start(now, DAY)
        with session_scope(self._sessions) as session:
            minute_used = self._used(session, wallet, MINUTE, minute)
            day_used = self._used(session, wallet, DAY, day)
        return Usage(minute_used, policy.requests_per_minute, day_used, policy.daily_units, day + _SPAN[DAY])

    def prune(self) -> int:
        """Drop counters of windows that have ended (minutes after an hour, days after two days)."""
        now = self._clock()
        with self._write_lock, session_scope(self._sessions) as session:
            gone = session.execute(
                delete(UsageCounter).where(
                    UsageCounter.window == MINUTE, UsageCounter.window_start < now - 3600
                )
            ).rowcount
            gone += session.execute(
                delete(UsageCounter).where(
                    UsageCounter.window == DAY, UsageCounter.window_start < now - 172_800
                )
            ).rowcount
        return gone or 0

    @staticmethod
    def _used(session: Session, wallet: str, window: str, start: int) -> int:
        used = session.scalar(
            select(UsageCounter.used).where(
                UsageCounter.wallet == wallet,
                UsageCounter.window == window,
                UsageCounter.window_start == start,
            )
        )
        return int(used or 0)

    @staticmethod
    def _take(session: Session, wallet: str, window: str, start: int, amount: int, limit: int) -> int | None:
        """Add `amount` if it fits under `limit`; the new total, or None if it does not fit."""
        key = (
            UsageCounter.wallet == wallet,
            UsageCounter.window == window,
            UsageCounter.window_start == start,
        )
        dialect = session.get_bind().dialect.name
        values = {"wallet": wallet, "window": window, "window_start": start, "used": 0}
        if dialect in ("sqlite", "postgresql"):
            insert = (sqlite if dialect == "sqlite" else postgresql).insert(UsageCounter)
            session.execute(insert.values(**values).on_conflict_do_nothing())
        elif session.scalar(select(UsageCounter.used).where(*key)) is None:
            session.add(UsageCounter(**values))
            session.flush()
        result = session.execute(
            update(UsageCounter)
            .where(*key, UsageCounter.used + amount <= limit)
            .values(used=UsageCounter.used + amount)
            .returning(UsageCounter.used)
        )
        row = result.first()
        return None if row is None else int(row[0])


def _start(now: float, window: str) -> int:
    span = _SPAN[window]
    return int(now // span * span)


def _retry_after(now: float, start: int, window: str) -> int:
    return max(1, int(start + _SPAN[window] - now + 0.999))
