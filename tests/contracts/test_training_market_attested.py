"""TrainingMarket with a verifier committee: a quorum attestation makes a round final before its challenge window
ends (claims open early, the round can no longer be challenged); without one the window and the arbiter apply.

The committee is the real VerifierCommittee with four equal-stake members (quorum: three); signatures are made
in Python (`backend.committee.bls`). A test-only MisbehavingCommittee shows that a committee that reverts, burns its
gas or answers malformed data never blocks finalization, challenges or claims.
"""

from __future__ import annotations

import hashlib

import ape
import pytest
from ape.exceptions import ContractLogicError
from eth_abi import encode
from eth_utils import keccak
from market_helpers import (
    BOND,
    CHALLENGE_WINDOW,
    MIN_STAKE,
    NO_COMMITTEE,
    POOL,
    create,
    register_all,
    result,
    reverts,
    shares,
    submit_all,
    view_reverts,
    warp_to,
)

from backend.committee import bls

VERIFIER_STAKE = 10**18
EXIT_DELAY = 2 * 86400  # attestation window: one day after the pin
KEYS = [bls.derive_keypair(hashlib.sha256(f"market committee key {i}".encode()).digest()) for i in range(5)]
MEMBERS = range(10, 15)  # accounts of the verifiers (KEYS[4] joins late in one test)
REVERT, BURN_GAS, SHORT_ANSWER, NOT_A_BOOL = range(4)  # MisbehavingCommittee.Mode


def seat(committee, chain, account, keys) -> None:
    proof = bls.prove_possession(keys, account.address, chain.chain_id, committee.address)
    committee.register(keys.public_g1, keys.public_g2, proof, sender=account, value=VERIFIER_STAKE)


@pytest.fixture(scope="module")
def committee(project, chain, accounts):
    """Four members with equal stakes, seated once; each test rolls back to this state."""
    contract = accounts[0].deploy(project.VerifierCommittee, VERIFIER_STAKE, EXIT_DELAY)
    for i, keys in zip(MEMBERS, KEYS[:4], strict=False):
        seat(contract, chain, accounts[i], keys)
    return contract


@pytest.fixture(scope="module")
def misbehaving(project):
    # By path: Ape's source scan may not reach contracts/test/ (see test_training_market_challenge.py).
    return project.load_contracts("contracts/test/MisbehavingCommittee.sol")["MisbehavingCommittee"]


@pytest.fixture
def market(project, owner, committee):
    return owner.deploy(project.TrainingMarket, committee.address)


def attest(committee, market, pid: int, round_: int, signers: list[int], sender):
    """Sign the stored digest with the signers' keys, aggregate, and submit one attestation."""
    digest = bytes(market.roundResultDigest(pid, round_))
    bitmap = bls.signer_bitmap(signers, 255)
    apk_g2 = bls.aggregate_g2(KEYS[i].public_g2 for i in signers)
    signature = bls.aggregate_g1(bls.sign(KEYS[i].secret, digest) for i in signers)
    return committee.attest(market, pid, round_, digest, bitmap, apk_g2, signature, sender=sender)


def finalized_project(market, owner, aggregator, arbiter, submitters, rounds: int = 1, scores=None) -> int:
    """A project whose rounds are all finalized right away (everyone submits, so no waiting)."""
    pid = create(market, owner, aggregator, arbiter, rounds=rounds)
    register_all(market, pid, submitters)
    for round_ in range(rounds):
        submit_all(market, pid, round_, submitters)
        r = result(round_, submitters, scores or [1] * len(submitters))
        market.finalizeRound(pid, round_, r, sender=aggregator)
    return pid


def window_end(market, pid: int, round_: int) -> int:
    return market.getRound(pid, round_).finalizedAt + CHALLENGE_WINDOW


# ------------------------------------------------------------------------------------------------ construction


