"""A durable feedback queue: deltas go to SQLite (or PostgreSQL) first, then to the chain in epoch-numbered batches.

Nothing is lost on restart: an update is a row until the batch that carries it is confirmed on chain. Before a
batch is sent its intent (epoch, entries) is recorded with the rows it consumes; if the process dies between
sending and recording the receipt, `recover()` looks for that epoch's `FeedbackApplied` event on chain and
either marks the batch applied or returns its rows to the queue, so an update is applied exactly once. Per-source
totals above the contract's `maxDelta` are applied up to the bound and the rest is carried to the next batch.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Mapping

from eth_account.signers.local import LocalAccount
from sqlalchemy import BigInteger, Engine, Float, ForeignKey, Integer, String, func, select
from sqlalchemy.orm import Mapped, mapped_column, sessionmaker

from backend.chain.errors import ChainUnavailable, revert_class
from backend.chain.source_registry import SCALE, FeedbackBatch, FeedbackEntry, SourceRegistry, encode_feedback
from backend.db import Base, create_all, session_scope
from rag.errors import QueueError
from rag.signals import Deltas

__all__ = ["FeedbackQueue", "FlushTimer", "PendingBatch", "PendingUpdate"]

log = logging.getLogger(__name__)

_SENT, _APPLIED, _ABANDONED = "sent", "applied", "abandoned"


class PendingBatch(Base):
    __tablename__ = "rag_feedback_batches"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    epoch: Mapped[int] = mapped_column(BigInteger)
    entries: Mapped[str] = mapped_column(String)  # the packed calldata, hex
    status: Mapped[str] = mapped_column(String(16), index=True)
    created_at: Mapped[float] = mapped_column(Float)
    gas_used: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class PendingUpdate(Base):
    __tablename__ = "rag_feedback_updates"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    query_id: Mapped[str] = mapped_column(String(80), index=True)
    source_id: Mapped[int] = mapped_column(Integer)
    positive: Mapped[int] = mapped_column(Integer)  # fixed-point units (SCALE per observation)
    negative: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[float] = mapped_column(Float)
    batch_id: Mapped[int | None] = mapped_column(
        ForeignKey("rag_feedback_batches.id"), nullable=True, index=True
    )


class FeedbackQueue:
    """Queue deltas per query; flush when `max_queries` queries wait or the oldest waited `max_age` seconds."""

    def __init__(
        self,
        engine: Engine,
        registry: SourceRegistry,
        evaluator: LocalAccount | None,
        *,
        max_queries: int = 10,
        max_age: float = 60.0,
        clock: Callable[[], float] = time.time,
        on_applied: Callable[[FeedbackBatch], None] | None = None,
    ):
        if max_queries < 1 or not (math.isfinite(max_age) and max_age > 0):
            raise QueueError("max_queries must be >= 1 and max_age a positive number of seconds")
        create_all(engine)
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self.registry = registry
        self.evaluator = evaluator
        self.max_queries = max_queries
        self.max_age = max_age
        self.clock = clock
        self.on_applied = on_applied
        self._max_delta: int | None = None
        self.applied: list[FeedbackBatch] = []

    # -- enqueue ---------------------------------------------------------------------------------------------

    def enqueue(self, query_id: str, deltas: Mapping[int, Deltas]) -> int:
        """Store one query's deltas (observations); returns how many rows were written."""
        rows = []
        now = self.clock()
        for source_id, delta in deltas.items():
            for value in (delta.positive, delta.negative):
                if not math.isfinite(value) or value < 0:
                    raise QueueError(f"delta for source {source_id} must be finite and >= 0, got {value}")
            if source_id < 1:
                raise QueueError(f"unknown source id {source_id}")
            positive, negative = round(delta.positive * SCALE), round(delta.negative * SCALE)
            if positive or negative:
                rows.append(PendingUpdate(query_id=query_id, source_id=source_id, positive=positive,
                                          negative=negative, created_at=now))  # fmt: skip
        with session_scope(self._sessions) as session:
            session.add_all(rows)
        return len(rows)

    def pending_queries(self) -> int:
        with session_scope(self._sessions) as session:
            return (
                session.scalar(
                    select(func.count(func.distinct(PendingUpdate.query_id))).where(
                        PendingUpdate.batch_id.is_(None)
                    )
                )
                or 0
            )

    def due(self) -> bool:
        with session_scope(self._sessions) as session:
            oldest = session.scalar(
                select(func.min(PendingUpdate.created_at)).where(PendingUpdate.batch_id.is_(None))
            )
        if oldest is None:
            return False
        return self.pending_queries() >= self.max_queries or self.clock() - oldest >= self.max_age

    def maybe_flush(self) -> FeedbackBatch | None:
        """Flush if due; a queue without an evaluator key only stores (a later `flush` with a key sends)."""
        return self.flush() if self.evaluator is not None and self.due() else None

    # -- flush -----------------------------------------------------------------------------------------------

    def flush(self) -> FeedbackBatch | None:
        """Send everything pending as one batch (up to `maxDelta` per source; the rest is carried)."""
        if self.evaluator is None:
            raise QueueError("no evaluator key: the updates stay queued until a flush with one")
        self.recover()
        if self._max_delta is None:
            self._max_delta = self.registry.max_delta()
        with session_scope(self._sessions) as session:
            rows = session.scalars(select(PendingUpdate).where(PendingUpdate.batch_id.is_(None))).all()
            if not rows:
                return None
            totals: dict[int, list[int]] = defaultdict(lambda: [0, 0])
            for row in rows:
                totals[row.source_id][0] += row.positive
                totals[row.source_id][1] += row.negative
            bound = self._max_delta
            entries = [
                FeedbackEntry(sid, min(p, bound), min(n, bound)) for sid, (p, n) in sorted(totals.items())
            ]
            carry = [(sid, p - min(p, bound), n - min(n, bound)) for sid, (p, n) in sorted(totals.items())]
            epoch = self.registry.epoch() + 1
            batch = PendingBatch(epoch=epoch, entries=encode_feedback(entries).hex(), status=_SENT,
                                 created_at=self.clock())  # fmt: skip
            session.add(batch)
            session.flush()
            for row in rows:
                row.batch_id = batch.id
            for sid, p, n in carry:
                if p or n:  # the part over the bound waits for the next batch, already detached from this one
                    session.add(PendingUpdate(query_id=f"carry:{batch.id}", source_id=sid, positive=p, negative=n,
                                              created_at=self.clock()))  # fmt: skip
            batch_id = batch.id
        return self._send(batch_id, epoch, entries)

    def _send(self, batch_id: int, epoch: int, entries: list[FeedbackEntry]) -> FeedbackBatch:
        assert self.evaluator is not None  # checked by flush
        try:
            applied = self.registry.apply_feedback(self.evaluator, epoch, entries)
        except revert_class("WrongEpoch"):
            # Another evaluator took this epoch: give the rows back; the next flush numbers them afresh.
            self._abandon(batch_id)
            raise QueueError(f"epoch {epoch} was taken by another batch; the updates stay queued") from None
        except ChainUnavailable:
            raise QueueError(
                "the chain is unreachable; the batch is recorded and will be recovered"
            ) from None
        except Exception:
            self._abandon(batch_id)
            raise
        self._mark_applied(batch_id, applied.gas_used)
        self._record(applied)
        return applied

    def _record(self, applied: FeedbackBatch) -> None:
        self.applied.append(applied)
        if self.on_applied is not None:
            self.on_applied(applied)

    def _mark_applied(self, batch_id: int, gas_used: int | None) -> None:
        with session_scope(self._sessions) as session:
            batch = session.get_one(PendingBatch, batch_id)
            batch.status, batch.gas_used = _APPLIED, gas_used

    def _abandon(self, batch_id: int) -> None:
        with session_scope(self._sessions) as session:
            batch = session.get_one(PendingBatch, batch_id)
            batch.status = _ABANDONED
            for row in session.scalars(select(PendingUpdate).where(PendingUpdate.batch_id == batch_id)):
                row.batch_id = None
            # The carried remainder was computed from these rows, which now return whole.
            for row in session.scalars(
                select(PendingUpdate).where(PendingUpdate.query_id == f"carry:{batch_id}")
            ):
                session.delete(row)

    def recover(self) -> None:
        """Settle batches recorded as sent: applied if their epoch's event on chain carries them, else requeued."""
        with session_scope(self._sessions) as session:
            sent = [
                (b.id, b.epoch, b.entries)
                for b in session.scalars(select(PendingBatch).where(PendingBatch.status == _SENT))
            ]
        if not sent:
            return
        on_chain = {b.epoch: b for b in self.registry.feedback_batches()}
        assert self.evaluator is not None  # checked by flush
        for batch_id, epoch, entries in sent:
            found = on_chain.get(epoch)
            if (
                found is not None
                and found.evaluator == self.evaluator.address
                and encode_feedback(found.entries).hex() == entries
            ):
                self._mark_applied(batch_id, None)
            else:
                self._abandon(batch_id)

    def stats(self) -> dict[str, int]:
        with session_scope(self._sessions) as session:
            counts = dict(
                session.execute(select(PendingBatch.status, func.count()).group_by(PendingBatch.status)).all()
            )
            pending = session.scalar(
                select(func.count()).select_from(PendingUpdate).where(PendingUpdate.batch_id.is_(None))
            )
        return {"pending_updates": pending or 0, **{f"batches_{k}": v for k, v in counts.items()}}


class FlushTimer:
    """Flush a queue on time, off any request path: checks `due()` every `interval` seconds on its own thread.

    `queue` may be a callable that returns the queue (or None while it cannot be had, e.g. the chain is down at
    start-up): a server starts the timer before its parts are built, and pending rows left by an earlier run
    are flushed even if no query comes.
    """

    def __init__(self, queue: FeedbackQueue | Callable[[], FeedbackQueue | None], interval: float):
        if not (math.isfinite(interval) and interval > 0):
            raise QueueError(f"flush interval must be a positive number of seconds, got {interval}")
        self._queue = queue
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="feedback-flush", daemon=True)
        self.errors: list[str] = []

    @property
    def queue(self) -> FeedbackQueue | None:
        return self._queue if isinstance(self._queue, FeedbackQueue) else self._queue()

    def start(self) -> FlushTimer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.interval + 30)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                queue = self.queue
                if queue is not None:
                    queue.maybe_flush()
            except Exception as exc:  # the updates stay queued; the next tick tries again
                self.errors.append(str(exc))
                log.warning("feedback flush failed: %s", exc)
