"""Python and Solidity agree on BLS over BN254, both ways: the known-answer vectors of tests/fixtures/bls_vectors.json
(written by `backend.committee.bls`) recomputed by `BN254.sol`, and points computed on chain checked by `backend.committee.bls`."""

from __future__ import annotations

import json
from pathlib import Path

import ape
import pytest

from backend.committee import bls

VECTORS = json.loads((Path(__file__).resolve().parents[1] / "fixtures" / "bls_vectors.json").read_text())
TAGS = {VECTORS["dst"][name]: bytes.fromhex(VECTORS["tags"][name][2:]) for name in ("attest", "pop")}
ATTESTATION = VECTORS["attestation"]
DIGEST = bytes.fromhex(ATTESTATION["digest"][2:])


def ints(values) -> tuple[int, ...]:
    return tuple(int(v, 16) if isinstance(v, str) else int(v) for v in values)


@pytest.fixture(scope="module")
def harness_type(project):
    # Compiled by path: Ape's 500-file source scan does not reach contracts/test/ (see test_verifier_committee).
    return project.load_contracts("contracts/test/BN254Harness.sol")["BN254Harness"]


@pytest.fixture
def harness(harness_type, accounts):
    return accounts[0].deploy(harness_type)


@pytest.mark.parametrize("index", range(len(VECTORS["hash_to_g1"])))
def test_hash_to_g1_matches_python(harness, index):
    vector = VECTORS["hash_to_g1"][index]
    message = bytes.fromhex(vector["message"][2:])
    assert tuple(harness.hashToG1(TAGS[vector["dst"]], message)) == ints(vector["point"])


def test_aggregated_keys_and_signatures_match_python(harness):
    keys_g1 = [ints(k["public_g1"]) for k in VECTORS["keys"]]
    assert tuple(harness.sum(keys_g1)) == ints(ATTESTATION["apk_g1"])
    signatures = [ints(s) for s in ATTESTATION["signatures"]]
    assert tuple(harness.sum(signatures)) == ints(ATTESTATION["aggregate_signature"])
    assert tuple(harness.sum([])) == (0, 0)
    assert tuple(harness.add(keys_g1[0], keys_g1[1])) == bls.aggregate_g1(keys_g1[:2])


def test_challenge_and_pairing_check_match_python(harness):
    args = (
        ints(ATTESTATION["message_point"]),
        ints(ATTESTATION["aggregate_signature"]),
        ints(ATTESTATION["apk_g1"]),
        ints(ATTESTATION["apk_g2"]),
    )
    assert harness.challenge(*args) == int(ATTESTATION["challenge"], 16)
    assert harness.verifyWithG1Key(*args)
    # One key short in G1: both sides reject.
    short_g1 = bls.aggregate_g1(ints(k["public_g1"]) for k in VECTORS["keys"][:3])
    assert not harness.verifyWithG1Key(args[0], args[1], short_g1, args[3])
    assert not bls.verify_with_g1_key(short_g1, args[3], DIGEST, args[1])


def test_python_proofs_of_possession_verify_on_chain(harness):
    pop = VECTORS["possession"]
    for key, message, proof in zip(VECTORS["keys"], pop["messages"], pop["proofs"], strict=True):
        point = harness.hashToG1(TAGS[bls.DST_POP.decode()], bytes.fromhex(message[2:]))
        assert harness.verifyWithG1Key(point, ints(proof), ints(key["public_g1"]), ints(key["public_g2"]))


def test_signatures_made_on_chain_verify_in_python(harness):
    """Solidity -> Python: the harness signs with a test secret; py_ecc checks the pairing equation."""
    for key in VECTORS["keys"][:2]:
        on_chain = tuple(harness.sign(int(key["secret"], 16), TAGS[bls.DST_ATTEST.decode()], DIGEST))
        assert bls.verify(ints(key["public_g2"]), DIGEST, on_chain)
        assert list(on_chain) == list(ints(ATTESTATION["signatures"][VECTORS["keys"].index(key)]))
    point = tuple(harness.hashToG1(TAGS[bls.DST_POP.decode()], b"computed on chain"))
    assert point == bls.hash_to_g1(b"computed on chain", bls.DST_POP)


def test_g1_multiplication_matches_python(harness):
    scalar = 0xDEADBEEF
    assert tuple(harness.mul((1, 2), scalar)) == bls.keypair_from_secret(scalar).public_g1


def test_precompiles_reject_points_off_the_curve(harness):
    with ape.reverts(harness.InvalidPoint):
        harness.add((1, 3), (1, 2))
    with ape.reverts(harness.InvalidPoint):
        harness.mul((1, 3), 5)
    g2 = ints(ATTESTATION["apk_g2"])
    with ape.reverts(harness.InvalidPoint):
        harness.verifyWithG1Key((1, 2), (1, 2), (1, 2), (g2[1], g2[0], g2[3], g2[2]))  # real part first


def test_committee_views_match_python(project, accounts, chain):
    committee = accounts[0].deploy(project.VerifierCommittee, accounts[0].address, 10**18, 10**18, 7 * 86400)
    assert tuple(committee.messagePoint(DIGEST)) == ints(ATTESTATION["message_point"])
    key = bls.keypair_from_secret(int(VECTORS["keys"][0]["secret"], 16))
    owner = accounts[3].address
    expected = bls.possession_message(key.public_g2, owner, chain.chain_id, committee.address)
    assert bytes(committee.possessionMessage(owner, key.public_g2)) == expected