def test_the_committee_is_fixed_at_construction(project, owner, outsider, committee, market):
    assert market.committee() == committee.address
    assert owner.deploy(project.TrainingMarket, NO_COMMITTEE).committee() == NO_COMMITTEE
    # Ape does not decode a constructor's custom error: compare the revert data itself.
    expected = keccak(text="InvalidParameter(string)")[:4] + encode(["string"], ["committee"])
    with pytest.raises(ContractLogicError) as info:
        owner.deploy(project.TrainingMarket, outsider.address)  # no code: not a committee
    assert info.value.message == "0x" + expected.hex()


def test_finalize_pins_the_snapshot_so_latecomers_do_not_count(
    market, committee, owner, aggregator, arbiter, trainers, outsider, accounts, chain
):
    pid = create(market, owner, aggregator, arbiter, rounds=1)
    register_all(market, pid, trainers[:2])
    submit_all(market, pid, 0, trainers[:2])
    tx = market.finalizeRound(pid, 0, result(0, trainers[:2], [1, 1]), sender=aggregator)
    digest = bytes(market.roundResultDigest(pid, 0))
    (pinned,) = tx.events.filter(committee.SnapshotPinned)
    assert (pinned.market, pinned.projectId, pinned.round, bytes(pinned.digest)) == (
        market.address,
        pid,
        0,
        digest,
    )
    assert pinned.epoch == committee.currentEpoch() == 4
    assert not tx.events.filter(market.CommitteePinFailed)
    record = committee.roundRecord(market, pid, 0, digest)
    assert record.pinned and not record.attested

    seat(committee, chain, accounts[MEMBERS[4]], KEYS[4])  # joins after finalization: epoch 5
    assert committee.roundRecord(market, pid, 0, digest).epoch == 4
    with ape.reverts(committee.UnknownSigner, committeeSize=4):
        attest(committee, market, pid, 0, [0, 1, 4], outsider)
    attest(committee, market, pid, 0, [0, 1, 2], outsider)
    assert market.isRoundAttested(pid, 0)


# ----------------------------------------------------------------------------------------------- early claims


def test_a_quorum_attestation_opens_claims_before_the_window_ends(
    market, committee, owner, aggregator, arbiter, trainers, outsider, chain
):
    a, b = trainers[:2]
    pid = finalized_project(market, owner, aggregator, arbiter, [a, b], scores=[3, 1])
    assert (
        not market.claimsOpen(pid) and not market.isRoundFinal(pid, 0) and not market.isRoundAttested(pid, 0)
    )
    with reverts(market.ClaimsNotOpen, projectId=pid):
        market.claim(pid, sender=a)

    attest(committee, market, pid, 0, [0, 1, 2], outsider)
    assert market.isRoundAttested(pid, 0) and market.isRoundFinal(pid, 0) and market.claimsOpen(pid)
    reward_a, reward_b = shares(POOL, [3, 1])
    expected = {a: reward_a + MIN_STAKE, b: reward_b + MIN_STAKE, owner: POOL - reward_a - reward_b}
    for account, amount in expected.items():
        assert market.claimable(pid, account) == amount
        (claimed,) = market.claim(pid, sender=account).events.filter(market.Claimed)
        assert claimed.amount == amount
    assert market.balance == 0 and market.getProject(pid).escrow == 0
    assert chain.blocks.head.timestamp <= window_end(market, pid, 0)  # all of it inside the window


def test_one_signer_short_claims_wait_for_the_window(
    market, committee, owner, aggregator, arbiter, trainers, outsider, chain
):
    pid = finalized_project(market, owner, aggregator, arbiter, trainers[:2])
    with ape.reverts(
        committee.QuorumNotReached, signedStake=2 * VERIFIER_STAKE, totalStake=4 * VERIFIER_STAKE
    ):
        attest(committee, market, pid, 0, [0, 1], outsider)
    assert not market.isRoundAttested(pid, 0)
    warp_to(chain, window_end(market, pid, 0))  # the window's last second: still closed
    with reverts(market.ClaimsNotOpen, projectId=pid):
        market.claim(pid, sender=trainers[0])
    warp_to(chain, window_end(market, pid, 0) + 1)
    chain.mine()
    assert market.claimsOpen(pid) and market.isRoundFinal(pid, 0) and not market.isRoundAttested(pid, 0)
    market.claim(pid, sender=trainers[0])


