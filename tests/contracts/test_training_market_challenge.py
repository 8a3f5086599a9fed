"""TrainingMarket challenges (freeze, reject, uphold and reverse, lapse) and re-entrancy by a malicious receiver."""

from __future__ import annotations

import pytest
from eth_utils import keccak
from market_helpers import (
    ARBITRATION_PERIOD,
    BOND,
    BURN,
    CANCELLED,
    CHALLENGE_WINDOW,
    LAPSED,
    MIN_STAKE,
    OPEN,
    POOL,
    REJECTED,
    UPHELD,
    cid,
    close_commits,
    commit_all,
    commitment,
    create,
    is_round_final,
    register_all,
    result,
    reveal_all,
    reveal_validation,
    reversed_rounds,
    reverts,
    round_pool,
    salt,
    sha,
    shares,
    submit_all,
    warp_to,
)

REENTRANCY_REFUSED = keccak(text="ReentrancyGuardReentrantCall()")[:4]


def finalize(market, pid, round_, submitters, scores, aggregator, flagged=()):
    submit_all(market, pid, round_, submitters)
    return market.finalizeRound(pid, round_, result(round_, submitters, scores, flagged), sender=aggregator)


def past_windows(market, pid, chain) -> None:
    warp_to(
        chain, max(market.getProject(pid).lastFinalizedAt + CHALLENGE_WINDOW, chain.blocks.head.timestamp) + 1
    )
    chain.mine()


def drain(market, pid, accounts) -> None:
    """Everyone claims; the escrow is then empty to the wei (the liveness split's last claimer takes its dust)."""
    for account in accounts:
        market.claim(pid, sender=account)
    assert market.balance == market.getProject(pid).escrow == 0


def test_challenge_reverts(market, owner, aggregator, arbiter, trainers, outsider, chain):
    pid = create(market, owner, aggregator, arbiter)
    register_all(market, pid, trainers[:2])
    with reverts(market.RoundNotFinalized, projectId=pid, round=0):
        market.challenge(pid, 0, sender=outsider, value=BOND)
    tx = finalize(market, pid, 0, trainers[:2], [1, 1], aggregator)
    for wrong in (BOND - 1, BOND + 1):
        with reverts(market.WrongBond, sent=wrong, required=BOND):
            market.challenge(pid, 0, sender=outsider, value=wrong)
    warp_to(chain, tx.timestamp + CHALLENGE_WINDOW)  # the window's last second
    event = market.challenge(pid, 0, sender=outsider, value=BOND).events.filter(market.ChallengeOpened)[0]
    assert (event.round, event.challenger, event.bond) == (0, outsider.address, BOND)
    with reverts(market.AlreadyChallenged, projectId=pid, round=0):
        market.challenge(pid, 0, sender=trainers[0], value=BOND)
    tx = finalize(market, pid, 1, trainers[:2], [1, 1], aggregator)
    warp_to(chain, tx.timestamp + CHALLENGE_WINDOW + 1)
    closed_at = tx.timestamp + CHALLENGE_WINDOW
    with reverts(market.ChallengeWindowClosed, projectId=pid, round=1, closedAt=closed_at):
        market.challenge(pid, 1, sender=outsider, value=BOND)
    with reverts(market.UnknownProject, projectId=pid + 1):
        market.challenge(pid + 1, 0, sender=outsider, value=BOND)
    unchallengeable = create(market, owner, aggregator, arbiter, challengeWindow=0, challengeBond=0)
    register_all(market, unchallengeable, trainers[:1])
    finalize(market, unchallengeable, 0, trainers[:1], [1], aggregator)
    with reverts(market.ChallengesDisabled, projectId=unchallengeable):
        market.challenge(unchallengeable, 0, sender=outsider, value=0)


def test_open_challenge_freezes_claims_until_rejected(
    market, owner, aggregator, arbiter, trainers, outsider, chain
):
    pid = create(market, owner, aggregator, arbiter, rounds=1)
    register_all(market, pid, trainers[:2])
    finalize(market, pid, 0, trainers[:2], [1, 3], aggregator)
    market.challenge(pid, 0, sender=outsider, value=BOND)
    assert market.getRound(pid, 0).challenge == OPEN and not is_round_final(market, pid, 0)
    past_windows(market, pid, chain)
    with reverts(market.ClaimsNotOpen, projectId=pid):
        market.claim(pid, sender=trainers[0])
    assert market.claimable(pid, trainers[0]) == 0
    for intruder in (outsider, owner, aggregator):
        with reverts(market.NotArbiter, projectId=pid, caller=intruder.address):
            market.resolveChallenge(pid, 0, False, sender=intruder)
    burned_before = chain.get_balance(BURN)
    tx = market.resolveChallenge(pid, 0, False, sender=arbiter)
    assert not tx.events.filter(market.ChallengeResolved)[0].upheld
    assert tx.events.filter(market.Burned)[0].amount == BOND
    assert chain.get_balance(BURN) == burned_before + BOND
    assert market.getRound(pid, 0).challenge == REJECTED and is_round_final(market, pid, 0)
    with reverts(market.NoOpenChallenge, projectId=pid, round=0):
        market.resolveChallenge(pid, 0, True, sender=arbiter)
    with reverts(market.NothingToClaim, account=outsider.address):
        market.claim(pid, sender=outsider)
    drain(market, pid, [*trainers[:2], owner])


