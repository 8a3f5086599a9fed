"""VerifierCommittee: admitted, staked BLS verifiers with proof of possession and capped weights, exits with
delay, quorum attestations, and the slashing of the attesters of an overturned round.

Signatures are made in Python (`backend.committee.bls`) and checked on chain, so every test here is also a
Python -> Solidity agreement check. A test-only market (`TestRoundMarket`) stores round digests the way
TrainingMarket computes them.
"""

from __future__ import annotations

import hashlib

import ape
import pytest
from eth_abi import encode
from eth_utils import keccak
from web3.exceptions import ContractCustomError

from backend.committee import bls

MIN_STAKE = 10**18
MAX_WEIGHT = 10 * MIN_STAKE
EXIT_DELAY = 2 * 86400
WINDOW = EXIT_DELAY // 2
PROJECT = 1
MODEL = hashlib.sha256(b"model").digest()
REPORT = hashlib.sha256(b"report").digest()
TRAINERS = ["0x" + "a1" * 20, "0x" + "b2" * 20]
SCORES = [600, 400]

# Test-only contracts, compiled by path: Ape's source scan stops after 500 files and the dependency cache in
# contracts/.cache fills it, so sources under contracts/test/ are not found by name alone.
TEST_SOURCES = ("contracts/test/TestRoundMarket.sol", "contracts/test/VerifierProxy.sol")

KEYS = [bls.derive_keypair(hashlib.sha256(f"committee test key {i}".encode()).digest()) for i in range(6)]


def result_digest(chain_id: int, market: str, project: int, round_: int, flagged=()) -> bytes:
    """TrainingMarket's result digest, recomputed off chain (what verifiers sign)."""
    allocation = keccak(encode(["address[]", "uint64[]", "address[]"], [TRAINERS, SCORES, list(flagged)]))
    return keccak(
        encode(
            ["uint256", "address", "uint256", "uint16", "bytes32", "bytes32", "bytes32"],
            [chain_id, market, project, round_, MODEL, allocation, REPORT],
        )
    )


@pytest.fixture(scope="module")
def test_contracts(project):
    return project.load_contracts(*TEST_SOURCES)


@pytest.fixture
def owner(accounts):
    return accounts[0]


@pytest.fixture
def members(accounts):
    return [accounts[i] for i in range(1, 6)]


def deploy_committee(project, admin):
    return admin.deploy(project.VerifierCommittee, admin.address, MIN_STAKE, MAX_WEIGHT, EXIT_DELAY)


@pytest.fixture
def committee(project, owner):
    return deploy_committee(project, owner)


@pytest.fixture
def market(test_contracts, owner):
    return owner.deploy(test_contracts["TestRoundMarket"])


def pop(keys: bls.KeyPair, account, committee, chain) -> bls.G1Point:
    return bls.prove_possession(keys, account.address, chain.chain_id, committee.address)


def register(committee, chain, account, keys, stake=MIN_STAKE):
    """Admit `account` (the deployer holds ADMISSION_ROLE) and register it."""
    committee.admit(account, sender=ape.accounts.test_accounts[0])
    return committee.register(
        keys.public_g1, keys.public_g2, pop(keys, account, committee, chain), sender=account, value=stake
    )


@pytest.fixture(scope="module")
def seated(project, chain, accounts):
    """Four members with equal stakes, indices 0..3; set up once, each test rolls back to this state."""
    committee = deploy_committee(project, accounts[0])
    for i, keys in enumerate(KEYS[:4]):
        register(committee, chain, accounts[1 + i], keys)
    return committee


def finalize(market, owner, round_=0, flagged=()) -> bytes:
    market.finalizeRound(PROJECT, round_, MODEL, TRAINERS, SCORES, list(flagged), REPORT, sender=owner)
    return bytes(market.roundResultDigest(PROJECT, round_))


