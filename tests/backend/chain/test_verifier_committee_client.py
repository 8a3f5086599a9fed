"""The VerifierCommittee facade (web3) against anvil: registration, signing, aggregation, submission, exits."""

from __future__ import annotations

import hashlib

import pytest

from backend.chain.artifacts import Artifacts
from backend.chain.client import ChainClient
from backend.chain.errors import revert_class
from backend.chain.verifier_committee import (
    QUORUM_DENOMINATOR,
    QUORUM_NUMERATOR,
    CommitteeError,
    VerifierCommittee,
    VerifierStatus,
)
from backend.committee import bls
from backend.committee.attestation import Attestation, VerifierSignature, aggregate, join, sign_round, submit

pytestmark = pytest.mark.chain

KEYS = [bls.derive_keypair(hashlib.sha256(f"facade key {i}".encode()).digest()) for i in range(6)]
PROJECT = 7


@pytest.fixture(scope="module")
def artifacts(compiled_artifacts):
    # The test market is compiled by path (Ape's 500-file source scan does not reach contracts/test/).
    import ape

    ape.project.load_contracts("contracts/test/TestRoundMarket.sol")
    return Artifacts.load(ape.project.path / ".build" / "__local__.json")


@pytest.fixture
def client(anvil_node, artifacts, deployed):
    client = ChainClient(anvil_node.url, artifacts, deployed, expected_chain_id=31337)
    snapshot = client.w3.provider.make_request("evm_snapshot", [])["result"]
    yield client
    client.w3.provider.make_request("evm_revert", [snapshot])


@pytest.fixture
def committee(client):
    return VerifierCommittee(client)


@pytest.fixture
def seated(committee, dev_accounts):
    stake = committee.min_stake()
    for account, keys in zip(dev_accounts[1:5], KEYS[:4], strict=True):
        committee.admit(dev_accounts[0], account.address)  # the deployer admits each member
        join(committee, account, keys, stake)
    return committee


@pytest.fixture
def market(client, dev_accounts):
    return client.deploy(dev_accounts[0], "TestRoundMarket")["contractAddress"]


def finalize(client, market, owner, round_=0, digest=None) -> bytes:
    digest = digest or hashlib.sha256(f"round {round_}".encode()).digest()
    client.transact(owner, "TestRoundMarket", "setRoundResultDigest", PROJECT, round_, digest, address=market)
    return digest


def signatures(accounts, keys, market, digest, round_=0):
    return [
        sign_round(k, a.address, market, PROJECT, round_, digest) for a, k in zip(accounts, keys, strict=True)
    ]


def test_constants_match_the_contract(committee):
    on_chain = (committee._call("QUORUM_NUMERATOR"), committee._call("QUORUM_DENOMINATOR"))
    assert on_chain == (QUORUM_NUMERATOR, QUORUM_DENOMINATOR)
    assert committee.attest_window() == committee.exit_delay() // 2
    assert committee.current_epoch() == 0 and committee.members() == []


def test_register_reads_back(seated, dev_accounts):
    info = seated.verifier(dev_accounts[2].address)
    assert (info.index, info.status, info.stake) == (1, VerifierStatus.ACTIVE, seated.min_stake())
    members = seated.members()
    assert [m.address for m in members] == [a.address for a in dev_accounts[1:5]]
    assert members[3].public_g1 == KEYS[3].public_g1
    assert seated.public_key_g2(dev_accounts[3].address) == KEYS[2].public_g2
    assert seated.epoch(4).total_weight == 4 * seated.min_stake()  # each under the weight cap


def test_sign_aggregate_submit(seated, client, market, dev_accounts):
    digest = finalize(client, market, dev_accounts[0])
    assert not seated.is_attested(market, PROJECT, 0)
    attestation, rejected = aggregate(seated, signatures(dev_accounts[1:4], KEYS[:3], market, digest))
    assert rejected == {}
    assert (attestation.epoch, attestation.signer_bitmap, attestation.signers) == (
        4,
        0b111,
        tuple(a.address for a in dev_accounts[1:4]),
    )
    result = submit(seated, dev_accounts[5], attestation)
    assert (result.epoch, result.signed_weight, result.total_weight) == (
        4,
        3 * seated.min_stake(),
        4 * seated.min_stake(),
    )
    assert result.gas_used > 0
    assert seated.is_attested(market, PROJECT, 0)
    record = seated.round_record(market, PROJECT, 0, digest)
    assert record.pinned and record.attested and record.epoch == 4
    with pytest.raises(revert_class("VerifierCommittee", "AlreadyAttested")):
        submit(seated, dev_accounts[5], attestation)


