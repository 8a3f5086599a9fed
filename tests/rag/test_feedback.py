"""The durable feedback queue against anvil: batching by size and time, bounds with carry, restart, replay."""

from __future__ import annotations

import contextlib
import math

import pytest
from sqlalchemy import update

from backend.chain.errors import revert_class
from backend.chain.source_registry import (
    PRIOR_NEGATIVE,
    PRIOR_POSITIVE,
    FeedbackEntry,
    SourceRegistry,
    deploy_source_registry,
)
from backend.db import make_engine
from rag.errors import QueueError
from rag.feedback import FeedbackQueue, PendingBatch
from rag.signals import Deltas

pytestmark = [pytest.mark.chain, pytest.mark.both_databases]


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def registry(chain_client, dev_accounts):
    registry = deploy_source_registry(chain_client, dev_accounts[0], min_bond=10**15, max_delta=3000,
                                      evaluator=dev_accounts[1].address)  # fmt: skip
    for i, operator in enumerate(dev_accounts[2:4]):
        registry.register(operator, f"http://127.0.0.1:{i + 1}", bytes([i + 1]) * 32, 10**15)
    return registry


@pytest.fixture
def engine(database_url):
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


def make_queue(engine, registry, dev_accounts, clock, **kwargs):
    return FeedbackQueue(engine, registry, dev_accounts[1], clock=clock, **kwargs)


def next_epoch(registry, chain_client):
    """Mine the next block at the start of the registry's next epoch (budgets renew)."""
    start = registry._call("genesis") + (registry.current_epoch() + 1) * registry.epoch_length()
    chain_client.w3.provider.make_request("evm_mine", [start])


def counts(registry, sid):
    rel = registry.reliability(sid)
    return rel.alpha - PRIOR_POSITIVE, rel.beta - PRIOR_NEGATIVE


def test_flushes_by_size_as_one_batch(engine, registry, dev_accounts):
    clock = Clock()
    queue = make_queue(engine, registry, dev_accounts, clock, max_queries=2)
    queue.enqueue("q1", {1: Deltas(1, 0), 2: Deltas(0, 0.5)})
    assert not queue.due() and queue.maybe_flush() is None
    queue.enqueue("q2", {1: Deltas(0.25, 0)})
    assert queue.pending_queries() == 2 and queue.due()
    batch = queue.maybe_flush()
    assert batch.batch == 1 and batch.entries == (FeedbackEntry(1, 1250, 0), FeedbackEntry(2, 0, 500))
    assert counts(registry, 1) == (1250, 0) and counts(registry, 2) == (0, 500)
    assert queue.stats() == {"pending_updates": 0, "batches_applied": 1}
    assert queue.flush() is None  # nothing left


def test_flushes_by_age(engine, registry, dev_accounts):
    clock = Clock()
    queue = make_queue(engine, registry, dev_accounts, clock, max_queries=100, max_age=30)
    queue.enqueue("q1", {1: Deltas(1, 0)})
    clock.now += 29
    assert queue.maybe_flush() is None
    clock.now += 1
    assert queue.maybe_flush().batch == 1


def test_epoch_budget_is_respected_and_the_rest_carried(engine, registry, dev_accounts, chain_client):
    queue = make_queue(engine, registry, dev_accounts, Clock())
    for i in range(5):
        queue.enqueue(f"q{i}", {1: Deltas(1, 0.2)})  # 5 observations: over the 3-observation bound per epoch
    first = queue.flush()
    assert first.entries == (FeedbackEntry(1, 3000, 1000),)
    # The source's positive budget for this epoch is spent, whatever the batch: the rest waits.
    assert queue.flush() is None and queue.stats()["pending_updates"] == 1
    next_epoch(registry, chain_client)
    second = queue.flush()
    assert second.batch == 2 and second.entries == (FeedbackEntry(1, 2000, 0),)
    assert counts(registry, 1) == (5000, 1000)


def test_carried_evidence_is_at_most_one_epoch_budget(engine, registry, dev_accounts, chain_client):
    """A source cannot bank a good record for later: what waits for the next epoch is one epoch's budget at most."""
    queue = make_queue(engine, registry, dev_accounts, Clock())
    for i in range(10):
        queue.enqueue(f"q{i}", {1: Deltas(1, 0)})  # 10 observations against a bound of 3 per epoch
    assert queue.flush().entries == (FeedbackEntry(1, 3000, 0),)
    for _ in range(3):
        next_epoch(registry, chain_client)
        queue.flush()
    assert counts(registry, 1) == (6000, 0) and queue.stats()["pending_updates"] == 0