def attestation(signers: list[int], digest: bytes, keys=KEYS, signing_keys=None):
    """(bitmap, apkG2, aggregated signature) for the signers' indices; `signing_keys` may differ (forgeries)."""
    signing = signing_keys if signing_keys is not None else [keys[i] for i in signers]
    bitmap = bls.signer_bitmap(signers, 255)
    apk_g2 = bls.aggregate_g2(keys[i].public_g2 for i in signers)
    signature = bls.aggregate_g1(bls.sign(k.secret, digest) for k in signing)
    return bitmap, apk_g2, signature


def attest(committee, market, sender, digest, signers, round_=0, **kwargs):
    bitmap, apk_g2, signature = attestation(signers, digest, **kwargs)
    return committee.attest(market, PROJECT, round_, digest, bitmap, apk_g2, signature, sender=sender)


# ---- configuration and registration ------------------------------------------------------------------------


def test_constructor_rejects_bad_config(project, owner):
    admin = owner.address
    for args in [
        (admin, 0, MAX_WEIGHT, EXIT_DELAY),
        (admin, MIN_STAKE, MAX_WEIGHT, 1),
        (admin, MIN_STAKE, MAX_WEIGHT, 0),
        (admin, MIN_STAKE, MIN_STAKE - 1, EXIT_DELAY),
        ("0x" + "00" * 20, MIN_STAKE, MAX_WEIGHT, EXIT_DELAY),
    ]:
        # Deployed by eth_call: Ape's trace of a reverted constructor fails to decode (eth_abi InvalidPointer).
        contract_type = project.VerifierCommittee.contract_type
        w3 = owner.provider.web3
        factory = w3.eth.contract(abi=[a.model_dump(mode="json", by_alias=True) for a in contract_type.abi],
                                  bytecode=contract_type.deployment_bytecode.bytecode)  # fmt: skip
        with pytest.raises(ContractCustomError) as refused:
            tx = factory.constructor(*args).build_transaction({"from": owner.address, "gas": 10**7})
            w3.eth.call({"from": owner.address, "data": tx["data"]})
        assert str(refused.value.data).startswith("0x" + keccak(text="InvalidConfig()")[:4].hex()), args


def test_the_attestation_window_is_half_the_exit_delay(committee):
    assert (committee.minStake(), committee.exitDelay(), committee.attestWindow()) == (
        MIN_STAKE,
        EXIT_DELAY,
        WINDOW,
    )


def test_domain_tags_are_the_python_ones(committee):
    assert committee.DST_ATTEST() == bls.DST_ATTEST.decode()
    assert bytes(committee.ATTEST_TAG()) == hashlib.sha256(bls.DST_ATTEST).digest()
    assert bytes(committee.POP_TAG()) == hashlib.sha256(bls.DST_POP).digest()


def test_register_seats_the_verifier_in_a_new_epoch(committee, chain, members):
    account, keys = members[0], KEYS[0]
    tx = register(committee, chain, account, keys, stake=2 * MIN_STAKE)
    (event,) = tx.events.filter(committee.VerifierRegistered)
    assert event.verifier == account.address and event.epoch == 1 and event.index == 0
    assert event.stake == event.weight == 2 * MIN_STAKE
    assert bytes(event.keyHash) == keccak(encode(["uint256", "uint256"], list(keys.public_g1)))
    (started,) = tx.events.filter(committee.EpochStarted)
    assert started.epoch == 1 and started.size == 1 and started.totalWeight == 2 * MIN_STAKE
    assert committee.currentEpoch() == 1
    addresses, stakes, keys_g1 = committee.committee(1)
    assert list(addresses) == [account.address] and list(stakes) == [2 * MIN_STAKE]
    assert tuple(keys_g1[0]) == keys.public_g1
    assert tuple(committee.publicKeyG2(account)) == keys.public_g2
    assert tuple(committee.verifiers(account)) == (2 * MIN_STAKE, 0, 0, 1)
    assert committee.balance == 2 * MIN_STAKE


def test_register_reverts_on_bad_stake_or_duplicate(seated, chain, members):
    with ape.reverts(seated.VerifierStakeTooLow, sent=MIN_STAKE - 1, minimum=MIN_STAKE):
        register(seated, chain, members[4], KEYS[4], stake=MIN_STAKE - 1)
    with ape.reverts(seated.VerifierAlreadyRegistered, verifier=members[0].address):
        register(seated, chain, members[0], KEYS[4])
    keys = KEYS[0]  # the key of members[0], with a valid proof for members[4]
    with ape.reverts(seated.KeyAlreadyRegistered):
        register(seated, chain, members[4], keys)


