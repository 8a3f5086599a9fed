"""TrainingMarket: creation, registration, submission and finalization, and every revert on the way."""

from __future__ import annotations

import pytest
from market_helpers import (
    ACTIVE,
    AGGREGATION_WINDOW,
    BOND,
    CANCELLED,
    CHALLENGE_WINDOW,
    COMPLETED,
    DURATION,
    MIN_STAKE,
    POOL,
    ROUNDS,
    SCORE_ONE,
    cid,
    create,
    expected_digest,
    params,
    register_all,
    result,
    reverts,
    round_pool,
    sha,
    shares,
    submit_all,
    view_reverts,
    warp_to,
)

ZERO = "0x0000000000000000000000000000000000000000"


# ------------------------------------------------------------------------------------------------ createProject


def test_create_escrows_pool_and_opens_round_zero(market, owner, aggregator, arbiter, chain):
    tx = market.createProject(params(aggregator, arbiter), sender=owner, value=POOL)
    (created,) = tx.events.filter(market.ProjectCreated)
    (opened,) = tx.events.filter(market.RoundOpened)
    assert created.projectId == 1 and created.owner == owner.address and created.pool == POOL
    assert created.aggregator == aggregator.address and created.arbiter == arbiter.address
    assert created.initialModelCid == cid("model-0") and created.initialModelSha256 == sha("model-0")
    assert created.configCid == cid("config") and created.configSha256 == sha("config")
    assert opened.projectId == 1 and opened.round == 0 and opened.openedAt == tx.timestamp
    p = market.getProject(1)
    assert (p.owner, p.status, p.rounds, p.currentRound, p.pool, p.escrow) == (
        owner.address,
        ACTIVE,
        3,
        0,
        POOL,
        POOL,
    )
    assert (p.roundOpenedAt, p.roundDuration, p.aggregationWindow) == (
        tx.timestamp,
        DURATION,
        AGGREGATION_WINDOW,
    )
    assert (p.challengeWindow, p.challengeBond, p.minStake, p.maxTrainers) == (
        CHALLENGE_WINDOW,
        BOND,
        MIN_STAKE,
        8,
    )
    assert (p.slashAfterFlags, p.slashBps, p.initialModelCid) == (2, 5_000, cid("model-0"))
    assert market.balance == POOL
    assert create(market, owner, aggregator, arbiter) == 2
    assert market.roundDeadlines(1) == (tx.timestamp + DURATION, tx.timestamp + DURATION + AGGREGATION_WINDOW)


@pytest.mark.parametrize(
    ("override", "name"),
    [
        ({"rounds": 0}, "rounds"),
        ({"roundDuration": 0}, "roundDuration"),
        ({"aggregationWindow": 0}, "aggregationWindow"),
        ({"maxTrainers": 0}, "maxTrainers"),
        ({"maxTrainers": 1_001}, "maxTrainers"),
        ({"aggregator": ZERO}, "aggregator"),
        ({"slashBps": 10_001}, "slashBps"),
        ({"arbiter": ZERO}, "arbiter"),
        ({"challengeBond": 0}, "challengeBond"),
    ],
)
def test_create_rejects_bad_parameters(market, owner, aggregator, arbiter, override, name):
    with reverts(market.InvalidParameter, name=name):
        market.createProject(params(aggregator, arbiter, **override), sender=owner, value=POOL)


def test_create_rejects_arbiter_that_is_the_aggregator(market, owner, aggregator):
    with reverts(market.InvalidParameter, name="arbiter"):
        market.createProject(params(aggregator, aggregator), sender=owner, value=POOL)


def test_create_without_challenges_needs_no_arbiter(market, owner, aggregator):
    overrides = {"challengeWindow": 0, "challengeBond": 0}
    market.createProject(params(aggregator, ZERO, **overrides), sender=owner, value=POOL)
    assert market.getProject(1).arbiter == ZERO