def test_every_standing_round_must_be_final(
    market, committee, owner, aggregator, arbiter, trainers, outsider, chain
):
    # Both rounds inside their windows: attesting the last one is not enough.
    pid = finalized_project(market, owner, aggregator, arbiter, trainers[:2], rounds=2)
    attest(committee, market, pid, 1, [1, 2, 3], outsider)
    assert market.isRoundFinal(pid, 1) and not market.isRoundFinal(pid, 0) and not market.claimsOpen(pid)
    attest(committee, market, pid, 0, [0, 1, 2, 3], outsider)
    assert market.claimsOpen(pid)

    # Round 0's window over before round 1 is finalized: round 1's attestation is all that is missing.
    late = create(market, owner, aggregator, arbiter, rounds=2)
    register_all(market, late, trainers[:2])
    submit_all(market, late, 0, trainers[:2])
    market.finalizeRound(late, 0, result(0, trainers[:2], [1, 1]), sender=aggregator)
    warp_to(chain, window_end(market, late, 0) + 1)
    submit_all(market, late, 1, trainers[:2])
    market.finalizeRound(late, 1, result(1, trainers[:2], [1, 1]), sender=aggregator)
    assert market.isRoundFinal(late, 0) and not market.claimsOpen(late)
    attest(committee, market, late, 1, [0, 2, 3], outsider)
    assert market.claimsOpen(late)


# ------------------------------------------------------------------------------------------------- challenges


def test_an_attested_round_cannot_be_challenged(
    market, committee, owner, aggregator, arbiter, trainers, outsider
):
    pid = finalized_project(market, owner, aggregator, arbiter, trainers[:2], rounds=2)
    attest(committee, market, pid, 0, [0, 1, 2], outsider)
    with reverts(market.RoundAlreadyAttested, projectId=pid, round=0):
        market.challenge(pid, 0, sender=outsider, value=BOND)
    # Round 1 has no quorum: the arbiter path stays open for it.
    tx = market.challenge(pid, 1, sender=outsider, value=BOND)
    assert tx.events.filter(market.ChallengeOpened)[0].round == 1
    assert not market.claimsOpen(pid)


def test_an_unattested_round_can_be_challenged_and_the_challenge_still_freezes_claims(
    market, committee, owner, aggregator, arbiter, trainers, outsider
):
    pid = finalized_project(market, owner, aggregator, arbiter, trainers[:2])
    market.challenge(pid, 0, sender=outsider, value=BOND)
    # A quorum attesting after the challenge was raised does not end it: the arbiter rules first.
    attest(committee, market, pid, 0, [0, 1, 2], outsider)
    assert market.isRoundAttested(pid, 0) and not market.isRoundFinal(pid, 0) and not market.claimsOpen(pid)
    market.resolveChallenge(pid, 0, False, sender=arbiter)
    assert market.isRoundFinal(pid, 0) and market.claimsOpen(pid)  # inside the window, thanks to the quorum


def test_a_reversed_round_no_longer_holds_claims_back(
    market, committee, owner, aggregator, arbiter, trainers, outsider
):
    pid = finalized_project(market, owner, aggregator, arbiter, trainers[:2], rounds=2)
    attest(committee, market, pid, 1, [0, 1, 2], outsider)
    market.challenge(pid, 0, sender=outsider, value=BOND)
    market.resolveChallenge(pid, 0, True, sender=arbiter)  # round 0 reversed, the project cancelled
    assert list(market.reversedRounds(pid)) == [0] and market.claimsOpen(pid)
    assert market.claimable(pid, outsider) == BOND


# ------------------------------------------------------------------------------------------- failure modes