def test_register_refuses_the_identity_and_malformed_keys(committee, chain, members, owner):
    keys, account = KEYS[0], members[0]
    committee.admit(account, sender=owner)
    proof = pop(keys, account, committee, chain)
    with ape.reverts(committee.InvalidPublicKey):
        committee.register((0, 0), keys.public_g2, proof, sender=account, value=MIN_STAKE)
    with ape.reverts(committee.InvalidPublicKey):
        committee.register(keys.public_g1, (0, 0, 0, 0), proof, sender=account, value=MIN_STAKE)
    with ape.reverts(committee.InvalidPoint):
        committee.register((1, 3), keys.public_g2, proof, sender=account, value=MIN_STAKE)
    x_im, x_re, y_im, y_re = keys.public_g2  # real part first: off the twist
    with ape.reverts(committee.InvalidPoint):
        committee.register(keys.public_g1, (x_re, x_im, y_re, y_im), proof, sender=account, value=MIN_STAKE)


def test_register_refuses_a_proof_for_another_owner_chain_or_key(committee, chain, members, owner):
    keys, account = KEYS[0], members[0]
    committee.admit(account, sender=owner)
    for proof in [
        pop(keys, members[1], committee, chain),  # copied from someone else's registration
        bls.prove_possession(keys, account.address, chain.chain_id + 1, committee.address),
        bls.prove_possession(keys, account.address, chain.chain_id, members[2].address),
        bls.sign(  # an attestation-domain signature of the right message
            keys.secret,
            bls.possession_message(keys.public_g2, account.address, chain.chain_id, committee.address),
            bls.DST_ATTEST,
        ),
    ]:
        with ape.reverts(committee.InvalidProofOfPossession):
            committee.register(keys.public_g1, keys.public_g2, proof, sender=account, value=MIN_STAKE)
    # G1 and G2 keys of different secrets, each with its own valid-looking proof.
    with ape.reverts(committee.InvalidProofOfPossession):
        committee.register(
            KEYS[1].public_g1,
            keys.public_g2,
            pop(keys, account, committee, chain),
            sender=account,
            value=MIN_STAKE,
        )


def test_a_rogue_key_without_proof_of_possession_is_refused(seated, chain, members):
    """pk' = a*g2 - pk_0 would let the attacker alone sign for {0, attacker}; it cannot prove possession."""
    p = bls.FIELD_MODULUS
    honest, attacker = KEYS[0], KEYS[5]
    rogue_g2 = bls.aggregate_g2(
        [
            attacker.public_g2,
            (honest.public_g2[0], honest.public_g2[1], p - honest.public_g2[2], p - honest.public_g2[3]),
        ]
    )
    rogue_g1 = bls.aggregate_g1([attacker.public_g1, (honest.public_g1[0], p - honest.public_g1[1])])
    message = bls.possession_message(rogue_g2, members[4].address, chain.chain_id, seated.address)
    best_try = bls.sign(attacker.secret, message, bls.DST_POP)
    seated.admit(members[4], sender=ape.accounts.test_accounts[0])
    with ape.reverts(seated.InvalidProofOfPossession):
        seated.register(rogue_g1, rogue_g2, best_try, sender=members[4], value=MIN_STAKE)


@pytest.mark.slow
def test_committee_full(committee, chain, accounts, owner):
    size = committee.MAX_COMMITTEE_SIZE()
    for i in range(size):
        account = accounts.generate_test_account()
        owner.transfer(account, 2 * MIN_STAKE)
        register(committee, chain, account, bls.derive_keypair(i.to_bytes(32, "big")))
    assert committee.epochInfo(size).size == size
    late = accounts.generate_test_account()
    owner.transfer(late, 2 * MIN_STAKE)
    with ape.reverts(committee.CommitteeFull, size=size):
        register(committee, chain, late, KEYS[0])