@pytest.mark.parametrize(
    "override",
    [
        {"initialModelCid": ""},
        {"initialModelSha256": b"\x00" * 32},
        {"configCid": "b" * 129},
        {"configSha256": b"\x00" * 32},
    ],
)
def test_create_rejects_bad_content_references(market, owner, aggregator, arbiter, override):
    with reverts(market.InvalidContentReference):
        market.createProject(params(aggregator, arbiter, **override), sender=owner, value=POOL)


def test_create_rejects_empty_and_oversized_pools(market, owner, aggregator, arbiter):
    with reverts(market.EmptyPool):
        market.createProject(params(aggregator, arbiter), sender=owner, value=0)
    owner.balance = 2**97
    with reverts(market.AmountTooLarge, amount=2**96):
        market.createProject(params(aggregator, arbiter), sender=owner, value=2**96)


def test_views_reject_unknown_projects(market, pid, outsider, chain):
    for view, args in [
        ("getProject", (7,)),
        ("getRound", (7, 0)),
        ("getTrainer", (7, outsider.address)),
        ("getSubmission", (7, 0, outsider.address)),
        ("claimable", (7, outsider.address)),
        ("claimsOpen", (7,)),
        ("roundDeadlines", (7,)),
        ("roundResultDigest", (7, 0)),
        ("isRoundFinal", (7, 0)),
        ("reversedRounds", (7,)),
    ]:
        view_reverts(chain, market, market.UnknownProject, view, *args, projectId=7)
    with reverts(market.UnknownProject, projectId=0):
        market.register(0, sender=outsider, value=MIN_STAKE)


# ----------------------------------------------------------------------------------------------------- register


def test_register_stakes_and_emits(market, pid, trainers):
    tx = market.register(pid, sender=trainers[0], value=MIN_STAKE + 5)
    (event,) = tx.events.filter(market.TrainerRegistered)
    assert (event.projectId, event.trainer, event.stake) == (pid, trainers[0].address, MIN_STAKE + 5)
    t = market.getTrainer(pid, trainers[0])
    assert (t.registered, t.stake, t.reward, t.submissions, t.flags, t.claimed) == (
        True,
        MIN_STAKE + 5,
        0,
        0,
        0,
        False,
    )
    p = market.getProject(pid)
    assert p.trainerCount == 1 and p.escrow == POOL + MIN_STAKE + 5


def test_register_reverts(market, owner, aggregator, arbiter, trainers):
    pid = create(market, owner, aggregator, arbiter, maxTrainers=2)
    with reverts(market.StakeTooLow, stake=MIN_STAKE - 1, minStake=MIN_STAKE):
        market.register(pid, sender=trainers[0], value=MIN_STAKE - 1)
    for role in (aggregator, arbiter):
        with reverts(market.ConflictOfInterest, account=role.address):
            market.register(pid, sender=role, value=MIN_STAKE)
    register_all(market, pid, trainers[:2])
    with reverts(market.AlreadyRegistered, trainer=trainers[0].address):
        market.register(pid, sender=trainers[0], value=MIN_STAKE)
    with reverts(market.ProjectFull, maxTrainers=2):
        market.register(pid, sender=trainers[2], value=MIN_STAKE)


def test_registration_closes_with_the_last_round_window(market, owner, aggregator, arbiter, trainers, chain):
    pid = create(market, owner, aggregator, arbiter, rounds=1)
    opened = market.getProject(pid).roundOpenedAt
    warp_to(chain, opened + DURATION)
    market.register(pid, sender=trainers[0], value=MIN_STAKE)
    warp_to(chain, opened + DURATION + 1)
    with reverts(market.RegistrationClosed, projectId=pid):
        market.register(pid, sender=trainers[1], value=MIN_STAKE)


