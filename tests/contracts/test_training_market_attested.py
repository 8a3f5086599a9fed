"""TrainingMarket with a verifier committee: finalization pins the committee's snapshot, a quorum may attest the
round, and an attested round stays challengeable until its window ends; when a challenge overturns it, every
member who attested it loses its stake (burned) and its seat. Claims never wait for, nor depend on, the committee.

The committee is the real VerifierCommittee with four admitted, equal-stake members (quorum: three); signatures are
made in Python (`backend.committee.bls`). A test-only MisbehavingCommittee shows that a committee that reverts,
burns its gas or answers malformed data never blocks finalization, rulings or claims.
"""

from __future__ import annotations

import hashlib

import ape
import pytest
from ape.exceptions import ContractLogicError
from eth_abi import encode
from eth_utils import keccak
from market_helpers import (
    ARBITRATION_PERIOD,
    BOND,
    BURN,
    CHALLENGE_WINDOW,
    NO_COMMITTEE,
    NO_FORWARDER,
    POOL,
    claims_open,
    close_commits,
    commit_all,
    create,
    is_round_final,
    params,
    register_all,
    result,
    reveal_all,
    reveal_validation,
    reverts,
    submit_all,
    warp_to,
)

from backend.chain.market_types import ProjectParameter as Parameter
from backend.committee import bls

VERIFIER_STAKE = 10**18
# A member stays slashable for the exit delay: longer than the challenge window plus the arbiter's 7 days.
EXIT_DELAY = CHALLENGE_WINDOW + ARBITRATION_PERIOD + 86400
KEYS = [bls.derive_keypair(hashlib.sha256(f"market committee key {i}".encode()).digest()) for i in range(5)]
MEMBERS = range(10, 15)  # accounts of the verifiers (KEYS[4] joins late in one test)
REVERT, BURN_GAS, SHORT_ANSWER, NOT_A_BOOL = range(4)  # MisbehavingCommittee.Mode
ACTIVE_MEMBER, SLASHED = 1, 3  # VerifierCommittee.Status


def seat(committee, chain, admin, account, keys) -> None:
    committee.admit(account, sender=admin)
    proof = bls.prove_possession(keys, account.address, chain.chain_id, committee.address)
    committee.register(keys.public_g1, keys.public_g2, proof, sender=account, value=VERIFIER_STAKE)


@pytest.fixture(scope="module")
def committee(project, chain, accounts):
    """Four members with equal stakes, seated once; each test rolls back to this state."""
    admin = accounts[0]
    contract = admin.deploy(
        project.VerifierCommittee, admin.address, VERIFIER_STAKE, VERIFIER_STAKE, EXIT_DELAY
    )
    for i, keys in zip(MEMBERS, KEYS[:4], strict=False):
        seat(contract, chain, admin, accounts[i], keys)
    return contract


@pytest.fixture(scope="module")
def misbehaving(project):
    # By path: Ape's source scan may not reach contracts/test/ (see test_training_market_challenge.py).
    return project.load_contracts("contracts/test/MisbehavingCommittee.sol")["MisbehavingCommittee"]


@pytest.fixture
def market(project, owner, committee):
    contract = owner.deploy(project.TrainingMarket, committee.address, NO_FORWARDER)
    committee.grantRole(committee.MARKET_ROLE(), contract.address, sender=owner)
    return contract


def attest(committee, market, pid: int, round_: int, signers: list[int], sender):
    """Sign the stored digest with the signers' keys, aggregate, and submit one attestation."""
    digest = bytes(market.roundResultDigest(pid, round_))
    bitmap = bls.signer_bitmap(signers, 255)
    apk_g2 = bls.aggregate_g2(KEYS[i].public_g2 for i in signers)
    signature = bls.aggregate_g1(bls.sign(KEYS[i].secret, digest) for i in signers)
    return committee.attest(market, pid, round_, digest, bitmap, apk_g2, signature, sender=sender)


def finalized_project(market, owner, aggregator, arbiter, submitters, rounds: int = 1, scores=None) -> int:
    """A project whose rounds are all finalized right away (everyone commits and reveals)."""
    pid = create(market, owner, aggregator, arbiter, rounds=rounds)
    register_all(market, pid, submitters)
    for round_ in range(rounds):
        submit_all(market, pid, round_, submitters)
        r = result(round_, submitters, scores or [1] * len(submitters))
        market.finalizeRound(pid, round_, r, sender=aggregator)
    return pid