# ---- exit and withdrawal -----------------------------------------------------------------------------------


def test_exit_moves_the_last_member_into_the_hole_and_withdraw_pays_after_the_delay(seated, chain, members):
    tx = seated.requestExit(sender=members[1])
    (event,) = tx.events.filter(seated.ExitRequested)
    assert event.verifier == members[1].address and event.epoch == 5
    assert event.withdrawableAt == tx.timestamp + EXIT_DELAY
    addresses, _, keys_g1 = seated.committee(5)
    assert list(addresses) == [members[0].address, members[3].address, members[2].address]
    assert tuple(keys_g1[1]) == KEYS[3].public_g1
    assert seated.verifiers(members[3]).index == 1
    assert seated.epochInfo(5).totalWeight == 3 * MIN_STAKE
    with ape.reverts(seated.VerifierNotActive, verifier=members[1].address):
        seated.requestExit(sender=members[1])
    with ape.reverts(seated.ExitDelayNotOver, withdrawableAt=event.withdrawableAt):
        seated.withdraw(sender=members[1])
    chain.pending_timestamp = event.withdrawableAt
    before = members[1].balance
    tx = seated.withdraw(sender=members[1])
    assert tx.events.filter(seated.StakeWithdrawn)[0].amount == MIN_STAKE
    assert members[1].balance == before + MIN_STAKE - tx.total_fees_paid
    assert seated.balance == 3 * MIN_STAKE
    with ape.reverts(seated.VerifierNotExiting, verifier=members[1].address):
        seated.withdraw(sender=members[1])
    # A withdrawn verifier may come back, with a fresh key only.
    with ape.reverts(seated.KeyAlreadyRegistered):
        register(seated, chain, members[1], KEYS[1])
    register(seated, chain, members[1], KEYS[4])
    assert seated.verifiers(members[1]).index == 3


def test_the_last_member_leaving_empties_the_committee(committee, chain, members):
    register(committee, chain, members[0], KEYS[0])
    committee.requestExit(sender=members[0])
    info = committee.epochInfo(2)
    assert (int(info.table, 16), info.size, info.totalWeight) == (0, 0, 0)
    with ape.reverts(committee.VerifierNotActive):
        committee.requestExit(sender=members[1])
    with ape.reverts(committee.UnknownEpoch, epoch=3):
        committee.epochInfo(3)
    with ape.reverts(committee.UnknownEpoch, epoch=3):
        committee.committee(3)


def test_a_failed_stake_transfer_reverts(test_contracts, committee, chain, owner):
    proxy = owner.deploy(test_contracts["VerifierProxy"], committee)
    keys = KEYS[0]
    proof = bls.prove_possession(keys, proxy.address, chain.chain_id, committee.address)
    committee.admit(proxy.address, sender=owner)
    proxy.register(keys.public_g1, keys.public_g2, proof, sender=owner, value=MIN_STAKE)
    proxy.requestExit(sender=owner)
    chain.pending_timestamp += EXIT_DELAY
    with ape.reverts(committee.FailedCall):
        proxy.withdraw(sender=owner)


# ---- attestations ------------------------------------------------------------------------------------------


def test_a_quorum_attests_a_round(seated, market, chain, owner):
    digest = finalize(market, owner)
    assert digest == result_digest(chain.chain_id, market.address, PROJECT, 0)
    assert not seated.isAttested(market, PROJECT, 0)
    tx = attest(seated, market, owner, digest, [0, 1, 3])
    (pinned,) = tx.events.filter(seated.SnapshotPinned)
    assert pinned.epoch == 4 and bytes(pinned.digest) == digest
    (event,) = tx.events.filter(seated.RoundAttested)
    assert (event.market, event.projectId, event.round, bytes(event.digest)) == (
        market.address,
        PROJECT,
        0,
        digest,
    )
    assert (event.epoch, event.signerBitmap, event.signedWeight, event.totalWeight) == (
        4,
        0b1011,
        3 * MIN_STAKE,
        4 * MIN_STAKE,
    )
    assert seated.isAttested(market, PROJECT, 0)
    assert not seated.isAttested(market, PROJECT, 1)
    record = seated.roundRecord(market, PROJECT, 0, digest)
    assert (record.epoch, record.pinned, record.attested) == (4, True, True)