def test_aggregate_leaves_out_bad_signatures_and_says_why(seated, client, market, dev_accounts):
    digest = finalize(client, market, dev_accounts[0])
    good = signatures(dev_accounts[1:4], KEYS[:3], market, digest)
    wrong = sign_round(KEYS[3], dev_accounts[4].address, market, PROJECT, 0, digest)
    wrong = VerifierSignature(
        *[*vars(wrong).values()][:5], bls.sign(KEYS[3].secret, b"another digest".ljust(32))
    )
    outsider = sign_round(KEYS[5], dev_accounts[9].address, market, PROJECT, 0, digest)
    attestation, rejected = aggregate(seated, [*good, wrong, outsider, good[0]])
    assert attestation.signers == tuple(a.address for a in dev_accounts[1:4])
    assert rejected == {
        dev_accounts[4].address: "signature does not verify for this digest",
        dev_accounts[9].address: "not a member of the snapshot committee (epoch 4)",
        dev_accounts[1].address: "signed more than once",
    }
    submit(seated, dev_accounts[5], attestation)


def test_aggregate_refuses_what_cannot_attest(seated, client, market, dev_accounts):
    digest = finalize(client, market, dev_accounts[0])
    with pytest.raises(CommitteeError, match="no signatures"):
        aggregate(seated, [])
    with pytest.raises(CommitteeError, match=r"no quorum yet: valid signers hold 0\.02 of 0\.04 ETH"):
        aggregate(seated, signatures(dev_accounts[1:3], KEYS[:2], market, digest))
    mixed = [
        *signatures(dev_accounts[1:3], KEYS[:2], market, digest),
        sign_round(KEYS[2], dev_accounts[3].address, market, PROJECT, 1, digest),
    ]
    with pytest.raises(CommitteeError, match="2 different round results"):
        aggregate(seated, mixed)
    stale = b"\x09" * 32
    with pytest.raises(CommitteeError, match="the market stores digest"):
        aggregate(seated, signatures(dev_accounts[1:4], KEYS[:3], market, stale))


def test_signatures_and_attestations_round_trip_through_json(seated, client, market, dev_accounts):
    digest = finalize(client, market, dev_accounts[0])
    sigs = signatures(dev_accounts[1:4], KEYS[:3], market, digest)
    assert [VerifierSignature.from_json(s.to_json()) for s in sigs] == sigs
    attestation, _ = aggregate(seated, sigs)
    assert Attestation.from_json(attestation.to_json()) == attestation


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"digest": "0x1234"}, "32 bytes"),
        ({"digest": "zz"}, "not hex"),
        ({"signature": ["0x1", "0x3"]}, "not on the curve"),
        ({"signature": ["0x1"]}, "2 coordinates"),
        ({"signature": ["one", "two"]}, "integers or hex"),
    ],
)
def test_malformed_signature_files_are_refused(change, message):
    data = sign_round(KEYS[0], "0x" + "11" * 20, "0x" + "22" * 20, 1, 0, b"\x05" * 32).to_json()
    with pytest.raises(ValueError, match=message):
        VerifierSignature.from_json({**data, **change})
    missing = dict(data)
    del missing["verifier"]
    with pytest.raises(CommitteeError, match="'verifier'"):
        VerifierSignature.from_json(missing)


def test_pin_exit_and_withdraw(seated, client, market, dev_accounts):
    assert seated.market_digest(market, PROJECT, 3) == bytes(32)
    with pytest.raises(revert_class("VerifierCommittee", "MarketRoundNotFinalized")):
        seated.pin_snapshot(dev_accounts[0], market, PROJECT, 3)
    finalize(client, market, dev_accounts[0], round_=3)
    assert seated.pin_snapshot(dev_accounts[0], market, PROJECT, 3) == 4
    account = dev_accounts[2]
    withdrawable_at = seated.request_exit(account)
    assert seated.verifier(account.address).status == VerifierStatus.EXITING
    assert [m.address for m in seated.members()] == [
        a.address for a in (dev_accounts[1], dev_accounts[4], dev_accounts[3])
    ]
    with pytest.raises(revert_class("VerifierCommittee", "ExitDelayNotOver")):
        seated.withdraw(account)
    client.w3.provider.make_request("evm_mine", [withdrawable_at])
    assert seated.withdraw(account) == seated.min_stake()
    assert seated.verifier(account.address).status == VerifierStatus.NONE