def sealed_round_of_twins(market, pids, trainers, revealer) -> None:
    """Round 0 of projects created together, played side by side (one clock): everyone registers and commits in
    each, the commits close, everyone reveals and the shards are revealed."""
    for pid in pids:
        register_all(market, pid, trainers)
        commit_all(market, pid, 0, trainers)
    close_commits(ape.chain, market, pids[-1])
    for pid in pids:
        reveal_all(market, pid, 0, trainers)
        reveal_validation(market, pid, 0, revealer)


def window_end(market, pid: int, round_: int) -> int:
    return market.getRound(pid, round_).finalizedAt + CHALLENGE_WINDOW


# ------------------------------------------------------------------------------------------------ construction


def test_the_committee_is_fixed_at_construction(project, owner, outsider, committee, market):
    assert market.committee() == committee.address
    assert owner.deploy(project.TrainingMarket, NO_COMMITTEE, NO_FORWARDER).committee() == NO_COMMITTEE
    # Ape does not decode a constructor's custom error: compare the revert data itself.
    expected = keccak(text="InvalidParameter(uint8)")[:4] + encode(["uint8"], [Parameter.COMMITTEE])
    with pytest.raises(ContractLogicError) as info:
        owner.deploy(project.TrainingMarket, outsider.address, NO_FORWARDER)  # no code: not a committee
    assert info.value.message == "0x" + expected.hex()


def test_a_challenge_must_be_settled_before_an_attester_can_leave(
    project, owner, aggregator, arbiter, accounts
):
    """A window the committee's exit delay does not cover would let an attester withdraw before the ruling."""
    quick = owner.deploy(project.VerifierCommittee, owner.address, VERIFIER_STAKE, VERIFIER_STAKE, 3600)
    market = owner.deploy(project.TrainingMarket, quick.address, NO_FORWARDER)
    with reverts(market.InvalidParameter, name=Parameter.CHALLENGE_WINDOW):
        market.createProject(params(aggregator, arbiter), sender=owner, value=POOL)
    # Without challenges there is nothing to settle.
    market.createProject(
        params(aggregator, arbiter, challengeWindow=0, challengeBond=0), sender=owner, value=POOL
    )


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

    seat(committee, chain, owner, accounts[MEMBERS[4]], KEYS[4])  # joins after finalization: epoch 5
    assert committee.roundRecord(market, pid, 0, digest).epoch == 4
    with ape.reverts(committee.UnknownSigner, committeeSize=4):
        attest(committee, market, pid, 0, [0, 1, 4], outsider)
    attest(committee, market, pid, 0, [0, 1, 2], outsider)
    assert committee.isAttested(market, pid, 0)
    assert committee.roundRecord(market, pid, 0, digest).signers == 0b111


# ---------------------------------------------------------------------------------------- attested rounds


def test_an_attestation_does_not_make_a_round_final_or_open_claims(
    market, committee, owner, aggregator, arbiter, trainers, outsider, chain
):
    pid = finalized_project(market, owner, aggregator, arbiter, trainers[:2])
    attest(committee, market, pid, 0, [0, 1, 2, 3], outsider)
    assert (
        committee.isAttested(market, pid, 0)
        and not is_round_final(market, pid, 0)
        and not claims_open(market, pid)
    )
    with reverts(market.ClaimsNotOpen, projectId=pid):
        market.claim(pid, sender=trainers[0])
    warp_to(chain, window_end(market, pid, 0) + 1)
    chain.mine()
    assert is_round_final(market, pid, 0) and claims_open(market, pid)
    market.claim(pid, sender=trainers[0])


