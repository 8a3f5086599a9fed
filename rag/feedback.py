"""A durable feedback queue: deltas go to SQLite (or PostgreSQL) first, then to the chain in numbered batches.

Nothing is lost on restart: an update is a row until the batch that carries it is confirmed on chain. Before a
batch is sent its intent (epoch, entries) is recorded with the rows it consumes; if the process dies between
sending and recording the receipt, `recover()` looks for that epoch's `FeedbackApplied` event on chain and
either marks the batch applied or returns its rows to the queue, so an update is applied exactly once. Per-source
totals above what the contract still lets a source move this epoch (`maxDelta` per epoch, all batches together)
are applied up to that budget and the rest is carried to a later batch, at most one epoch's budget of it each
way: evidence older than that is dropped, so a source cannot bank a good record for later (a sleeper would spend
the bank after turning) and trust keeps decaying at the rate the chain allows. (In this module a batch's "epoch" is its
number in `SourceRegistry.batches()`; the contract's time epochs only set the budgets.)
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Mapping

from eth_account.signers.local import LocalAccount
from sqlalchemy import (
    BigInteger,
    Boolean,
    Engine,
    Float,
    ForeignKey,
    Integer,
    String,
    func,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.orm import Mapped, mapped_column, sessionmaker

from backend.chain.errors import ChainUnavailable, ContractRevert, TransactionFailed
from backend.chain.source_registry import (
    SCALE,
    FeedbackBatch,
    FeedbackEntry,
    SourceRegistry,
    decode_feedback,
    encode_feedback,
)
from backend.db import Base, create_all, session_scope
from backend.db.lease import DatabaseLease
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
    # An attempt ended without a verdict (chain down, no receipt): it may still land, so never abandon it blind.
    in_doubt: Mapped[bool] = mapped_column(Boolean, default=False)


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
        lease_s: float = 300.0,
    ):
        if max_queries < 1 or not (math.isfinite(max_age) and max_age > 0):
            raise QueueError("max_queries must be >= 1 and max_age a positive number of seconds")
        create_all(engine)
        _add_missing_columns(engine)
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self.registry = registry
        self.evaluator = evaluator
        self.max_queries = max_queries
        self.max_age = max_age
        self.clock = clock
        self.on_applied = on_applied
        self.applied: list[FeedbackBatch] = []
        self._max_delta: int | None = None  # the registry's per-epoch bound (a constant of the contract)
        # Longer than a flush can take (a transaction and its receipt), so a live flusher never loses it.
        self.lease = DatabaseLease(engine, "rag-feedback-flush", lease_s, clock=time.time)

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
        """Send everything pending as one batch (up to `maxDelta` per source; the rest is carried).

        One flusher at a time across every worker sharing the database (a lease): another worker's flush in
        progress makes this one return None at once, and the rows wait for the next tick."""
        if self.evaluator is None:
            raise QueueError("no evaluator key: the updates stay queued until a flush with one")
        if not self.lease.acquire():
            return None
        try:
            return self._flush_holding_lease()
        finally:
            self.lease.release()

    def _flush_holding_lease(self) -> FeedbackBatch | None:
        unsettled = self.recover()
        if unsettled is not None:
            # A batch that may still be pending on chain is sent again under its epoch, never rebuilt: of two
            # transactions with one epoch at most one can land, so its rows cannot be credited twice.
            open_id, open_epoch, packed = unsettled
            return self._send(open_id, open_epoch, list(decode_feedback(bytes.fromhex(packed))))
        # The contract numbers batches (`batches() + 1`; the column keeps its old name, `epoch`) and lets each
        # source move at most `maxDelta` per epoch, all batches together: read what is left of that budget.
        budgets = {sid: (rel.budget_positive or 0, rel.budget_negative or 0)
                   for sid, rel in self.registry.reliabilities().items()}  # fmt: skip
        epoch = self.registry.batches() + 1
        with session_scope(self._sessions) as session:
            batch = PendingBatch(epoch=epoch, entries="", status=_SENT, created_at=self.clock())
            session.add(batch)
            session.flush()
            # One statement claims every pending row: a concurrent claim (another worker whose lease expired)
            # finds them taken, on SQLite (one writer) and PostgreSQL (the row locks) alike.
            session.execute(
                update(PendingUpdate).where(PendingUpdate.batch_id.is_(None)).values(batch_id=batch.id)
            )
            rows = session.scalars(select(PendingUpdate).where(PendingUpdate.batch_id == batch.id)).all()
            if not rows:
                session.rollback()
                return None
            totals: dict[int, list[int]] = defaultdict(lambda: [0, 0])
            for row in rows:
                totals[row.source_id][0] += row.positive
                totals[row.source_id][1] += row.negative
            # An unknown source gets no cut here: the contract refuses it and the rows come back.
            bounds = {sid: budgets.get(sid, (p, n)) for sid, (p, n) in totals.items()}
            entries = [
                FeedbackEntry(sid, min(p, bounds[sid][0]), min(n, bounds[sid][1]))
                for sid, (p, n) in sorted(totals.items())
                if min(p, bounds[sid][0]) or min(n, bounds[sid][1])
            ]
            if not entries:
                session.rollback()
                return None  # every source with updates spent its budget this epoch: they wait for the next
            batch.entries = encode_feedback(entries).hex()
            if self._max_delta is None:
                self._max_delta = self.registry.max_delta()
            cap = self._max_delta
            for sid, (p, n) in sorted(totals.items()):
                bp, bn = bounds[sid]
                if (
                    p > bp or n > bn
                ):  # the part over the budget waits for a later batch, one epoch's worth at most
                    session.add(PendingUpdate(query_id=f"carry:{batch.id}", source_id=sid,
                                              positive=min(cap, max(0, p - bp)), negative=min(cap, max(0, n - bn)),
                                              created_at=self.clock()))  # fmt: skip
            batch_id = batch.id
        return self._send(batch_id, epoch, entries)

    def _send(self, batch_id: int, epoch: int, entries: list[FeedbackEntry]) -> FeedbackBatch:
        assert self.evaluator is not None  # checked by flush
        try:
            applied = self.registry.apply_feedback(self.evaluator, epoch, entries)
        except SourceRegistry.errors.WrongBatch:
            # Someone took this epoch: perhaps this very batch, sent before and mined meanwhile. Ask the chain.
            found = self._settle(batch_id)
            if found is not None:
                return found
            raise QueueError(f"batch {epoch} was taken by another batch; the updates stay queued") from None
        except ContractRevert:
            # Refused, so not applied by this attempt; an earlier attempt that may be pending keeps it open.
            if self._in_doubt(batch_id):
                raise
            self._abandon(batch_id)
            raise
        except (ChainUnavailable, TransactionFailed) as exc:
            # Sent or not, mined or not: unknown. The batch stays recorded; the next flush settles it.
            self._mark_in_doubt(batch_id)
            raise QueueError(
                f"the chain is unreachable or did not confirm ({exc}); the batch is recorded and will be settled"
            ) from None
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

    def _mark_in_doubt(self, batch_id: int) -> None:
        with session_scope(self._sessions) as session:
            session.get_one(PendingBatch, batch_id).in_doubt = True

    def _in_doubt(self, batch_id: int) -> bool:
        with session_scope(self._sessions) as session:
            return bool(session.get_one(PendingBatch, batch_id).in_doubt)

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

    def _settle(self, batch_id: int) -> FeedbackBatch | None:
        """Settle one sent batch by the chain: the on-chain batch if it landed (marked applied), else None
        (abandoned if its epoch has passed, so it can never land; left open if it still could)."""
        with session_scope(self._sessions) as session:
            batch = session.get_one(PendingBatch, batch_id)
            epoch, entries = batch.epoch, batch.entries
        on_chain = {b.batch: b for b in self.registry.feedback_batches()}
        found = on_chain.get(epoch)
        if found is not None and self._ours(found, entries):
            self._mark_applied(batch_id, None)
            return found
        if max(on_chain, default=0) >= epoch:
            self._abandon(batch_id)
        return None

    def _ours(self, found: FeedbackBatch, entries: str) -> bool:
        assert self.evaluator is not None
        return found.evaluator == self.evaluator.address and encode_feedback(found.entries).hex() == entries

    def recover(self) -> tuple[int, int, str] | None:
        """Settle batches recorded as sent by what the chain holds: applied if their epoch's event carries them,
        requeued if their epoch passed without them; the one whose epoch is still to come (it may be pending)
        is returned as (batch id, epoch, entries hex) to be sent again under that epoch."""
        with session_scope(self._sessions) as session:
            sent = [
                (b.id, b.epoch, b.entries)
                for b in session.scalars(
                    select(PendingBatch).where(PendingBatch.status == _SENT).order_by(PendingBatch.id)
                )
            ]
        if not sent:
            return None
        on_chain = {b.batch: b for b in self.registry.feedback_batches()}
        head = max(on_chain, default=0)
        open_batch = None
        for batch_id, epoch, entries in sent:
            found = on_chain.get(epoch)
            if found is not None and self._ours(found, entries):
                self._mark_applied(batch_id, None)
            elif epoch <= head:
                self._abandon(batch_id)  # its epoch passed without it: it can never land
            elif open_batch is None:
                open_batch = (batch_id, epoch, entries)
            # Any other batch for the next epoch stays open too: only one of them can land, and the chain
            # says which at the next settlement.
        return open_batch

    def stats(self) -> dict[str, int]:
        with session_scope(self._sessions) as session:
            counts = dict(
                session.execute(select(PendingBatch.status, func.count()).group_by(PendingBatch.status)).all()
            )
            pending = session.scalar(
                select(func.count()).select_from(PendingUpdate).where(PendingUpdate.batch_id.is_(None))
            )
        return {"pending_updates": pending or 0, **{f"batches_{k}": v for k, v in counts.items()}}


def _add_missing_columns(engine: Engine) -> None:
    """Databases made before `in_doubt` existed get the column (create_all adds tables, never columns)."""
    columns = {c["name"] for c in inspect(engine).get_columns(PendingBatch.__tablename__)}
    if "in_doubt" not in columns:
        with engine.begin() as conn:
            conn.execute(text("ALTER TABLE rag_feedback_batches ADD COLUMN in_doubt BOOLEAN DEFAULT FALSE"))


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