def test_key_sums_stay_right_through_joins_and_exits(seated, market, chain, owner, members):
    """Each blob keeps the sum of its keys: everyone signing uses it as is, most signing subtract the rest."""
    seated.requestExit(sender=members[1])  # members 0, 3, 2 remain, in that order
    register(seated, chain, members[4], KEYS[4])  # index 3
    order = [KEYS[0], KEYS[3], KEYS[2], KEYS[4]]
    for round_, signers in enumerate([[0, 1, 2, 3], [0, 2, 3], [1, 2, 3]]):
        market.setRoundResultDigest(PROJECT, round_, bytes([round_ + 1]) * 32, sender=owner)
        digest = bytes([round_ + 1]) * 32
        tx = attest(seated, market, owner, digest, signers, round_=round_, keys=order)
        assert tx.events.filter(seated.RoundAttested)[0].signedWeight == len(signers) * MIN_STAKE


def test_a_replayed_attestation_reverts(seated, market, owner):
    digest = finalize(market, owner)
    attest(seated, market, owner, digest, [0, 1, 2])
    with ape.reverts(seated.AlreadyAttested, digest=digest):
        attest(seated, market, owner, digest, [0, 1, 2])
    with ape.reverts(seated.AlreadyAttested):
        attest(seated, market, owner, digest, [0, 1, 2, 3])


def test_a_forged_signature_reverts(seated, market, owner):
    digest = finalize(market, owner)
    # Keys of members 0..2 in the bitmap and the G2 sum, but signed by an outsider's key.
    with ape.reverts(seated.InvalidAggregateSignature):
        attest(seated, market, owner, digest, [0, 1, 2], signing_keys=[KEYS[0], KEYS[1], KEYS[5]])
    bitmap, apk_g2, _ = attestation([0, 1, 2], digest)
    with ape.reverts(seated.InvalidAggregateSignature):
        seated.attest(market, PROJECT, 0, digest, bitmap, apk_g2, bls.hash_to_g1(digest), sender=owner)
    with ape.reverts(seated.InvalidPoint):
        seated.attest(market, PROJECT, 0, digest, bitmap, apk_g2, (1, 3), sender=owner)


def test_a_g2_key_sum_that_does_not_match_the_bitmap_reverts(seated, market, owner):
    digest = finalize(market, owner)
    _, apk_all, signature_all = attestation([0, 1, 2, 3], digest)
    bitmap = bls.signer_bitmap([0, 1, 2], 255)
    # Every member signed, but the bitmap claims three: the G2 sum no longer matches the G1 keys added.
    with ape.reverts(seated.InvalidAggregateSignature):
        seated.attest(market, PROJECT, 0, digest, bitmap, apk_all, signature_all, sender=owner)
    with ape.reverts(seated.InvalidPublicKey):
        seated.attest(market, PROJECT, 0, digest, bitmap, (0, 0, 0, 0), signature_all, sender=owner)
    with ape.reverts(seated.InvalidPoint):
        seated.attest(market, PROJECT, 0, digest, bitmap, (1, 2, 3, 4), signature_all, sender=owner)


def test_a_signature_over_another_round_reverts(seated, market, owner):
    digest0 = finalize(market, owner, round_=0)
    digest1 = finalize(market, owner, round_=1)
    bitmap, apk_g2, signature_round1 = attestation([0, 1, 2], digest1)
    with ape.reverts(seated.InvalidAggregateSignature):
        seated.attest(market, PROJECT, 0, digest0, bitmap, apk_g2, signature_round1, sender=owner)
    with ape.reverts(seated.DigestMismatch, expected=digest0, given=digest1):
        seated.attest(market, PROJECT, 0, digest1, bitmap, apk_g2, signature_round1, sender=owner)