def test_budget_spent_by_another_evaluator_keeps_updates(engine, registry, dev_accounts):
    from dataclasses import replace

    queue = make_queue(engine, registry, dev_accounts, Clock())
    queue.enqueue("q1", {1: Deltas(2, 0)})
    real = registry.reliabilities
    registry.reliabilities = lambda: {sid: replace(rel, budget_positive=3000) for sid, rel in real().items()}
    registry.apply_feedback(dev_accounts[1], 1, [FeedbackEntry(1, 2000, 0)])  # meanwhile, from elsewhere
    with pytest.raises(revert_class("SourceRegistry", "EpochBudgetExceeded")):
        queue.flush()
    registry.reliabilities = real
    assert queue.pending_queries() == 1
    assert queue.flush().entries == (FeedbackEntry(1, 1000, 0),)  # what the epoch still allows


def test_nothing_is_lost_on_restart(engine, registry, dev_accounts):
    make_queue(engine, registry, dev_accounts, Clock()).enqueue("q1", {2: Deltas(0, 2)})
    restarted = make_queue(engine, registry, dev_accounts, Clock())
    assert restarted.pending_queries() == 1
    restarted.flush()
    assert counts(registry, 2) == (0, 2000)


def test_crash_after_send_is_recovered_without_double_apply(engine, registry, dev_accounts, monkeypatch):
    queue = make_queue(engine, registry, dev_accounts, Clock())
    queue.enqueue("q1", {1: Deltas(1, 0)})
    # The process dies after the transaction landed but before the receipt was recorded.
    monkeypatch.setattr(queue, "_mark_applied", lambda *a: (_ for _ in ()).throw(SystemExit("crash")))
    with pytest.raises(SystemExit):
        queue.flush()
    restarted = make_queue(engine, registry, dev_accounts, Clock())
    assert (
        restarted.flush() is None
    )  # recovery finds epoch 1 on chain with these entries: applied, not resent
    assert counts(registry, 1) == (1000, 0) and registry.batches() == 1
    assert restarted.stats()["batches_applied"] == 1


def test_batch_that_never_landed_is_sent_again_under_its_epoch(engine, registry, dev_accounts):
    queue = make_queue(engine, registry, dev_accounts, Clock())
    queue.enqueue("q1", {1: Deltas(1, 0)})
    queue.flush()
    # Pretend a second batch was recorded as sent but its transaction never made it.
    queue.enqueue("q2", {2: Deltas(1, 0)})
    with engine.begin() as conn:
        conn.execute(PendingBatch.__table__.insert().values(id=99, epoch=2, entries="0000000203e80000",
                                                            status="sent", created_at=0.0))  # fmt: skip
    from rag.feedback import PendingUpdate

    with engine.begin() as conn:
        conn.execute(update(PendingUpdate).where(PendingUpdate.query_id == "q2").values(batch_id=99))
    assert queue.pending_queries() == 0
    # Its epoch is still the next one, so it may yet land: it is resent as it was, never rebuilt.
    batch = queue.flush()
    assert batch.batch == 2 and batch.entries == (FeedbackEntry(2, 1000, 0),)
    assert queue.stats() == {"pending_updates": 0, "batches_applied": 2}


def test_epoch_taken_by_another_evaluator_keeps_updates(engine, registry, dev_accounts, chain_client):
    queue = make_queue(engine, registry, dev_accounts, Clock())
    queue.enqueue("q1", {1: Deltas(1, 0)})
    real_batches = registry.batches
    registry.batches = lambda: 0  # a stale read: another evaluator applied batch 1 meanwhile
    registry.apply_feedback(dev_accounts[1], 1, [FeedbackEntry(2, 1, 0)])
    with pytest.raises(QueueError, match="taken"):
        queue.flush()
    registry.batches = real_batches
    assert queue.pending_queries() == 1
    assert queue.flush().batch == 2 and counts(registry, 1) == (1000, 0)


def test_reverted_batches_return_their_rows(engine, registry, dev_accounts):
    queue = make_queue(engine, registry, dev_accounts, Clock())
    queue.enqueue("q1", {7: Deltas(1, 0)})  # no source 7 on chain
    with pytest.raises(revert_class("SourceRegistry", "UnknownSource")):
        queue.flush()
    assert queue.pending_queries() == 1 and queue.stats()["batches_abandoned"] == 1


def test_chain_down_leaves_batch_for_recovery(engine, registry, dev_accounts, monkeypatch):
    from backend.chain.errors import ChainUnavailable

    queue = make_queue(engine, registry, dev_accounts, Clock())
    queue.enqueue("q1", {1: Deltas(1, 0)})
    monkeypatch.setattr(
        registry, "apply_feedback", lambda *a: (_ for _ in ()).throw(ChainUnavailable("down"))
    )
    with pytest.raises(QueueError, match="unreachable"):
        queue.flush()
    monkeypatch.undo()
    assert queue.stats()["batches_sent"] == 1
    assert queue.flush().batch == 1  # recovery requeued it (epoch 1 never landed), then it was sent
    assert counts(registry, 1) == (1000, 0)