def test_upheld_challenge_reverses_the_round_and_cancels(
    market, owner, aggregator, arbiter, trainers, outsider, chain
):
    # slashAfterFlags = 1: c would be slashed for round 0's flag, unless the round is reversed.
    pid = create(market, owner, aggregator, arbiter, slashAfterFlags=1, slashBps=10_000)
    a, b, c = trainers[:3]
    register_all(market, pid, [a, b, c])
    finalize(market, pid, 0, [a, b, c], [5, 3, 0], aggregator, flagged=[c])
    market.challenge(pid, 0, sender=outsider, value=BOND)
    submit_all(market, pid, 1, [a, b])  # round 1 goes on meanwhile: a and b reveal
    tx = market.resolveChallenge(pid, 0, True, sender=arbiter)
    (reversed_,) = tx.events.filter(market.RoundReversed)
    (cancelled,) = tx.events.filter(market.ProjectCancelled)
    assert reversed_.round == 0 and reversed_.allocated == sum(shares(round_pool(0), [5, 3, 0]))
    assert (cancelled.reason, cancelled.openRound, cancelled.by) == (1, 1, arbiter.address)
    assert market.getRound(pid, 0).challenge == UPHELD and not is_round_final(market, pid, 0)
    assert list(reversed_rounds(market, pid)) == [0]
    p = market.getProject(pid)
    # Round 0's flag fell with the result: c's stake counts as work again; a and b revealed in round 1.
    assert (p.status, p.allocatedPool, p.ownerRefund, p.workWeight, p.roundRevealedStake) == (
        CANCELLED,
        0,
        0,
        3 * MIN_STAKE,
        2 * MIN_STAKE,
    )
    with reverts(market.AlreadyChallenged):
        market.challenge(pid, 0, sender=trainers[3], value=BOND)

    past_windows(market, pid, chain)
    # The whole pool is unallocated again, split by stake times revealed rounds: a and b 2 each, c 1 (equal stakes).
    assert market.claimable(pid, a) == POOL * 2 // 5 + MIN_STAKE
    assert market.claimable(pid, c) == POOL // 5 + MIN_STAKE  # the reversed flag no longer slashes
    assert market.claimable(pid, outsider) == BOND
    assert market.claimable(pid, owner) == 0  # trainers did work: none of the pool goes back
    drain(market, pid, [a, b, c, outsider, owner])


def test_two_upheld_challenges_reverse_both_rounds(
    market, pid, aggregator, arbiter, trainers, accounts, chain
):
    a, b = trainers[:2]
    challengers = [accounts[18], accounts[19]]
    register_all(market, pid, [a, b])
    for round_, scores in enumerate(([1, 0], [0, 1], [1, 1])):
        finalize(market, pid, round_, [a, b], scores, aggregator)
        if round_ < len(
            challengers
        ):  # challenged inside its window, before the next round closes its commits
            market.challenge(pid, round_, sender=challengers[round_], value=BOND)
    assert market.getProject(pid).openChallenges == 2
    market.resolveChallenge(pid, 1, True, sender=arbiter)
    tx = market.resolveChallenge(pid, 0, True, sender=arbiter)
    assert not tx.events.filter(market.ProjectCancelled)  # already cancelled by the first ruling
    assert sorted(reversed_rounds(market, pid)) == [0, 1]
    past_windows(market, pid, chain)
    # Round 2 stands; rounds 0 and 1 go back to the pool and are split by stake times work (3 rounds each).
    unallocated = round_pool(0) + round_pool(1)
    for trainer in (a, b):
        expected = shares(round_pool(2), [1, 1])[0] + unallocated // 2 + MIN_STAKE
        assert market.claimable(pid, trainer) == expected
    owed_dust = round_pool(2) - 2 * shares(round_pool(2), [1, 1])[0]  # round 2's dust is the owner's refund
    assert market.claimable(pid, accounts[0]) == owed_dust
    drain(market, pid, [a, b, *challengers, accounts[0]])


