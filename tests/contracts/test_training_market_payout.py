"""TrainingMarket payouts: claims after completion, slashing, and the liveness path (cancel past the deadline: the
unallocated pool goes to revealed, unflagged work weighted by stake)."""

from __future__ import annotations

from market_helpers import (
    BURN,
    CANCELLED,
    CHALLENGE_WINDOW,
    MIN_STAKE,
    POOL,
    ROUNDS,
    claims_open,
    close_commits,
    commit_all,
    create,
    register_all,
    result,
    reveal_all,
    reverts,
    round_pool,
    schedule,
    shares,
    submit_all,
    warp_to,
)


def run_rounds(market, pid, aggregator, chain, plan) -> dict[str, int]:
    """Finalize rounds as planned: [(submitters, scores, flagged)]; returns the expected reward per address."""
    rewards: dict[str, int] = {}
    for round_, (submitters, scores, flagged) in enumerate(plan):
        submit_all(market, pid, round_, submitters)
        r = result(round_, submitters, scores, flagged)
        market.finalizeRound(pid, round_, r, sender=aggregator)
        for address, share in zip(r["trainers"], shares(round_pool(round_), r["scores"]), strict=True):
            rewards[address] = rewards.get(address, 0) + share
    return rewards


def open_claims(market, pid, chain) -> None:
    warp_to(chain, market.getProject(pid).lastFinalizedAt + CHALLENGE_WINDOW + 1)
    chain.mine()


def claim(market, pid, account) -> int:
    """Claim, check the Claimed event against the balance change (gas is paid by the claimant), return it."""
    before = account.balance
    tx = market.claim(pid, sender=account)
    (event,) = tx.events.filter(market.Claimed)
    assert event.account == account.address
    assert account.balance == before + event.amount - tx.total_fees_paid
    return event.amount


def test_completed_project_pays_every_participant_and_drains(market, pid, trainers, aggregator, owner, chain):
    a, b, c = trainers[:3]
    register_all(market, pid, [a, b, c])
    plan = [([a, b, c], [5, 3, 2], []), ([a, b], [1, 1], []), ([a, b, c], [7, 0, 11], [])]
    rewards = run_rounds(market, pid, aggregator, chain, plan)
    expected = {t.address: rewards.get(t.address, 0) + MIN_STAKE for t in (a, b, c)}
    expected[owner.address] = POOL - sum(rewards.values())
    open_claims(market, pid, chain)
    assert claims_open(market, pid)
    for account in (a, b, c, owner):
        assert market.claimable(pid, account) == expected[account.address]
    assert sum(expected.values()) == market.balance == market.getProject(pid).escrow
    for account in (c, owner, a, b):
        assert claim(market, pid, account) == expected[account.address]
        assert market.claimable(pid, account) == 0
    assert market.balance == 0 and market.getProject(pid).escrow == 0
    assert market.getTrainer(pid, a).claimed and market.getProject(pid).ownerClaimed


def test_claim_before_the_end_reverts(market, pid, trainers, aggregator, chain):
    register_all(market, pid, trainers[:2])
    with reverts(market.ClaimsNotOpen, projectId=pid):
        market.claim(pid, sender=trainers[0])
    run_rounds(market, pid, aggregator, chain, [(trainers[:2], [1, 1], [])] * ROUNDS)
    # Completed, but the last round's challenge window is still open (its last second included).
    warp_to(chain, market.getProject(pid).lastFinalizedAt + CHALLENGE_WINDOW)
    with reverts(market.ClaimsNotOpen, projectId=pid):
        market.claim(pid, sender=trainers[0])
    assert market.claimable(pid, trainers[0]) == 0 and not claims_open(market, pid)
    warp_to(chain, market.getProject(pid).lastFinalizedAt + CHALLENGE_WINDOW + 1)
    market.claim(pid, sender=trainers[0])


def test_claim_twice_and_outsiders_revert(market, pid, trainers, aggregator, owner, outsider, chain):
    register_all(market, pid, trainers[:1])
    run_rounds(market, pid, aggregator, chain, [(trainers[:1], [1], [])] * ROUNDS)
    open_claims(market, pid, chain)
    for account in (trainers[0], owner):
        market.claim(pid, sender=account)
        with reverts(market.AlreadyClaimed, projectId=pid, account=account.address):
            market.claim(pid, sender=account)
    with reverts(market.NothingToClaim, projectId=pid, account=outsider.address):
        market.claim(pid, sender=outsider)
    with reverts(market.UnknownProject, projectId=pid + 1):
        market.claim(pid + 1, sender=outsider)


def test_owner_who_also_trains_is_paid_in_both_roles(market, pid, trainers, aggregator, owner, chain):
    register_all(market, pid, [owner, trainers[0]])
    rewards = run_rounds(market, pid, aggregator, chain, [([owner, trainers[0]], [1, 2], [])] * ROUNDS)
    open_claims(market, pid, chain)
    refund = POOL - sum(rewards.values())
    assert claim(market, pid, owner) == rewards[owner.address] + MIN_STAKE + refund
    assert claim(market, pid, trainers[0]) == rewards[trainers[0].address] + MIN_STAKE
    assert market.balance == 0