def test_a_signature_over_another_chain_reverts(seated, market, chain, owner):
    digest = finalize(market, owner)
    foreign = result_digest(1, market.address, PROJECT, 0)  # the same round on mainnet
    assert foreign != digest
    bitmap, apk_g2, signature = attestation([0, 1, 2], foreign)
    with ape.reverts(seated.InvalidAggregateSignature):
        seated.attest(market, PROJECT, 0, digest, bitmap, apk_g2, signature, sender=owner)
    with ape.reverts(seated.DigestMismatch):
        seated.attest(market, PROJECT, 0, foreign, bitmap, apk_g2, signature, sender=owner)


def test_a_quorum_one_signer_short_reverts(seated, market, owner):
    digest = finalize(market, owner)
    with ape.reverts(seated.QuorumNotReached, signedWeight=2 * MIN_STAKE, totalWeight=4 * MIN_STAKE):
        attest(seated, market, owner, digest, [0, 3])
    attest(seated, market, owner, digest, [0, 2, 3])  # one more signer is enough
    assert seated.isAttested(market, PROJECT, 0)


def test_quorum_is_weighted_by_stake(committee, market, chain, owner, members):
    register(committee, chain, members[0], KEYS[0], stake=5 * MIN_STAKE)
    for i in range(1, 4):
        register(committee, chain, members[i], KEYS[i])
    digest = finalize(market, owner)
    with ape.reverts(committee.QuorumNotReached, signedWeight=3 * MIN_STAKE, totalWeight=8 * MIN_STAKE):
        attest(committee, market, owner, digest, [1, 2, 3])  # three of four members, 3/8 of the stake
    attest(committee, market, owner, digest, [0, 1])  # two members, 6/8 of the stake


def test_bitmaps_must_name_registered_members(seated, market, owner):
    digest = finalize(market, owner)
    _, apk_g2, signature = attestation([0, 1, 2], digest)
    with ape.reverts(seated.UnknownSigner, signerBitmap=0b10111, committeeSize=4):
        seated.attest(market, PROJECT, 0, digest, 0b10111, apk_g2, signature, sender=owner)
    with ape.reverts(seated.UnknownSigner):
        seated.attest(market, PROJECT, 0, digest, 1 << 255, apk_g2, signature, sender=owner)
    with ape.reverts(seated.NoSigners):
        seated.attest(market, PROJECT, 0, digest, 0, apk_g2, signature, sender=owner)


def test_a_verifier_who_signs_a_wrong_result_is_outvoted(seated, market, owner):
    """Member 3 signs a wrong digest: the aggregate with it fails, the honest majority attests without it."""
    digest = finalize(market, owner)
    wrong = hashlib.sha256(b"a different model").digest()
    signatures = [bls.sign(KEYS[i].secret, digest) for i in range(3)] + [bls.sign(KEYS[3].secret, wrong)]
    bitmap = bls.signer_bitmap(range(4), 255)
    apk_g2 = bls.aggregate_g2(k.public_g2 for k in KEYS[:4])
    with ape.reverts(seated.InvalidAggregateSignature):
        seated.attest(market, PROJECT, 0, digest, bitmap, apk_g2, bls.aggregate_g1(signatures), sender=owner)
    # The collector checks each signature off chain and drops the bad one.
    good = [i for i in range(4) if bls.verify(KEYS[i].public_g2, digest, signatures[i])]
    assert good == [0, 1, 2]
    seated.attest(
        market,
        PROJECT,
        0,
        digest,
        bls.signer_bitmap(good, 255),
        bls.aggregate_g2(KEYS[i].public_g2 for i in good),
        bls.aggregate_g1(signatures[i] for i in good),
        sender=owner,
    )
    assert seated.isAttested(market, PROJECT, 0)


def test_a_wrong_result_posted_by_the_market_gets_no_quorum(seated, market, owner):
    """The aggregator posts a wrong digest; one colluding member signs it; the honest three refuse."""
    wrong = hashlib.sha256(b"inflated scores").digest()
    market.setRoundResultDigest(PROJECT, 0, wrong, sender=owner)
    with ape.reverts(seated.QuorumNotReached):
        attest(seated, market, owner, wrong, [3])
    assert not seated.isAttested(market, PROJECT, 0)