def test_unresolved_challenge_lapses(market, pid, aggregator, trainers, outsider, owner, chain):
    register_all(market, pid, trainers[:2])
    finalize(market, pid, 0, trainers[:2], [1, 1], aggregator)
    with reverts(market.NoOpenChallenge, projectId=pid, round=0):
        market.expireChallenge(pid, 0, sender=outsider)
    tx = market.challenge(pid, 0, sender=outsider, value=BOND)
    until = tx.timestamp + ARBITRATION_PERIOD
    warp_to(chain, until)
    with reverts(market.ArbitrationPending, projectId=pid, round=0, until=until):
        market.expireChallenge(pid, 0, sender=trainers[0])
    warp_to(chain, until + 1)
    burned_before = chain.get_balance(BURN)
    tx = market.expireChallenge(pid, 0, sender=trainers[0])
    (lapsed,) = tx.events.filter(market.ChallengeLapsed)
    # A silent arbiter's freeze is not free: the challenger forfeits half its bond (burned).
    assert lapsed.burned == BOND // 2 and tx.events.filter(market.Burned)[0].amount == BOND // 2
    assert chain.get_balance(BURN) == burned_before + BOND // 2
    assert market.getRound(pid, 0).challenge == LAPSED and market.getProject(pid).openChallenges == 0
    with reverts(market.NoOpenChallenge):
        market.expireChallenge(pid, 0, sender=trainers[0])
    # The aggregator stalled meanwhile: cancel, and the rest of the challenger's bond comes back with the claims.
    market.cancel(pid, sender=outsider)
    assert market.claimable(pid, outsider) == BOND - BOND // 2
    drain(market, pid, [*trainers[:2], outsider, owner])


# ---------------------------------------------------------------------------------------------- re-entrancy


@pytest.fixture(scope="session")
def malicious_trainer(project):
    # By path, not `project.MaliciousTrainer`: Ape's source scan stops after 500 files and contracts/.cache
    # (OpenZeppelin) alone holds more, so a contract in a subfolder can be missed (and the miss is slow).
    return project.load_contracts("contracts/test/MaliciousTrainer.sol")["MaliciousTrainer"]


@pytest.fixture
def attacker(malicious_trainer, market, owner, aggregator, arbiter, trainers, outsider, chain):
    """A MaliciousTrainer in a completed one-round project next to an honest trainer, claims open."""
    pid = create(market, owner, aggregator, arbiter, rounds=1)
    contract = outsider.deploy(malicious_trainer, market.address, pid)
    contract.register(sender=outsider, value=MIN_STAKE)
    register_all(market, pid, trainers[:1])
    contract.commit(0, commitment(market, pid, 0, contract, sha("evil"), salt(contract, 0)), sender=outsider)
    commit_all(market, pid, 0, trainers[:1])
    close_commits(chain, market, pid)
    contract.reveal(0, cid("evil"), sha("evil"), salt(contract, 0), sender=outsider)
    reveal_all(market, pid, 0, trainers[:1])
    reveal_validation(market, pid, 0, outsider)
    r = result(0, [contract.address, trainers[0].address], [1, 1])
    market.finalizeRound(pid, 0, r, sender=aggregator)
    past_windows(market, pid, chain)
    return contract


@pytest.mark.parametrize("mode", [0, 1], ids=["claim-again", "cancel"])
def test_reentrant_receiver_is_refused_and_paid_once(market, attacker, outsider, trainers, owner, mode):
    pid = attacker.projectId()
    due = market.claimable(pid, attacker.address)
    assert due == shares(POOL, [1, 1])[0] + MIN_STAKE
    escrow = market.getProject(pid).escrow
    attacker.setMode(mode, sender=outsider)
    attacker.claim(sender=outsider)
    assert attacker.payments() == 1 and not attacker.reentrySucceeded()
    assert bytes(attacker.reentryError()) == REENTRANCY_REFUSED
    assert attacker.balance == due and market.getProject(pid).escrow == escrow - due
    with reverts(market.AlreadyClaimed, account=attacker.address):
        attacker.claim(sender=outsider)
    drain(market, pid, [trainers[0], owner])


def test_rejecting_receiver_cannot_block_the_others(market, attacker, outsider, trainers, owner):
    pid = attacker.projectId()
    due = market.claimable(pid, attacker.address)
    attacker.setMode(2, sender=outsider)
    with reverts(attacker.Rejected):
        attacker.claim(sender=outsider)
    for account in (trainers[0], owner):
        market.claim(pid, sender=account)
    assert market.balance == due and not market.getTrainer(pid, attacker.address).claimed
    attacker.setMode(0, sender=outsider)
    attacker.claim(sender=outsider)
    assert market.balance == 0 and attacker.balance == due
