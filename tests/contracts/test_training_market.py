"""TrainingMarket: creation, registration, sealed submissions (commit, reveal), validation shards and
finalization, and every revert on the way."""

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
    REVEAL_WINDOW,
    ROUNDS,
    SCORE_ONE,
    cid,
    close_commits,
    commit_all,
    commitment,
    create,
    expected_digest,
    is_round_final,
    params,
    register_all,
    result,
    reveal_all,
    reveal_validation,
    reverts,
    round_pool,
    salt,
    schedule,
    sha,
    shares,
    submit_all,
    validation_sha,
    validation_tree,
    view_reverts,
    warp_to,
)

from backend.chain.market_types import ProjectParameter as Parameter

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
    assert bytes(created.validationRoot) == validation_tree(ROUNDS).root
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
    assert (p.roundOpenedAt, p.roundDuration, p.revealWindow, p.aggregationWindow) == (
        tx.timestamp,
        DURATION,
        REVEAL_WINDOW,
        AGGREGATION_WINDOW,
    )
    assert (p.challengeWindow, p.challengeBond, p.minStake, p.maxTrainers) == (
        CHALLENGE_WINDOW,
        BOND,
        MIN_STAKE,
        8,
    )
    assert (p.slashAfterFlags, p.slashBps, p.initialModelCid) == (2, 5_000, cid("model-0"))
    assert bytes(p.validationRoot) == validation_tree(ROUNDS).root
    assert market.balance == POOL
    assert create(market, owner, aggregator, arbiter) == 2
    commit_end = tx.timestamp + DURATION
    assert schedule(market, 1) == (
        commit_end,
        commit_end + REVEAL_WINDOW,
        commit_end + REVEAL_WINDOW + AGGREGATION_WINDOW,
    )


@pytest.mark.parametrize(
    ("override", "name"),
    [
        ({"rounds": 0, "validationRoot": validation_tree(1).root}, Parameter.ROUNDS),
        ({"roundDuration": 0}, Parameter.ROUND_DURATION),
        ({"revealWindow": 0}, Parameter.REVEAL_WINDOW),
        ({"aggregationWindow": 0}, Parameter.AGGREGATION_WINDOW),
        ({"minStake": 0}, Parameter.MIN_STAKE),
        ({"maxTrainers": 0}, Parameter.MAX_TRAINERS),
        ({"maxTrainers": 1_001}, Parameter.MAX_TRAINERS),
        ({"aggregator": ZERO}, Parameter.AGGREGATOR),
        ({"slashBps": 10_001}, Parameter.SLASH_BPS),
        ({"arbiter": ZERO}, Parameter.ARBITER),
        ({"challengeBond": 0}, Parameter.CHALLENGE_BOND),
        ({"validationRoot": bytes(32)}, Parameter.VALIDATION_ROOT),
    ],
)
def test_create_rejects_bad_parameters(market, owner, aggregator, arbiter, override, name):
    with reverts(market.InvalidParameter, name=name):
        market.createProject(params(aggregator, arbiter, **override), sender=owner, value=POOL)


def test_create_rejects_arbiter_that_is_the_aggregator(market, owner, aggregator):
    with reverts(market.InvalidParameter, name=Parameter.ARBITER):
        market.createProject(params(aggregator, aggregator), sender=owner, value=POOL)


@pytest.mark.parametrize("role", ["aggregator", "arbiter"])
def test_the_owner_can_neither_aggregate_nor_judge_its_project(market, owner, aggregator, arbiter, role):
    roles = {"aggregator": aggregator, "arbiter": arbiter, role: owner}
    with reverts(market.ConflictOfInterest, projectId=1, account=owner.address):
        market.createProject(params(roles["aggregator"], roles["arbiter"]), sender=owner, value=POOL)


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
        ("roundResultDigest", (7, 0)),
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


def test_registration_closes_with_the_last_round_commit_window(
    market, owner, aggregator, arbiter, trainers, chain
):
    pid = create(market, owner, aggregator, arbiter, rounds=1)
    commit_end = schedule(market, pid)[0]
    warp_to(chain, commit_end)
    market.register(pid, sender=trainers[0], value=MIN_STAKE)
    warp_to(chain, commit_end + 1)
    with reverts(market.RegistrationClosed, projectId=pid):
        market.register(pid, sender=trainers[1], value=MIN_STAKE)