def test_unfinalized_rounds_and_non_markets_revert(seated, market, owner, members):
    _, apk_g2, signature = attestation([0, 1, 2], bytes(32))
    with ape.reverts(seated.MarketRoundNotFinalized, market=market.address, projectId=PROJECT, round=0):
        seated.attest(market, PROJECT, 0, bytes(32), 0b111, apk_g2, signature, sender=owner)
    with ape.reverts(seated.MarketRoundNotFinalized):
        seated.pinSnapshot(market, PROJECT, 0, sender=owner)
    with ape.reverts(seated.MarketNotContract, market=members[4].address):
        seated.attest(members[4], PROJECT, 0, bytes(32), 0b111, apk_g2, signature, sender=owner)
    assert not seated.isAttested(members[4], PROJECT, 0)


def test_an_empty_committee_cannot_attest(committee, market, owner):
    digest = finalize(market, owner)
    bitmap, apk_g2, signature = attestation([0], digest)
    with ape.reverts(committee.UnknownSigner, signerBitmap=1, committeeSize=0):
        committee.attest(market, PROJECT, 0, digest, bitmap, apk_g2, signature, sender=owner)


# ---- snapshots ---------------------------------------------------------------------------------------------


def test_the_pinned_snapshot_ignores_later_joiners_and_keeps_leavers(seated, market, chain, owner, members):
    digest = finalize(market, owner)
    tx = seated.pinSnapshot(market, PROJECT, 0, sender=owner)
    assert tx.events.filter(seated.SnapshotPinned)[0].epoch == 4
    again = seated.pinSnapshot(market, PROJECT, 0, sender=owner)
    assert not again.events.filter(seated.SnapshotPinned)  # idempotent
    assert seated.pinSnapshot.call(market, PROJECT, 0) == 4
    # After the pin, a newcomer joins and a member leaves: neither changes who counts for this round.
    register(seated, chain, members[4], KEYS[4])
    seated.requestExit(sender=members[0])
    with ape.reverts(seated.UnknownSigner, committeeSize=4):
        attest(seated, market, owner, digest, [1, 2, 4], keys=KEYS)  # index 4 exists only in later epochs
    with ape.reverts(seated.QuorumNotReached, signedWeight=2 * MIN_STAKE, totalWeight=4 * MIN_STAKE):
        attest(seated, market, owner, digest, [1, 2])
    tx = attest(
        seated, market, owner, digest, [0, 1, 2]
    )  # the leaver still counts (its stake is still locked)
    assert tx.events.filter(seated.RoundAttested)[0].epoch == 4


def test_attestation_window_closes(seated, market, chain, owner):
    digest = finalize(market, owner)
    tx = seated.pinSnapshot(market, PROJECT, 0, sender=owner)
    chain.pending_timestamp = tx.timestamp + WINDOW + 1
    with ape.reverts(seated.AttestationWindowClosed, closedAt=tx.timestamp + WINDOW):
        attest(seated, market, owner, digest, [0, 1, 2])


def test_a_replaced_result_needs_a_new_attestation(seated, market, owner):
    digest = finalize(market, owner)
    attest(seated, market, owner, digest, [0, 1, 2])
    replaced = finalize(market, owner, flagged=[TRAINERS[1]])  # e.g. after an upheld challenge
    assert replaced != digest and not seated.isAttested(market, PROJECT, 0)
    bitmap, apk_g2, old_signature = attestation([0, 1, 2], digest)
    with ape.reverts(seated.InvalidAggregateSignature):
        seated.attest(market, PROJECT, 0, replaced, bitmap, apk_g2, old_signature, sender=owner)
    attest(seated, market, owner, replaced, [1, 2, 3])
    assert seated.isAttested(market, PROJECT, 0)


# ---- admission, weights and slashing ----------------------------------------------------------------------