def test_an_attested_round_stays_challengeable_and_an_upheld_challenge_slashes_its_attesters(
    market, committee, owner, aggregator, arbiter, trainers, outsider, accounts, chain
):
    pid = finalized_project(market, owner, aggregator, arbiter, trainers[:2])
    attest(committee, market, pid, 0, [0, 1, 2], outsider)  # members 0..2 vouch for the result
    market.challenge(pid, 0, sender=outsider, value=BOND)
    burned_before = chain.get_balance(BURN)
    epoch_before = committee.currentEpoch()
    tx = market.resolveChallenge(pid, 0, True, sender=arbiter)
    assert not tx.events.filter(market.CommitteeSlashFailed)
    slashed = tx.events.filter(committee.VerifierSlashed)
    attesters = {accounts[MEMBERS[i]].address for i in range(3)}
    assert {e.verifier for e in slashed} == attesters and all(e.amount == VERIFIER_STAKE for e in slashed)
    (summary,) = tx.events.filter(committee.AttestersSlashed)
    assert summary.burned == 3 * VERIFIER_STAKE
    assert chain.get_balance(BURN) == burned_before + 3 * VERIFIER_STAKE
    for address in attesters:
        info = committee.verifiers(address)
        assert (info.stake, info.status) == (0, SLASHED)
    # The one member who did not attest keeps its stake and seat; the committee goes on without the others.
    survivor = accounts[MEMBERS[3]].address
    assert committee.verifiers(survivor).status == ACTIVE_MEMBER
    assert committee.currentEpoch() == epoch_before + 1
    assert list(committee.committee(committee.currentEpoch())[0]) == [survivor]
    with ape.reverts(committee.VerifierNotExiting):
        committee.withdraw(sender=accounts[MEMBERS[0]])


def test_a_slashed_member_that_was_leaving_gets_nothing_back(
    market, committee, owner, aggregator, arbiter, trainers, outsider, accounts, chain
):
    pid = finalized_project(market, owner, aggregator, arbiter, trainers[:2])
    attest(committee, market, pid, 0, [0, 1, 2], outsider)
    leaver = accounts[MEMBERS[0]]
    committee.requestExit(sender=leaver)  # attests, then tries to leave before the ruling
    market.challenge(pid, 0, sender=outsider, value=BOND)
    market.resolveChallenge(pid, 0, True, sender=arbiter)
    assert committee.verifiers(leaver.address).stake == 0
    warp_to(chain, chain.blocks.head.timestamp + EXIT_DELAY + 1)
    with ape.reverts(committee.VerifierNotExiting):
        committee.withdraw(sender=leaver)


def test_a_rejected_challenge_or_an_unattested_round_slashes_nobody(
    market, committee, owner, aggregator, arbiter, trainers, outsider, accounts
):
    attested = finalized_project(market, owner, aggregator, arbiter, trainers[:2])
    attest(committee, market, attested, 0, [0, 1, 2], outsider)
    market.challenge(attested, 0, sender=outsider, value=BOND)
    tx = market.resolveChallenge(attested, 0, False, sender=arbiter)
    assert not tx.events.filter(committee.VerifierSlashed)
    unattested = finalized_project(market, owner, aggregator, arbiter, trainers[:2])
    market.challenge(unattested, 0, sender=outsider, value=BOND)
    tx = market.resolveChallenge(unattested, 0, True, sender=arbiter)
    assert not tx.events.filter(committee.VerifierSlashed)
    assert all(committee.verifiers(accounts[m].address).stake == VERIFIER_STAKE for m in MEMBERS[:4])


def test_only_a_trusted_market_slashes(committee, market, outsider):
    """A contract posing as a market could report any digest the members once signed: only MARKET_ROLE slashes."""
    with ape.reverts(committee.AccessControlUnauthorizedAccount, account=outsider.address):
        committee.slashAttesters(1, 0, sender=outsider)
    assert committee.hasRole(committee.MARKET_ROLE(), market.address)


# ------------------------------------------------------------------------------------------- failure modes