def test_trainers_flagged_often_enough_are_slashed_and_the_slash_burned(
    market, pid, trainers, aggregator, owner, chain
):
    a, b, c = trainers[:3]
    register_all(market, pid, [a, b, c])
    # slashAfterFlags = 2, slashBps = 50%: a is flagged twice (slashed), b once (not slashed).
    plan = [([a, b, c], [0, 1, 1], [a]), ([a, b, c], [0, 0, 1], [a, b]), ([a, b, c], [3, 1, 1], [])]
    rewards = run_rounds(market, pid, aggregator, chain, plan)
    assert (market.getTrainer(pid, a).flags, market.getTrainer(pid, b).flags) == (2, 1)
    open_claims(market, pid, chain)
    burned_before = chain.get_balance(BURN)
    tx = market.claim(pid, sender=a)
    (claimed,) = tx.events.filter(market.Claimed)
    (burned,) = tx.events.filter(market.Burned)
    slash = MIN_STAKE // 2
    assert (claimed.amount, claimed.slashed) == (rewards[a.address] + MIN_STAKE - slash, slash)
    assert burned.amount == slash and chain.get_balance(BURN) == burned_before + slash
    assert claim(market, pid, b) == rewards[b.address] + MIN_STAKE
    for account in (c, owner):
        market.claim(pid, sender=account)
    assert market.balance == 0


def test_slashing_disabled_when_threshold_is_zero(market, owner, aggregator, arbiter, trainers, chain):
    pid = create(market, owner, aggregator, arbiter, slashAfterFlags=0, slashBps=10_000, rounds=1)
    register_all(market, pid, trainers[:2])
    run_rounds(market, pid, aggregator, chain, [(trainers[:2], [0, 1], trainers[:1])])
    open_claims(market, pid, chain)
    assert claim(market, pid, trainers[0]) == MIN_STAKE


# ------------------------------------------------------------------------------------------------------ cancel


def test_cancel_before_the_deadline_reverts(market, pid, trainers, outsider, chain):
    deadline = schedule(market, pid)[2]
    warp_to(chain, deadline)
    with reverts(market.DeadlineNotPassed, projectId=pid, round=0, deadline=deadline):
        market.cancel(pid, sender=outsider)
    warp_to(chain, deadline + 1)
    tx = market.cancel(pid, sender=outsider)
    (event,) = tx.events.filter(market.ProjectCancelled)
    assert (event.projectId, event.by, event.reason, event.openRound) == (pid, outsider.address, 0, 0)
    assert market.getProject(pid).status == CANCELLED
    with reverts(market.ProjectNotActive, status=CANCELLED):
        market.cancel(pid, sender=outsider)


def test_cancel_pays_unallocated_pool_pro_rata_to_stake_times_unflagged_revealed_work(
    market, pid, trainers, aggregator, owner, outsider, chain
):
    a, b, c, d, e = trainers[:5]
    stakes = {a: MIN_STAKE, b: 3 * MIN_STAKE, c: MIN_STAKE, d: MIN_STAKE, e: 2 * MIN_STAKE}
    for trainer, stake in stakes.items():
        market.register(pid, sender=trainer, value=stake)
    # Round 0 stands (c flagged); in round 1 a, b, c and e commit, e never reveals, then the aggregator stalls.
    rewards = run_rounds(market, pid, aggregator, chain, [([a, b, c], [2, 1, 0], [c])])
    commit_all(market, pid, 1, [a, b, c, e])
    close_commits(chain, market, pid)
    reveal_all(market, pid, 1, [a, b, c])
    warp_to(chain, schedule(market, pid)[2] + 1)
    market.cancel(pid, sender=outsider)
    with reverts(market.ProjectNotActive, status=CANCELLED):
        market.finalizeRound(pid, 1, result(1, [a, b, c], [1, 1, 1]), sender=aggregator)

    unallocated = POOL - round_pool(0)
    # c's flagged round 0 does not count, e's unrevealed commitment is a missed round, d did nothing.
    rounds_of_work = {a: 2, b: 2, c: 1, d: 0, e: 0}
    weight = {t: stakes[t] * n for t, n in rounds_of_work.items()}
    total = sum(weight.values())
    p = market.getProject(pid)
    assert p.workWeight + p.roundRevealedStake == total
    assert claims_open(market, pid)  # round 0's challenge window closed long ago
    # Each claim takes its floor of what is still unclaimed, by its weight among those still unclaimed: the last
    # trainer with work takes the rounding dust, and not a wei stays behind.
    left, weighing = unallocated, total
    for t in (a, b, c, d, e):
        share = left * weight[t] // weighing if weighing else 0
        left, weighing = left - share, weighing - weight[t]
        assert claim(market, pid, t) == rewards.get(t.address, 0) + share + stakes[t]
    assert left == 0
    dust = round_pool(0) - sum(rewards.values())
    assert claim(market, pid, owner) == dust  # trainers did work: none of the unallocated pool goes back
    assert market.balance == 0 and market.getProject(pid).escrow == 0


def test_cancel_with_no_revealed_work_refunds_the_owner(market, pid, trainers, owner, outsider, chain):
    register_all(market, pid, trainers[:2])
    commit_all(market, pid, 0, trainers[:1])  # committed, never revealed: no work
    warp_to(chain, schedule(market, pid)[2] + 1)
    market.cancel(pid, sender=outsider)
    assert claim(market, pid, owner) == POOL
    for t in trainers[:2]:
        assert claim(market, pid, t) == MIN_STAKE
    assert market.balance == 0


def test_cancel_keeps_slashes_already_due(market, owner, aggregator, arbiter, trainers, outsider, chain):
    pid = create(market, owner, aggregator, arbiter, slashAfterFlags=1, slashBps=2_500)
    a, b = trainers[:2]
    register_all(market, pid, [a, b])
    run_rounds(market, pid, aggregator, chain, [([a, b], [0, 1], [a])])
    warp_to(chain, schedule(market, pid)[2] + 1)
    market.cancel(pid, sender=outsider)
    tx = market.claim(pid, sender=a)
    (event,) = tx.events.filter(market.Claimed)
    assert event.slashed == MIN_STAKE // 4
    for account in (b, owner):
        market.claim(pid, sender=account)
    assert market.balance == 0  # b alone did unflagged work: it takes the whole unallocated pool
