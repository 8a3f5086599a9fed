"""SourceRegistry feedback: numbered batches, budgets per epoch for all evaluators, forgetting, canaries, slashing.

The F-7 regressions of issue #12 (each fails on the registry before it) are marked `F-7` in their docstrings.
"""

from __future__ import annotations

import ape
import pytest
from eth_abi import encode
from eth_utils import keccak
from source_registry_helpers import (
    EPOCH,
    MAX_DELTA,
    MAX_EVIDENCE,
    MIN_BOND,
    SLASH_BPS,
    deploy,
    pack,
    register,
)

BURN = "0x000000000000000000000000000000000000dEaD"
SALT = b"\x5a" * 32
CANARIES = b'{"question": "Who was the Norse leader?", "answers": ["Rollo"]}\n'


@pytest.fixture
def evaluator(accounts):
    return accounts[1]


@pytest.fixture
def operator(accounts):
    return accounts[2]


@pytest.fixture
def registry(project, accounts, evaluator):
    return deploy(project, accounts[0], evaluator)


def next_epoch(registry, chain, epochs=1):
    """Move the chain clock to the start of a later epoch (and mine there, so views see it)."""
    start = registry.genesis() + (registry.currentEpoch() + epochs) * EPOCH
    chain.mine(timestamp=start)


def test_feedback_adds_bounded_deltas_with_one_event(registry, operator, evaluator, accounts, chain):
    first = register(registry, operator)
    second = register(registry, accounts[3], "http://second", b"\x22" * 32)
    entries = pack([(first, 3000, 0), (second, 250, 4000)])
    tx = registry.applyFeedback(1, entries, sender=evaluator)
    (event,) = tx.events.filter(registry.FeedbackApplied)
    assert (event.batch, event.epoch, event.evaluator, event.count, event.entries) == (
        1, registry.currentEpoch(), evaluator.address, 2, entries,
    )  # fmt: skip
    assert len(tx.events) == 1
    next_epoch(registry, chain)
    registry.applyFeedback(2, pack([(first, 1000, 500)]), sender=evaluator)
    assert tuple(registry.reliability(first)) == (5000, 4500)
    assert tuple(registry.reliability(second)) == (1250, 8000)
    assert registry.batches() == 2
    alpha, beta, status, positive, negative = registry.reliabilities(1, 2)
    assert (list(alpha), list(beta), list(status)) == ([5000, 1250], [4500, 8000], [1, 1])
    assert (list(positive), list(negative)) == ([MAX_DELTA - 1000, MAX_DELTA], [MAX_DELTA - 500, MAX_DELTA])


def test_feedback_replay_and_stale_batches_revert(registry, operator, evaluator):
    sid = register(registry, operator)
    entries = pack([(sid, 1000, 0)])
    registry.applyFeedback(1, entries, sender=evaluator)
    # The same batch sent again is a replay: its number is spent.
    with ape.reverts(registry.WrongBatch, expected=2, given=1):
        registry.applyFeedback(1, entries, sender=evaluator)
    with ape.reverts(registry.WrongBatch, expected=2, given=3):
        registry.applyFeedback(3, entries, sender=evaluator)
    assert tuple(registry.reliability(sid)) == (2000, 4000)