def test_only_admitted_accounts_join_and_an_admission_is_used_once(
    committee, chain, members, owner, accounts
):
    outsider_of = accounts[19]
    account, keys = members[0], KEYS[0]
    proof = pop(keys, account, committee, chain)
    with ape.reverts(committee.NotAdmitted, verifier=account.address):
        committee.register(keys.public_g1, keys.public_g2, proof, sender=account, value=MIN_STAKE)
    with ape.reverts(committee.AccessControlUnauthorizedAccount):
        committee.admit(account, sender=outsider_of)
    tx = committee.admit(account, sender=owner)
    assert tx.events.filter(committee.VerifierAdmitted)[0].verifier == account.address
    assert committee.admitted(account)
    committee.register(keys.public_g1, keys.public_g2, proof, sender=account, value=MIN_STAKE)
    assert not committee.admitted(account)  # used up: leaving and coming back needs a new admission
    committee.requestExit(sender=account)
    chain.pending_timestamp += EXIT_DELAY
    committee.withdraw(sender=account)
    fresh = KEYS[1]
    with ape.reverts(committee.NotAdmitted, verifier=account.address):
        committee.register(fresh.public_g1, fresh.public_g2, pop(fresh, account, committee, chain), sender=account,
                           value=MIN_STAKE)  # fmt: skip


def test_an_admission_can_be_withdrawn_before_it_is_used(committee, chain, members, owner):
    account = members[0]
    with ape.reverts(committee.NotAdmitted, verifier=account.address):
        committee.revokeAdmission(account, sender=owner)
    committee.admit(account, sender=owner)
    tx = committee.revokeAdmission(account, sender=owner)
    assert tx.events.filter(committee.AdmissionRevoked)[0].verifier == account.address
    keys = KEYS[0]
    with ape.reverts(committee.NotAdmitted):
        committee.register(keys.public_g1, keys.public_g2, pop(keys, account, committee, chain), sender=account,
                           value=MIN_STAKE)  # fmt: skip


def test_weight_is_the_stake_capped(committee, chain, members):
    register(committee, chain, members[0], KEYS[0], stake=3 * MIN_STAKE)
    register(committee, chain, members[1], KEYS[1], stake=50 * MIN_STAKE)
    _, weights, _ = committee.committee(committee.currentEpoch())
    assert list(weights) == [3 * MIN_STAKE, MAX_WEIGHT]
    assert committee.epochInfo(committee.currentEpoch()).totalWeight == 3 * MIN_STAKE + MAX_WEIGHT
    assert committee.verifiers(members[1]).stake == 50 * MIN_STAKE  # slashable in full


@pytest.fixture
def overturning(seated, market, accounts):
    """The test market may slash (MARKET_ROLE), as TrainingMarket does when a challenge is upheld."""
    seated.grantRole(seated.MARKET_ROLE(), market.address, sender=accounts[0])
    return market


def test_overturning_an_attested_round_slashes_exactly_its_signers(
    seated, overturning, owner, members, chain
):
    digest = finalize(overturning, owner)
    attest(seated, overturning, owner, digest, [0, 2, 3])
    epoch = seated.currentEpoch()
    burn_before = chain.get_balance("0x000000000000000000000000000000000000dEaD")
    tx = overturning.overturn(seated.address, PROJECT, 0, sender=owner)
    slashed = {e.verifier: e.amount for e in tx.events.filter(seated.VerifierSlashed)}
    assert slashed == {members[i].address: MIN_STAKE for i in (0, 2, 3)}
    assert chain.get_balance("0x000000000000000000000000000000000000dEaD") == burn_before + 3 * MIN_STAKE
    assert seated.currentEpoch() == epoch + 1
    assert list(seated.committee(epoch + 1)[0]) == [members[1].address]
    assert seated.epochInfo(epoch + 1).totalWeight == MIN_STAKE
    assert seated.roundRecord(overturning, PROJECT, 0, digest).slashed
    # Once per result: a second ruling slashes nobody again.
    tx = overturning.overturn(seated.address, PROJECT, 0, sender=owner)
    assert not tx.events.filter(seated.VerifierSlashed)
    assert seated.balance == MIN_STAKE


def test_overturning_an_unattested_round_slashes_nobody(seated, overturning, owner):
    finalize(overturning, owner)
    tx = overturning.overturn(seated.address, PROJECT, 0, sender=owner)
    assert not tx.events.filter(seated.VerifierSlashed) and seated.currentEpoch() == 4