def test_register_in_an_inactive_project_reverts(market, pid, trainers, outsider, chain):
    warp_to(chain, schedule(market, pid)[2] + 1)
    market.cancel(pid, sender=outsider)
    with reverts(market.ProjectNotActive, projectId=pid, status=CANCELLED):
        market.register(pid, sender=trainers[0], value=MIN_STAKE)


# -------------------------------------------------------------------------------------------- commit and reveal


def test_commit_records_only_the_commitment(market, pid, trainers, chain):
    register_all(market, pid, trainers[:1])
    trainer = trainers[0]
    seal = commitment(market, pid, 0, trainer, sha("u"), salt(trainer, 0))
    # (The contract's formula is private: every reveal of a `commitment` made in Python proves the two agree.)
    tx = market.commitUpdate(pid, 0, seal, sender=trainer)
    (event,) = tx.events.filter(market.UpdateCommitted)
    assert (event.projectId, event.round, event.trainer, bytes(event.commitment)) == (
        pid,
        0,
        trainer.address,
        seal,
    )
    # Nothing that identifies the update: no CID, no sha256, only the commitment.
    assert not tx.events.filter(market.UpdateRevealed)
    entry = market.getSubmission(pid, 0, trainer)
    assert (bytes(entry.commitment), entry.revealed, entry.flagged, entry.share) == (seal, False, False, 0)
    assert (market.getProject(pid).roundCommits, market.getProject(pid).roundReveals) == (1, 0)


def test_reveal_after_the_commit_window_records_the_update(market, pid, trainers, chain):
    register_all(market, pid, trainers[:1])
    trainer = trainers[0]
    commit_all(market, pid, 0, [trainer])
    close_commits(chain, market, pid)
    tx = market.revealUpdate(pid, 0, cid("u"), sha(f"0-{trainer.address}"), salt(trainer, 0), sender=trainer)
    (event,) = tx.events.filter(market.UpdateRevealed)
    assert (event.projectId, event.round, event.trainer) == (pid, 0, trainer.address)
    assert event.cid == cid("u") and bytes(event.sha256) == sha(f"0-{trainer.address}")
    entry = market.getSubmission(pid, 0, trainer)
    assert entry.revealed and int.from_bytes(bytes(entry.commitment), "big") == 0
    p = market.getProject(pid)
    assert (p.roundCommits, p.roundReveals, p.roundRevealedStake) == (1, 1, MIN_STAKE)


def test_commit_reverts(market, pid, trainers, outsider, chain):
    register_all(market, pid, trainers[:1])
    trainer = trainers[0]
    seal = commitment(market, pid, 0, trainer, sha("u"), salt(trainer, 0))
    with reverts(market.NotRegistered, projectId=pid, trainer=outsider.address):
        market.commitUpdate(pid, 0, seal, sender=outsider)
    with reverts(market.WrongRound, round=1, openRound=0):
        market.commitUpdate(pid, 1, seal, sender=trainer)
    for weak in (bytes(32), (1).to_bytes(32, "big"), (2**98 - 1).to_bytes(32, "big")):
        with reverts(market.InvalidCommitment, commitment=weak):
            market.commitUpdate(pid, 0, weak, sender=trainer)
    with reverts(market.UnknownProject, projectId=pid + 1):
        market.commitUpdate(pid + 1, 0, seal, sender=trainer)
    market.commitUpdate(pid, 0, seal, sender=trainer)
    with reverts(market.AlreadyCommitted, projectId=pid, round=0, trainer=trainer.address):
        market.commitUpdate(
            pid, 0, commitment(market, pid, 0, trainer, sha("v"), salt(trainer, 0)), sender=trainer
        )


def test_commit_window_is_inclusive_of_its_end(market, pid, trainers, chain):
    register_all(market, pid, trainers[:2])
    commit_end = schedule(market, pid)[0]
    warp_to(chain, commit_end)
    commit_all(market, pid, 0, trainers[:1])
    warp_to(chain, commit_end + 1)
    with reverts(market.CommitWindowClosed, round=0, closedAt=commit_end):
        commit_all(market, pid, 0, trainers[1:2])


