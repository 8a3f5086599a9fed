"""The audit log: one row per request (who, route, scope, decision, cost, status), written off the request path.

Requests hand their entry to a queue; one thread writes the queue in batches, so a request never waits on the
database for its audit row and a burst costs one transaction per batch. `flush()` waits until everything queued
so far is written (tests, shutdown).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

from sqlalchemy import insert
from sqlalchemy.orm import Session, sessionmaker

from backend.api.core.tables import AuditEntry
from backend.db import session_scope

__all__ = ["AuditLog", "AuditRecord"]

log = logging.getLogger("trustmarket.api.audit")
_BATCH = 500


@dataclass
class AuditRecord:
    at: float
    wallet: str | None
    method: str
    path: str
    scope: str | None
    decision: str
    reason: str | None
    cost: int
    status: int
    tier: int | None


class AuditLog:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        flush_interval_s: float = 0.2,
        maintenance: Callable[[], None] | None = None,
        maintenance_every_s: float = 300.0,
    ):
        self._sessions = sessions
        self._queue: queue.Queue[AuditRecord | None] = queue.Queue()
        self._interval = flush_interval_s
        self._maintenance = maintenance
        self._maintenance_every = maintenance_every_s
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.failures = 0

    def record(self, entry: AuditRecord) -> None:
        self._queue.put(entry)
        self._ensure_started()

    def flush(self) -> None:
        """Block until every entry recorded before this call is in the database (or failed and counted)."""
        self._ensure_started()
        self._queue.join()

    def close(self) -> None:
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join(timeout=10)

    def _ensure_started(self) -> None:
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
                    self._thread.start()

    def _run(self) -> None:
        last_maintenance = time.monotonic()
        stop = False
        while not stop:
            batch: list[AuditRecord] = []
            taken = 0
            try:
                first = self._queue.get(timeout=self._interval)
                taken = 1
            except queue.Empty:
                pass  # nothing queued: a chance for maintenance
            if taken and first is None:
                stop = True
            elif taken and first is not None:
                batch.append(first)
                while len(batch) < _BATCH:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    taken += 1
                    if item is None:
                        stop = True
                        break
                    batch.append(item)
            if batch:
                self._write(batch)
            for _ in range(taken):
                self._queue.task_done()
            if self._maintenance and time.monotonic() - last_maintenance > self._maintenance_every:
                last_maintenance = time.monotonic()
                try:
                    self._maintenance()
                except Exception:  # housekeeping must never kill the writer
                    log.exception("audit writer: maintenance failed")

    def _write(self, batch: list[AuditRecord]) -> None:
        try:
            with session_scope(self._sessions) as session:
                session.execute(insert(AuditEntry), [asdict(e) for e in batch])
        except Exception:
            # The request already got its answer; losing audit rows must be loud, never silent.
            self.failures += len(batch)
            log.exception("audit writer: could not write %d entries", len(batch))