@pytest.mark.parametrize("delta", [Deltas(-1, 0), Deltas(0, math.nan), Deltas(math.inf, 0)])
def test_bad_deltas_are_refused(engine, registry, dev_accounts, delta):
    queue = make_queue(engine, registry, dev_accounts, Clock())
    with pytest.raises(QueueError, match="finite"):
        queue.enqueue("q", {1: delta})
    with pytest.raises(QueueError, match="unknown source"):
        queue.enqueue("q", {0: Deltas(1, 0)})
    assert queue.pending_queries() == 0


def test_bad_settings(engine, registry, dev_accounts):
    with pytest.raises(QueueError):
        make_queue(engine, registry, dev_accounts, Clock(), max_queries=0)
    with pytest.raises(QueueError):
        make_queue(engine, registry, dev_accounts, Clock(), max_age=math.nan)


def test_timer_flushes_without_queries(engine, registry, dev_accounts):
    import time

    from rag.feedback import FlushTimer

    clock = Clock()
    queue = make_queue(engine, registry, dev_accounts, clock, max_queries=100, max_age=30)
    queue.enqueue("q1", {1: Deltas(1, 0)})
    timer = FlushTimer(queue, 0.05).start()
    try:
        clock.now += 31  # the update is now older than max_age; no further query arrives
        deadline = time.monotonic() + 30
        while registry.batches() == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        timer.stop()
    assert registry.batches() == 1 and counts(registry, 1) == (1000, 0) and timer.errors == []
    with pytest.raises(QueueError, match="interval"):
        FlushTimer(queue, 0)


def test_queue_without_a_key_only_stores(engine, registry, dev_accounts):
    queue = FeedbackQueue(engine, registry, None, max_queries=1, clock=Clock())
    queue.enqueue("q1", {1: Deltas(1, 0)})
    assert queue.due() and queue.maybe_flush() is None
    with pytest.raises(QueueError, match="no evaluator key"):
        queue.flush()
    assert make_queue(engine, registry, dev_accounts, Clock()).flush().batch == 1


@pytest.mark.parametrize("lease_s", [300.0, 1e-9], ids=["lease-held", "lease-expired"])
def test_two_workers_never_credit_one_observation_twice(
    engine, registry, dev_accounts, chain_client, lease_s
):
    """Worker B's timer fires while worker A's batch is in flight; B's own transaction would go out after A's
    landed. Before the lease, B requeued A's rows, rebuilt them into a batch for the same epoch, had it refused
    and requeued them again: credited twice. Now B waits for the lease (or, if A's lease expired, resends A's
    batch unchanged), and every observation is credited once."""
    worker_a = make_queue(engine, registry, dev_accounts, Clock(), lease_s=lease_s)
    worker_b = make_queue(engine, SourceRegistry(chain_client, registry.address), dev_accounts, Clock())
    worker_a.enqueue("q1", {1: Deltas(1, 0)})
    worker_a.enqueue("q2", {2: Deltas(0, 1)})
    send_a, send_b = worker_a.registry.apply_feedback, worker_b.registry.apply_feedback
    in_flight: list = []
    landed: list = []

    def b_sends(evaluator, epoch, entries):
        landed.append(send_a(*in_flight))  # A's transaction, in flight all along, lands first
        return send_b(evaluator, epoch, entries)

    def a_sends(evaluator, epoch, entries):
        in_flight[:] = [evaluator, epoch, entries]
        worker_b.registry.apply_feedback = b_sends
        with contextlib.suppress(QueueError):
            worker_b.flush()
        return landed[0] if landed else send_a(evaluator, epoch, entries)

    worker_a.registry.apply_feedback = a_sends
    try:
        worker_a.flush()
    finally:
        worker_a.registry.apply_feedback, worker_b.registry.apply_feedback = send_a, send_b
    assert worker_a.flush() is None and worker_b.flush() is None  # nothing left to send
    assert counts(registry, 1) == (1000, 0) and counts(registry, 2) == (0, 1000)
    assert registry.batches() == 1


def test_a_batch_mined_without_a_receipt_is_settled_not_requeued(engine, registry, dev_accounts, monkeypatch):
    from backend.chain.errors import TransactionFailed

    queue = make_queue(engine, registry, dev_accounts, Clock())
    queue.enqueue("q1", {1: Deltas(1, 0)})
    real = registry.apply_feedback

    def mined_but_unconfirmed(*args):
        real(*args)
        raise TransactionFailed("no receipt after 60s")

    monkeypatch.setattr(registry, "apply_feedback", mined_but_unconfirmed)
    with pytest.raises(QueueError, match="will be settled"):
        queue.flush()
    monkeypatch.undo()
    assert queue.pending_queries() == 0  # not handed back to the queue: it may have landed
    assert queue.flush() is None  # settled from the chain: it did land
    assert counts(registry, 1) == (1000, 0) and queue.stats() == {"pending_updates": 0, "batches_applied": 1}