def test_reveal_reverts(market, pid, trainers, outsider, chain):
    a, b = trainers[:2]
    register_all(market, pid, [a, b])
    commit_all(market, pid, 0, [a])
    label = f"0-{a.address}"
    commit_end, reveal_end, _ = schedule(market, pid)
    # Not before the commit window closes: nobody may see an update while others can still commit.
    with reverts(market.NotRevealWindow, round=0, opensAt=commit_end + 1, closesAt=reveal_end):
        market.revealUpdate(pid, 0, cid(label), sha(label), salt(a, 0), sender=a)
    close_commits(chain, market, pid)
    with reverts(market.CommitmentMismatch, projectId=pid, round=0, trainer=a.address):
        market.revealUpdate(pid, 0, cid(label), sha("other update"), salt(a, 0), sender=a)
    with reverts(market.CommitmentMismatch, projectId=pid, round=0, trainer=a.address):
        market.revealUpdate(pid, 0, cid(label), sha(label), salt(a, 0, "another salt"), sender=a)
    with reverts(market.NothingToReveal, projectId=pid, round=0, trainer=b.address):
        market.revealUpdate(pid, 0, cid(label), sha(label), salt(b, 0), sender=b)
    with reverts(market.NothingToReveal, projectId=pid, round=0, trainer=outsider.address):
        market.revealUpdate(pid, 0, cid(label), sha(label), salt(a, 0), sender=outsider)
    with reverts(market.InvalidContentReference):
        market.revealUpdate(pid, 0, "", sha(label), salt(a, 0), sender=a)
    with reverts(market.WrongRound, round=1, openRound=0):
        market.revealUpdate(pid, 1, cid(label), sha(label), salt(a, 0), sender=a)
    market.revealUpdate(pid, 0, cid(label), sha(label), salt(a, 0), sender=a)
    with reverts(market.NothingToReveal, projectId=pid, round=0, trainer=a.address):
        market.revealUpdate(pid, 0, cid(label), sha(label), salt(a, 0), sender=a)


def test_reveal_window_is_inclusive_of_its_end(market, pid, trainers, chain):
    a, b = trainers[:2]
    register_all(market, pid, [a, b])
    commit_all(market, pid, 0, [a, b])
    commit_end, reveal_end, _ = schedule(market, pid)
    warp_to(chain, reveal_end)
    reveal_all(market, pid, 0, [a])
    warp_to(chain, reveal_end + 1)
    with reverts(market.NotRevealWindow, round=0, opensAt=commit_end + 1, closesAt=reveal_end):
        reveal_all(market, pid, 0, [b])


# ----------------------------------------------------------------------------------------------- validation


def test_validation_shard_is_revealed_once_commits_close(market, pid, trainers, outsider, chain):
    tree = validation_tree(ROUNDS)
    commit_end = schedule(market, pid)[0]
    with reverts(market.CommitsStillOpen, projectId=pid, round=0, closesAt=commit_end):
        market.revealValidation(
            pid, 0, cid("validation-0"), validation_sha(0), tree.proof(0), sender=outsider
        )
    close_commits(chain, market, pid)
    # Another round's shard, a wrong digest or a wrong proof do not lead to the root.
    for digest, proof in (
        (validation_sha(1), tree.proof(1)),
        (sha("forged"), tree.proof(0)),
        (validation_sha(0), []),
    ):
        with reverts(market.InvalidValidationProof, projectId=pid, round=0):
            market.revealValidation(pid, 0, cid("validation-0"), digest, proof, sender=outsider)
    with reverts(market.WrongRound, round=1, openRound=0):
        market.revealValidation(
            pid, 1, cid("validation-1"), validation_sha(1), tree.proof(1), sender=outsider
        )
    with reverts(market.InvalidContentReference):
        market.revealValidation(pid, 0, "", validation_sha(0), tree.proof(0), sender=outsider)
    # Anyone holding the shard may reveal it: the proof, not the sender, makes it the round's.
    tx = market.revealValidation(
        pid, 0, cid("validation-0"), validation_sha(0), tree.proof(0), sender=outsider
    )
    (event,) = tx.events.filter(market.ValidationRevealed)
    assert (event.projectId, event.round, event.cid, bytes(event.sha256)) == (
        pid,
        0,
        cid("validation-0"),
        validation_sha(0),
    )
    assert bytes(market.getRound(pid, 0).validationSha256) == validation_sha(0)
    with reverts(market.ValidationAlreadyRevealed, projectId=pid, round=0):
        market.revealValidation(
            pid, 0, cid("validation-0"), validation_sha(0), tree.proof(0), sender=outsider
        )