def test_feedback_rejects_bad_batches(registry, operator, evaluator, accounts):
    sid = register(registry, operator)
    other = register(registry, accounts[3], "http://second", b"\x22" * 32)
    epoch = registry.currentEpoch()
    with ape.reverts(registry.EmptyBatch):
        registry.applyFeedback(1, b"", sender=evaluator)
    with ape.reverts(registry.MalformedBatch, length=7):
        registry.applyFeedback(1, pack([(sid, 1, 1)])[:7], sender=evaluator)
    with ape.reverts(registry.EpochBudgetExceeded, id=sid, epoch=epoch, positive=MAX_DELTA + 1, negative=0):
        registry.applyFeedback(1, pack([(sid, MAX_DELTA + 1, 0)]), sender=evaluator)
    with ape.reverts(registry.EpochBudgetExceeded):
        registry.applyFeedback(1, pack([(sid, 0, MAX_DELTA + 1)]), sender=evaluator)
    with ape.reverts(registry.UnknownSource, id=99):
        registry.applyFeedback(1, pack([(99, 1, 1)]), sender=evaluator)
    # Repeating an id would multiply the bound: ids must be strictly ascending.
    with ape.reverts(registry.UnsortedBatch, id=sid, previous=sid):
        registry.applyFeedback(1, pack([(sid, MAX_DELTA, 0), (sid, MAX_DELTA, 0)]), sender=evaluator)
    with ape.reverts(registry.UnsortedBatch, id=sid, previous=other):
        registry.applyFeedback(1, pack([(other, 1, 0), (sid, 1, 0)]), sender=evaluator)
    # Ids start at 1, so id 0 fails the ordering check before any storage is read.
    with ape.reverts(registry.UnsortedBatch, id=0, previous=0):
        registry.applyFeedback(1, pack([(0, 1, 0)]), sender=evaluator)
    assert registry.batches() == 0


def test_many_batches_cannot_move_a_source_past_its_epoch_budget(
    registry, operator, evaluator, accounts, chain
):
    """F-7: `maxDelta` bounded one batch, so 50 batches in a row moved a source 50 times as far. Now one epoch
    moves a source at most `maxDelta` each way, whichever evaluators send how many batches."""
    sid = register(registry, operator)
    second_evaluator = accounts[7]
    registry.grantRole(registry.EVALUATOR_ROLE(), second_evaluator, sender=accounts[0])
    registry.applyFeedback(1, pack([(sid, 3000, 0)]), sender=evaluator)
    registry.applyFeedback(2, pack([(sid, 2000, 0)]), sender=second_evaluator)
    assert tuple(registry.remainingBudget(sid)) == (0, MAX_DELTA)
    epoch = registry.currentEpoch()
    for batch, who in [(3, evaluator), (3, second_evaluator)]:
        with ape.reverts(
            registry.EpochBudgetExceeded, id=sid, epoch=epoch, positive=MAX_DELTA + 1, negative=0
        ):
            registry.applyFeedback(batch, pack([(sid, 1, 0)]), sender=who)
    registry.applyFeedback(
        3, pack([(sid, 0, MAX_DELTA)]), sender=evaluator
    )  # the other side has its own budget
    assert tuple(registry.reliability(sid)) == (1000 + MAX_DELTA, 4000 + MAX_DELTA)
    next_epoch(registry, chain)
    assert tuple(registry.remainingBudget(sid)) == (MAX_DELTA, MAX_DELTA)
    registry.applyFeedback(4, pack([(sid, MAX_DELTA, 0)]), sender=second_evaluator)


def test_evidence_is_capped_by_forgetting_in_proportion(registry, operator, evaluator, chain):
    """Old evidence fades: past `maxEvidence` both counts are scaled so that the record keeps the cap."""
    sid = register(registry, operator)
    for batch in range(1, 9):
        registry.applyFeedback(batch, pack([(sid, MAX_DELTA, 0)]), sender=evaluator)
        next_epoch(registry, chain)
    alpha, beta = registry.reliability(sid)
    assert alpha + beta == MAX_EVIDENCE and alpha > 0.9 * MAX_EVIDENCE
    # A source that turns: negative evidence now moves it much faster than an uncapped record would.
    for batch in range(9, 12):
        registry.applyFeedback(batch, pack([(sid, 0, MAX_DELTA)]), sender=evaluator)
        next_epoch(registry, chain)
    alpha, beta = registry.reliability(sid)
    uncapped = (1000 + 8 * MAX_DELTA) / (5000 + 11 * MAX_DELTA)
    assert alpha + beta == MAX_EVIDENCE and alpha / (alpha + beta) < uncapped - 0.04