def test_register_in_an_inactive_project_reverts(market, pid, trainers, outsider, chain):
    warp_to(chain, market.roundDeadlines(pid)[1] + 1)
    market.cancel(pid, sender=outsider)
    with reverts(market.ProjectNotActive, projectId=pid, status=CANCELLED):
        market.register(pid, sender=trainers[0], value=MIN_STAKE)


# ------------------------------------------------------------------------------------------------- submitUpdate


def test_submit_records_update_and_emits(market, pid, trainers):
    register_all(market, pid, trainers[:1])
    tx = market.submitUpdate(pid, 0, cid("u"), sha("u"), sender=trainers[0])
    (event,) = tx.events.filter(market.UpdateSubmitted)
    assert (event.projectId, event.round, event.trainer) == (pid, 0, trainers[0].address)
    assert event.cid == cid("u") and event.sha256 == sha("u")
    assert market.getSubmission(pid, 0, trainers[0]).submitted
    assert market.getTrainer(pid, trainers[0]).submissions == 1
    assert market.getProject(pid).roundSubmissions == 1


def test_submit_reverts(market, pid, trainers, outsider, chain):
    register_all(market, pid, trainers[:1])
    trainer = trainers[0]
    with reverts(market.NotRegistered, projectId=pid, trainer=outsider.address):
        market.submitUpdate(pid, 0, cid("u"), sha("u"), sender=outsider)
    with reverts(market.WrongRound, round=1, openRound=0):
        market.submitUpdate(pid, 1, cid("u"), sha("u"), sender=trainer)
    with reverts(market.InvalidContentReference):
        market.submitUpdate(pid, 0, "", sha("u"), sender=trainer)
    with reverts(market.InvalidContentReference):
        market.submitUpdate(pid, 0, cid("u"), b"\x00" * 32, sender=trainer)
    with reverts(market.UnknownProject, projectId=pid + 1):
        market.submitUpdate(pid + 1, 0, cid("u"), sha("u"), sender=trainer)
    market.submitUpdate(pid, 0, cid("u"), sha("u"), sender=trainer)
    with reverts(market.AlreadySubmitted, projectId=pid, round=0, trainer=trainer.address):
        market.submitUpdate(pid, 0, cid("v"), sha("v"), sender=trainer)


def test_submission_window_is_inclusive_of_its_end(market, pid, trainers, chain):
    register_all(market, pid, trainers[:2])
    closes_at = market.roundDeadlines(pid)[0]
    warp_to(chain, closes_at)
    submit_all(market, pid, 0, trainers[:1])
    warp_to(chain, closes_at + 1)
    with reverts(market.SubmissionWindowClosed, round=0, closedAt=closes_at):
        submit_all(market, pid, 0, trainers[1:2])


# ------------------------------------------------------------------------------------------------ finalizeRound