@pytest.mark.parametrize("mode", [REVERT, BURN_GAS, SHORT_ANSWER, NOT_A_BOOL])
def test_a_broken_committee_blocks_nothing(
    project, misbehaving, mode, owner, aggregator, arbiter, trainers, outsider, chain
):
    broken = owner.deploy(misbehaving)
    broken.setMode(mode, sender=owner)
    market = owner.deploy(project.TrainingMarket, broken.address, NO_FORWARDER)
    pid = create(market, owner, aggregator, arbiter, rounds=1)
    disputed = create(market, owner, aggregator, arbiter, rounds=1)
    sealed_round_of_twins(market, [pid, disputed], trainers[:2], outsider)
    for project_id in (pid, disputed):
        tx = market.finalizeRound(project_id, 0, result(0, trainers[:2], [1, 1]), sender=aggregator)
        # A pin that reverts or runs out of its gas is reported; a malformed answer to it is ignored.
        assert len(tx.events.filter(market.CommitteePinFailed)) == (1 if mode in (REVERT, BURN_GAS) else 0)
    assert not claims_open(market, pid)
    market.challenge(disputed, 0, sender=outsider, value=BOND)
    tx = market.resolveChallenge(disputed, 0, True, sender=arbiter)
    # The ruling stands whatever the committee does with the slash.
    assert len(tx.events.filter(market.CommitteeSlashFailed)) == (1 if mode in (REVERT, BURN_GAS) else 0)
    assert len(tx.events.filter(market.RoundReversed)) == 1
    warp_to(chain, max(window_end(market, p, 0) for p in (pid, disputed)) + 1)
    chain.mine()
    assert claims_open(market, pid) and claims_open(market, disputed)
    market.claim(pid, sender=trainers[0])
    market.claim(disputed, sender=outsider)


def test_too_little_gas_for_the_committee_reverts_instead_of_skipping_it(
    market, committee, owner, aggregator, arbiter, trainers, outsider
):
    """Otherwise a caller could starve the committee call on purpose: skip the pin, or the slash of the members
    who attested an overturned round."""
    a, b = trainers[:2]
    twins = [create(market, owner, aggregator, arbiter, rounds=2) for _ in range(2)]
    sealed_round_of_twins(market, twins, [a, b], outsider)
    measured, pid = twins
    # What the same call used on a twin project: enough for all of it, not for the reserve on top.
    used = market.finalizeRound(measured, 0, result(0, [a, b], [1, 1]), sender=aggregator).gas_used
    with reverts(market.CommitteeGasTooLow):
        market.finalizeRound(pid, 0, result(0, [a, b], [1, 1]), sender=aggregator, gas_limit=used)
    market.finalizeRound(pid, 0, result(0, [a, b], [1, 1]), sender=aggregator)

    attest(committee, market, measured, 0, [0, 1, 2], outsider)
    market.challenge(measured, 0, sender=outsider, value=BOND)
    slash = market.COMMITTEE_SLASH_GAS()
    with reverts(market.CommitteeGasTooLow):
        market.resolveChallenge(measured, 0, True, sender=arbiter, gas_limit=slash)
    market.resolveChallenge(measured, 0, True, sender=arbiter)


def test_a_market_without_committee_calls_out_to_nobody(project, owner, aggregator, arbiter, trainers, chain):
    market = owner.deploy(project.TrainingMarket, NO_COMMITTEE, NO_FORWARDER)
    pid = create(market, owner, aggregator, arbiter, rounds=1)
    register_all(market, pid, trainers[:2])
    submit_all(market, pid, 0, trainers[:2])
    tx = market.finalizeRound(pid, 0, result(0, trainers[:2], [1, 1]), sender=aggregator)
    assert {log["address"] for log in tx.logs} == {market.address}  # no call out
    warp_to(chain, window_end(market, pid, 0))
    with reverts(market.ClaimsNotOpen, projectId=pid):
        market.claim(pid, sender=trainers[0])
    warp_to(chain, window_end(market, pid, 0) + 1)
    market.claim(pid, sender=trainers[1])


def test_claims_cost_the_same_whatever_the_committee(
    project, misbehaving, market, committee, owner, aggregator, arbiter, trainers, chain
):
    """Claims ask the committee nothing, so a committee that burns its gas cannot make them costly, and a project
    with many rounds inside their windows claims in O(1) (the early-claim loop is gone)."""
    broken = owner.deploy(misbehaving)
    broken.setMode(BURN_GAS, sender=owner)
    burning = owner.deploy(project.TrainingMarket, broken.address, NO_FORWARDER)
    gas = []
    for m in (market, burning):
        pid = finalized_project(m, owner, aggregator, arbiter, trainers[:2], rounds=3)
        warp_to(chain, window_end(m, pid, 2) + 1)
        gas.append(m.claim(pid, sender=trainers[0]).gas_used)
    assert abs(gas[0] - gas[1]) < 200, gas
