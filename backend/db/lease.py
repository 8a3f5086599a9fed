"""A named lease in the database: at most one holder at a time across threads, processes and hosts.

One statement takes it (an upsert that succeeds only if the lease is free, expired, or ours already), on SQLite
and PostgreSQL alike, so two workers that race for it cannot both win. A holder that dies keeps it only until it
expires; one that finishes releases it at once.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Callable

from sqlalchemy import Engine, Float, String, text
from sqlalchemy.orm import Mapped, mapped_column

from backend.db import Base, create_all

__all__ = ["DatabaseLease", "LeaseRow"]


class LeaseRow(Base):
    __tablename__ = "db_leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128))
    expires_at: Mapped[float] = mapped_column(Float)


_TAKE = text(
    "INSERT INTO db_leases (name, holder, expires_at) VALUES (:name, :holder, :until) "
    "ON CONFLICT (name) DO UPDATE SET holder = :holder, expires_at = :until "
    "WHERE db_leases.expires_at <= :now OR db_leases.holder = :holder RETURNING holder"
)
_GIVE_BACK = text("UPDATE db_leases SET expires_at = 0 WHERE name = :name AND holder = :holder")


class DatabaseLease:
    """The lease `name` for `ttl_s` seconds at a time; `holder` names this process (host, pid, a random tag)."""

    def __init__(
        self, engine: Engine, name: str, ttl_s: float, *, clock: Callable[[], float] = time.time
    ) -> None:
        if not ttl_s > 0:
            raise ValueError("a lease needs a positive ttl")
        create_all(engine)
        self._engine = engine
        self.name = name
        self.ttl_s = ttl_s
        self._clock = clock
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    def acquire(self) -> bool:
        """Take (or extend) the lease; False if someone else holds it."""
        now = self._clock()
        with self._engine.begin() as conn:
            row = conn.execute(
                _TAKE, {"name": self.name, "holder": self.holder, "until": now + self.ttl_s, "now": now}
            ).first()
        return row is not None

    def release(self) -> None:
        with self._engine.begin() as conn:
            conn.execute(_GIVE_BACK, {"name": self.name, "holder": self.holder})