def test_only_evaluator_writes_reliability(registry, operator):
    sid = register(registry, operator)
    # The Reliable-dRAG hole: a source scoring itself.
    with ape.reverts(registry.AccessControlUnauthorizedAccount):
        registry.applyFeedback(1, pack([(sid, MAX_DELTA, 0)]), sender=operator)


def test_feedback_still_lands_on_exiting_source(registry, operator, evaluator):
    sid = register(registry, operator)
    registry.requestExit(sid, sender=operator)
    registry.applyFeedback(1, pack([(sid, 0, 2000)]), sender=evaluator)
    assert tuple(registry.reliability(sid)) == (1000, 6000)
    assert list(registry.reliabilities(1, 1)[2]) == [2]


# -- canaries ------------------------------------------------------------------------------------------------


def commitment(registry, evaluator, epoch, salt=SALT, count=1, canaries=CANARIES):
    return keccak(encode(["uint256", "address", "address", "uint64", "bytes32", "uint16", "bytes32"],
                         [ape.chain.chain_id, registry.address, evaluator.address, epoch, salt, count,
                          keccak(canaries)]))  # fmt: skip


def test_canaries_are_committed_before_and_revealed_after_their_epoch(registry, evaluator, chain):
    epoch = registry.currentEpoch() + 1
    root = commitment(registry, evaluator, epoch)
    assert registry.canaryCommitment(evaluator, epoch, SALT, 1, CANARIES) == root
    tx = registry.commitCanaries(epoch, root, 1, sender=evaluator)
    assert [(e.epoch, e.commitment, e.count) for e in tx.events.filter(registry.CanariesCommitted)] == [
        (epoch, root, 1)
    ]
    assert tuple(registry.canaries(evaluator, epoch)) == (root, False, 1)
    next_epoch(registry, chain)  # the epoch runs: its canaries are asked, nobody can tell them apart
    with ape.reverts(registry.EpochNotOver, epoch=epoch, current=epoch):
        registry.revealCanaries(epoch, SALT, CANARIES, sender=evaluator)
    next_epoch(registry, chain)
    with ape.reverts(registry.CanaryMismatch, epoch=epoch):
        registry.revealCanaries(epoch, SALT, CANARIES + b" ", sender=evaluator)
    with ape.reverts(registry.CanaryMismatch, epoch=epoch):
        registry.revealCanaries(epoch, b"\x00" * 32, CANARIES, sender=evaluator)
    tx = registry.revealCanaries(epoch, SALT, CANARIES, sender=evaluator)
    (event,) = tx.events.filter(registry.CanariesRevealed)
    assert (event.epoch, event.evaluator, event.salt, event.canaries) == (
        epoch,
        evaluator.address,
        SALT,
        CANARIES,
    )
    with ape.reverts(registry.CanariesAlreadyRevealed, epoch=epoch):
        registry.revealCanaries(epoch, SALT, CANARIES, sender=evaluator)


def test_canary_commitments_refused(registry, evaluator, operator, chain):
    current = registry.currentEpoch()
    with ape.reverts(registry.EpochNotInFuture, epoch=current, current=current):
        registry.commitCanaries(current, b"\x01" * 32, 1, sender=evaluator)
    with ape.reverts(registry.ZeroCommitment):
        registry.commitCanaries(current + 1, b"\x00" * 32, 1, sender=evaluator)
    with ape.reverts(registry.AccessControlUnauthorizedAccount):
        registry.commitCanaries(current + 1, b"\x01" * 32, 1, sender=operator)
    registry.commitCanaries(current + 1, b"\x01" * 32, 1, sender=evaluator)
    with ape.reverts(registry.CanariesAlreadyCommitted, epoch=current + 1):
        registry.commitCanaries(current + 1, b"\x02" * 32, 1, sender=evaluator)
    next_epoch(registry, chain, 2)
    # Another evaluator never committed for that epoch: nothing to reveal.
    with ape.reverts(registry.NoCanaries, epoch=current + 1):
        registry.revealCanaries(current + 1, SALT, CANARIES, sender=operator)