def test_finalize_credits_shares_and_opens_next_round(market, pid, trainers, aggregator, owner, chain):
    register_all(market, pid, trainers[:3])
    submit_all(market, pid, 0, trainers[:3])
    scores = [SCORE_ONE // 2, SCORE_ONE // 3, SCORE_ONE - SCORE_ONE // 2 - SCORE_ONE // 3]
    r = result(0, trainers[:3], scores)
    assert bytes(market.resultDigestOf(pid, 0, r)) == expected_digest(
        chain.chain_id, market.address, pid, 0, r
    )
    tx = market.finalizeRound(pid, 0, r, sender=aggregator)

    expected = dict(zip(r["trainers"], shares(round_pool(0), r["scores"]), strict=True))
    for trainer in trainers[:3]:
        assert market.getTrainer(pid, trainer).reward == expected[trainer.address]
        assert market.getSubmission(pid, 0, trainer).share == expected[trainer.address]
    allocated = sum(expected.values())
    (finalized,) = tx.events.filter(market.RoundFinalized)
    digest = expected_digest(chain.chain_id, market.address, pid, 0, r)
    assert bytes(finalized.resultDigest) == digest == bytes(market.roundResultDigest(pid, 0))
    assert (finalized.allocated, finalized.dust) == (allocated, round_pool(0) - allocated)
    assert finalized.modelCid == r["modelCid"] and finalized.reportSha256 == r["reportSha256"]
    (scored,) = tx.events.filter(market.RoundScored)
    assert list(scored.trainers) == r["trainers"] and list(scored.scores) == r["scores"]
    (opened,) = tx.events.filter(market.RoundOpened)
    assert opened.round == 1 and opened.openedAt == tx.timestamp

    rd = market.getRound(pid, 0)
    assert (rd.finalizedAt, rd.allocated, rd.submitters, rd.flaggedCount) == (tx.timestamp, allocated, 3, 0)
    assert rd.modelCid == r["modelCid"] and bytes(rd.modelSha256) == r["modelSha256"]
    assert rd.reportCid == r["reportCid"] and bytes(rd.resultDigest) == digest
    assert market.getRound(pid, 1).openedAt == tx.timestamp
    p = market.getProject(pid)
    assert (p.currentRound, p.roundSubmissions, p.totalSubmissions) == (1, 0, 3)
    assert (p.allocatedPool, p.ownerRefund, p.lastFinalizedAt) == (
        round_pool(0),
        round_pool(0) - allocated,
        tx.timestamp,
    )
    assert not market.isRoundFinal(pid, 0)
    warp_to(chain, tx.timestamp + CHALLENGE_WINDOW + 1)
    chain.mine()
    assert market.isRoundFinal(pid, 0) and not market.isRoundFinal(pid, 1)


def test_finalize_waits_for_the_window_unless_everyone_submitted(market, pid, trainers, aggregator, chain):
    register_all(market, pid, trainers[:3])
    with reverts(market.RoundStillOpen, round=0):
        market.finalizeRound(pid, 0, result(0, [], []), sender=aggregator)
    submit_all(market, pid, 0, trainers[:2])
    closes_at = market.roundDeadlines(pid)[0]
    with reverts(market.RoundStillOpen, round=0, closesAt=closes_at):
        market.finalizeRound(pid, 0, result(0, trainers[:2], [1, 1]), sender=aggregator)
    warp_to(chain, closes_at + 1)
    market.finalizeRound(pid, 0, result(0, trainers[:2], [1, 1]), sender=aggregator)
    submit_all(market, pid, 1, trainers[:3])
    market.finalizeRound(pid, 1, result(1, trainers[:3], [1, 1, 1]), sender=aggregator)
    assert market.getProject(pid).currentRound == 2


def test_finalize_after_the_deadline_reverts(market, pid, trainers, aggregator, chain):
    register_all(market, pid, trainers[:2])
    submit_all(market, pid, 0, trainers[:1])
    deadline = market.roundDeadlines(pid)[1]
    before = chain.snapshot()
    warp_to(chain, deadline + 1)
    with reverts(market.AggregationDeadlinePassed, round=0, deadline=deadline):
        market.finalizeRound(pid, 0, result(0, trainers[:1], [1]), sender=aggregator)
    chain.restore(before)
    warp_to(chain, deadline)  # the deadline itself is still in time
    market.finalizeRound(pid, 0, result(0, trainers[:1], [1]), sender=aggregator)


def test_finalize_reverts_on_bad_results(market, pid, trainers, aggregator, outsider, chain):
    a, b, c = trainers[:3]
    register_all(market, pid, [a, b, c])
    submit_all(market, pid, 0, [a, b])
    warp_to(chain, market.roundDeadlines(pid)[0] + 1)
    bad = {
        "not the aggregator": (market.NotAggregator, {"caller": outsider.address}, result(0, [a, b], [1, 1])),
        "length mismatch": (
            market.LengthMismatch,
            {"trainers": 2, "scores": 1},
            result(0, [a, b], [1], sort=False),
        ),
        "missing submitter": (
            market.SubmitterCountMismatch,
            {"submitters": 2, "listed": 1},
            result(0, [a], [1]),
        ),
        "non-submitter scored": (market.NotSubmitter, {"trainer": c.address}, result(0, [a, c], [1, 1])),
        "unregistered scored": (
            market.NotSubmitter,
            {"trainer": outsider.address},
            result(0, [a, outsider], [1, 1]),
        ),
        "duplicate": (market.TrainersNotSorted, {"index": 1}, result(0, [a, a], [1, 1])),
        "unsorted": (
            market.TrainersNotSorted,
            {"index": 1},
            result(0, sorted_desc([a, b]), [1, 1], sort=False),
        ),
        "flagged outsider": (
            market.FlaggedNotSubmitter,
            {"trainer": outsider.address},
            result(0, [a, b], [1, 1], [outsider]),
        ),
        "flagged scored": (
            market.FlaggedTrainerScored,
            {"trainer": a.address, "score": 5},
            result(0, [a, b], [5, 1], [a]),
        ),
        "empty model cid": (
            market.InvalidContentReference,
            {},
            {**result(0, [a, b], [1, 1]), "modelCid": ""},
        ),
        "zero report hash": (
            market.InvalidContentReference,
            {},
            {**result(0, [a, b], [1, 1]), "reportSha256": bytes(32)},
        ),
    }
    for label, (error, inputs, r) in bad.items():
        sender = outsider if label == "not the aggregator" else aggregator
        with reverts(error, **inputs):
            market.finalizeRound(pid, 0, r, sender=sender)
    with reverts(market.WrongRound, round=1, openRound=0):
        market.finalizeRound(pid, 1, result(1, [a, b], [1, 1]), sender=aggregator)
    market.finalizeRound(pid, 0, result(0, [a, b], [0, 1], [a]), sender=aggregator)
    assert market.getTrainer(pid, a).flags == 1 and market.getSubmission(pid, 0, a).flagged


def sorted_desc(accounts) -> list[str]:
    return sorted((acct.address for acct in accounts), key=lambda address: -int(address, 16))


def test_round_without_scores_or_submitters_goes_to_owner(market, pid, trainers, aggregator, chain):
    register_all(market, pid, trainers[:2])
    submit_all(market, pid, 0, trainers[:2])
    market.finalizeRound(pid, 0, result(0, trainers[:2], [0, 0]), sender=aggregator)
    warp_to(chain, market.roundDeadlines(pid)[0] + 1)
    tx = market.finalizeRound(pid, 1, result(1, [], []), sender=aggregator)
    (event,) = tx.events.filter(market.RoundFinalized)
    assert (event.allocated, event.dust) == (0, round_pool(1))
    assert market.getProject(pid).ownerRefund == round_pool(0) + round_pool(1)
    assert market.getTrainer(pid, trainers[0]).reward == 0


def test_last_round_completes_the_project(market, pid, trainers, aggregator):
    register_all(market, pid, trainers[:2])
    for round_ in range(ROUNDS):
        submit_all(market, pid, round_, trainers[:2])
        tx = market.finalizeRound(pid, round_, result(round_, trainers[:2], [1, 2]), sender=aggregator)
    assert len(tx.events.filter(market.ProjectCompleted)) == 1 and not tx.events.filter(market.RoundOpened)
    p = market.getProject(pid)
    assert (p.status, p.currentRound, p.allocatedPool) == (COMPLETED, ROUNDS, POOL)
    # The division remainder rode on the last round: every wei of the pool is allocated or refunded.
    rewards = sum(market.getTrainer(pid, t).reward for t in trainers[:2])
    assert rewards + p.ownerRefund == POOL
    with reverts(market.ProjectNotActive, status=COMPLETED):
        submit_all(market, pid, ROUNDS, trainers[:1])
    with reverts(market.ProjectNotActive, status=COMPLETED):
        market.finalizeRound(pid, ROUNDS, result(ROUNDS, [], []), sender=aggregator)