@pytest.mark.parametrize("mode", [REVERT, BURN_GAS, SHORT_ANSWER, NOT_A_BOOL])
def test_a_broken_committee_falls_back_to_the_window(
    project, misbehaving, mode, owner, aggregator, arbiter, trainers, outsider, chain
):
    broken = owner.deploy(misbehaving)
    broken.setMode(mode, sender=owner)
    market = owner.deploy(project.TrainingMarket, broken.address)
    pid = create(market, owner, aggregator, arbiter, rounds=1)
    disputed = create(market, owner, aggregator, arbiter, rounds=1)
    for project_id in (pid, disputed):
        register_all(market, project_id, trainers[:2])
        submit_all(market, project_id, 0, trainers[:2])
        tx = market.finalizeRound(project_id, 0, result(0, trainers[:2], [1, 1]), sender=aggregator)
        # A pin that reverts or runs out of its gas is reported; a malformed answer to it is ignored.
        assert len(tx.events.filter(market.CommitteePinFailed)) == (1 if mode in (REVERT, BURN_GAS) else 0)
    assert not market.isRoundAttested(pid, 0) and not market.claimsOpen(pid)
    market.challenge(disputed, 0, sender=outsider, value=BOND)
    warp_to(chain, window_end(market, pid, 0) + 1)
    chain.mine()
    assert market.claimsOpen(pid)
    market.claim(pid, sender=trainers[0])


def test_too_little_gas_for_the_committee_reverts_instead_of_skipping_it(
    market, committee, owner, aggregator, arbiter, trainers, outsider
):
    """Otherwise a caller could starve the committee call on purpose: skip the pin, or pass an attested round off
    as unattested to challenge it."""
    reserve = market.COMMITTEE_GAS_RESERVE()
    a, b = trainers[:2]
    twins = [create(market, owner, aggregator, arbiter, rounds=2) for _ in range(2)]
    for pid in twins:
        register_all(market, pid, [a, b])
        submit_all(market, pid, 0, [a, b])
    measured, pid = twins
    # What the same call used on a twin project: enough for all of it, not for the reserve on top.
    used = market.finalizeRound(measured, 0, result(0, [a, b], [1, 1]), sender=aggregator).gas_used
    with reverts(market.CommitteeGasTooLow, needed=reserve):
        market.finalizeRound(pid, 0, result(0, [a, b], [1, 1]), sender=aggregator, gas_limit=used)
    market.finalizeRound(pid, 0, result(0, [a, b], [1, 1]), sender=aggregator)

    submit_all(market, measured, 1, [a, b])
    market.finalizeRound(measured, 1, result(1, [a, b], [1, 1]), sender=aggregator)

    attest(committee, market, measured, 0, [0, 1, 2], outsider)
    challenge_gas = market.challenge(measured, 1, sender=outsider, value=BOND).gas_used
    with reverts(market.CommitteeGasTooLow, needed=reserve):
        market.challenge(measured, 0, sender=outsider, value=BOND, gas_limit=challenge_gas)


def test_a_market_without_committee_waits_for_the_window_as_before(
    project, owner, aggregator, arbiter, trainers, chain
):
    market = owner.deploy(project.TrainingMarket, NO_COMMITTEE)
    pid = create(market, owner, aggregator, arbiter, rounds=1)
    register_all(market, pid, trainers[:2])
    submit_all(market, pid, 0, trainers[:2])
    tx = market.finalizeRound(pid, 0, result(0, trainers[:2], [1, 1]), sender=aggregator)
    assert {log["address"] for log in tx.logs} == {market.address}  # no call out
    assert not market.isRoundAttested(pid, 0)
    warp_to(chain, window_end(market, pid, 0))
    with reverts(market.ClaimsNotOpen, projectId=pid):
        market.claim(pid, sender=trainers[0])
    warp_to(chain, window_end(market, pid, 0) + 1)
    market.claim(pid, sender=trainers[1])


def test_is_round_attested_rejects_unknown_projects(market, chain):
    view_reverts(chain, market, market.UnknownProject, "isRoundAttested", 7, 0, projectId=7)