# -- slashing ------------------------------------------------------------------------------------------------


@pytest.fixture
def revealed(registry, evaluator, chain):
    """An epoch with two canaries, committed, run and revealed."""
    epoch = registry.currentEpoch() + 1
    registry.commitCanaries(epoch, commitment(registry, evaluator, epoch, count=2), 2, sender=evaluator)
    next_epoch(registry, chain, 2)
    registry.revealCanaries(epoch, SALT, CANARIES, sender=evaluator)
    return epoch


def test_a_source_shown_wrong_on_revealed_canaries_is_slashed(registry, operator, evaluator, revealed, chain):
    """F-7: bonds were never slashed. Burned, not paid to anyone, once per source and epoch."""
    sid = register(registry, operator, bond=5 * MIN_BOND)
    burned_before = chain.provider.get_balance(BURN)
    tx = registry.slash(sid, revealed, 2, b"\x0e" * 32, sender=evaluator)
    amount = 5 * MIN_BOND * 2 * SLASH_BPS // 10_000
    (event,) = tx.events.filter(registry.SourceSlashed)
    assert (event.id, event.epoch, event.evaluator, event.amount, event.failures, event.evidence) == (
        sid, revealed, evaluator.address, amount, 2, b"\x0e" * 32,
    )  # fmt: skip
    assert registry.source(sid)[1] == 5 * MIN_BOND - amount
    assert chain.provider.get_balance(BURN) == burned_before + amount
    assert registry.balance == 5 * MIN_BOND - amount
    with ape.reverts(registry.AlreadySlashed, id=sid, epoch=revealed):
        registry.slash(sid, revealed, 1, b"\x0e" * 32, sender=evaluator)
    assert registry.source(sid)[2] == 1  # still above the minimum bond: still Active


def test_slashing_keeps_the_source_registered_and_compounds(registry, operator, evaluator, revealed, chain):
    sid = register(registry, operator)
    registry.slash(sid, revealed, 1, b"\x0e" * 32, sender=evaluator)
    later = registry.currentEpoch() + 1
    registry.commitCanaries(later, commitment(registry, evaluator, later), 1, sender=evaluator)
    next_epoch(registry, chain, 2)
    registry.revealCanaries(later, SALT, CANARIES, sender=evaluator)
    registry.slash(sid, later, 1, b"\x0e" * 32, sender=evaluator)
    assert registry.source(sid)[1] == MIN_BOND * 9 // 10 * 9 // 10  # a tenth of what is left, each time
    assert registry.source(sid)[2] == 1 and registry.activeSources(operator) == 1
    with ape.reverts(registry.AlreadySlashed, id=sid, epoch=revealed):  # and never back to an older epoch
        registry.slash(sid, revealed, 1, b"\x0e" * 32, sender=evaluator)


def test_slashing_refused(registry, operator, evaluator, revealed, chain):
    sid = register(registry, operator)
    with ape.reverts(registry.AccessControlUnauthorizedAccount):
        registry.slash(sid, revealed, 1, b"\x0e" * 32, sender=operator)
    with ape.reverts(registry.UnknownSource, id=9):
        registry.slash(9, revealed, 1, b"\x0e" * 32, sender=evaluator)
    for failures in (0, 3):
        with ape.reverts(registry.BadFailureCount, failures=failures, count=2):
            registry.slash(sid, revealed, failures, b"\x0e" * 32, sender=evaluator)
    # Canaries committed but not revealed (or never committed): nobody could check, so no slash.
    later = registry.currentEpoch() + 1
    registry.commitCanaries(later, b"\x01" * 32, 1, sender=evaluator)
    next_epoch(registry, chain, 2)
    for epoch in (later, later + 5):
        with ape.reverts(registry.CanariesNotRevealed, epoch=epoch):
            registry.slash(sid, epoch, 1, b"\x0e" * 32, sender=evaluator)
    assert registry.source(sid)[1] == MIN_BOND