def test_finalize_waits_for_the_validation_shard(market, pid, trainers, aggregator, outsider, chain):
    register_all(market, pid, trainers[:2])
    commit_all(market, pid, 0, trainers[:2])
    close_commits(chain, market, pid)
    reveal_all(market, pid, 0, trainers[:2])
    with reverts(market.ValidationNotRevealed, projectId=pid, round=0):
        market.finalizeRound(pid, 0, result(0, trainers[:2], [1, 1]), sender=aggregator)
    reveal_validation(market, pid, 0, outsider)
    market.finalizeRound(pid, 0, result(0, trainers[:2], [1, 1]), sender=aggregator)


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
        assert market.getTrainer(pid, trainer).submissions == 1
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
    assert (p.currentRound, p.roundCommits, p.roundReveals, p.roundRevealedStake) == (1, 0, 0, 0)
    assert p.workWeight == 3 * MIN_STAKE
    assert (p.allocatedPool, p.ownerRefund, p.lastFinalizedAt) == (
        round_pool(0),
        round_pool(0) - allocated,
        tx.timestamp,
    )
    assert not is_round_final(market, pid, 0)
    warp_to(chain, tx.timestamp + CHALLENGE_WINDOW + 1)
    chain.mine()
    assert is_round_final(market, pid, 0) and not is_round_final(market, pid, 1)


def test_finalize_waits_for_the_reveals_unless_every_committer_revealed(
    market, pid, trainers, aggregator, chain
):
    register_all(market, pid, trainers[:3])
    with reverts(market.RoundStillOpen, round=0):
        market.finalizeRound(pid, 0, result(0, [], []), sender=aggregator)
    commit_all(market, pid, 0, trainers[:2])
    close_commits(chain, market, pid)
    reveal_validation(market, pid, 0, trainers[2])
    reveal_all(market, pid, 0, trainers[:1])
    reveal_end = schedule(market, pid)[1]
    # One committer has not revealed: the aggregator waits for the reveal window to end.
    with reverts(market.RoundStillOpen, round=0, closesAt=reveal_end):
        market.finalizeRound(pid, 0, result(0, trainers[:1], [1]), sender=aggregator)
    warp_to(chain, reveal_end + 1)
    market.finalizeRound(pid, 0, result(0, trainers[:1], [1]), sender=aggregator)
    # Every committer revealed: finalized at once, although a registered trainer never committed.
    submit_all(market, pid, 1, trainers[:2])
    market.finalizeRound(pid, 1, result(1, trainers[:2], [1, 1]), sender=aggregator)
    assert market.getProject(pid).currentRound == 2


def test_finalize_after_the_deadline_reverts(market, pid, trainers, aggregator, chain):
    register_all(market, pid, trainers[:2])
    submit_all(market, pid, 0, trainers[:1])
    deadline = schedule(market, pid)[2]
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
    commit_all(market, pid, 0, [a, b, c])
    close_commits(chain, market, pid)
    reveal_all(market, pid, 0, [a, b])  # c committed and never revealed: it missed the round
    reveal_validation(market, pid, 0, outsider)
    warp_to(chain, schedule(market, pid)[1] + 1)
    bad = {
        "not the aggregator": (market.NotAggregator, {"caller": outsider.address}, result(0, [a, b], [1, 1])),
        "length mismatch": (
            market.LengthMismatch,
            {"trainers": 2, "scores": 1},
            result(0, [a, b], [1], sort=False),
        ),
        "missing revealer": (
            market.SubmitterCountMismatch,
            {"submitters": 2, "listed": 1},
            result(0, [a], [1]),
        ),
        "unrevealed scored": (market.NotSubmitter, {"trainer": c.address}, result(0, [a, c], [1, 1])),
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
    assert market.getTrainer(pid, c).submissions == 0  # the unrevealed commitment is a missed round


def sorted_desc(accounts) -> list[str]:
    return sorted((acct.address for acct in accounts), key=lambda address: -int(address, 16))


def test_round_without_scores_or_revealers_goes_to_owner(market, pid, trainers, aggregator, outsider, chain):
    register_all(market, pid, trainers[:2])
    submit_all(market, pid, 0, trainers[:2])
    market.finalizeRound(pid, 0, result(0, trainers[:2], [0, 0]), sender=aggregator)
    close_commits(chain, market, pid)
    reveal_validation(market, pid, 1, outsider)
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
        commit_all(market, pid, ROUNDS, trainers[:1])
    with reverts(market.ProjectNotActive, status=COMPLETED):
        market.finalizeRound(pid, ROUNDS, result(ROUNDS, [], []), sender=aggregator)
