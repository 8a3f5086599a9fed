"""BLS on BN254 (`backend.committee.bls`): hashing, keys, signatures, aggregation, proofs of possession, bad input."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from py_ecc.fields import optimized_bn128_FQ2 as FQ2
from py_ecc.optimized_bn128 import b2, curve_order, is_on_curve

from aggregator.errors import AggregatorError
from backend.committee import bls

P = bls.FIELD_MODULUS
OWNER = "0x" + "11" * 20
COMMITTEE = "0x" + "22" * 20
DIGEST = hashlib.sha256(b"round result").digest()


@pytest.fixture(scope="module")
def keys() -> list[bls.KeyPair]:
    return [bls.derive_keypair(bytes([i + 1]) * 32) for i in range(3)]


def _on_curve(point: bls.G1Point) -> bool:
    return (point.y * point.y - point.x**3 - 3) % P == 0


# ---- hash to G1 -----------------------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(st.binary(max_size=200))
def test_hash_to_g1_lands_on_the_curve_with_an_even_y(message):
    point = bls.hash_to_g1(message)
    assert _on_curve(point)
    assert 0 <= point.x < P and 0 < point.y < P and point.y % 2 == 0
    assert bls.hash_to_g1(message) == point


def test_hash_to_g1_separates_messages_and_domains():
    assert bls.hash_to_g1(b"a") != bls.hash_to_g1(b"b")
    assert bls.hash_to_g1(DIGEST, bls.DST_ATTEST) != bls.hash_to_g1(DIGEST, bls.DST_POP)


@pytest.mark.parametrize(("message", "dst"), [("text", bls.DST_ATTEST), (b"m", b""), (b"m", "tag")])
def test_hash_to_g1_rejects_bad_input(message, dst):
    with pytest.raises(bls.BLSError):
        bls.hash_to_g1(message, dst)


# ---- keys -------------------------------------------------------------------------------------------------------


def test_keys_are_deterministic_twins(keys):
    again = bls.derive_keypair(bytes([1]) * 32)
    assert again == keys[0]
    assert bls.keypair_from_secret(keys[0].secret) == keys[0]
    assert bls.g1_point(*keys[0].public_g1) == keys[0].public_g1
    assert bls.g2_point(*keys[0].public_g2) == keys[0].public_g2
    assert "secret" not in repr(keys[0])  # never logged by accident
    assert bls.generate_keypair() != bls.generate_keypair()


@pytest.mark.parametrize("secret", [0, curve_order, -1, True, 1.5, "7"])
def test_secret_keys_outside_the_group_order_are_refused(secret):
    with pytest.raises(bls.BLSError):
        bls.keypair_from_secret(secret)
    with pytest.raises(bls.BLSError):
        bls.sign(secret, DIGEST)


@pytest.mark.parametrize("seed", [b"short", "x" * 40, bytes(31)])
def test_seeds_must_be_32_bytes(seed):
    with pytest.raises(bls.BLSError):
        bls.derive_keypair(seed)


def test_the_error_is_an_aggregator_value_error():
    assert issubclass(bls.BLSError, AggregatorError) and issubclass(bls.BLSError, ValueError)


# ---- points ----------------------------------------------------------------------------------------------------


def _twist_point_outside_the_subgroup() -> bls.G2Point:
    """A point on the G2 twist whose order is not r (the twist's cofactor is ~p, so almost any point)."""
    for i in range(1, 100):
        x = FQ2([i, 1])
        rhs = x**3 + b2
        # Square root in Fp2 for p = 3 mod 4 (Adj and Rodriguez-Henriquez 2012, algorithm 9).
        a1 = rhs ** ((P - 3) // 4)
        alpha = a1 * a1 * rhs
        if alpha**P * alpha == FQ2([P - 1, 0]):
            continue  # not a square
        x0 = a1 * rhs
        y = FQ2([0, 1]) * x0 if alpha == FQ2([P - 1, 0]) else (FQ2.one() + alpha) ** ((P - 1) // 2) * x0
        assert is_on_curve((x, y, FQ2.one()), b2)
        return bls.G2Point(int(x.coeffs[1]), int(x.coeffs[0]), int(y.coeffs[1]), int(y.coeffs[0]))
    raise AssertionError("no twist point found")


def test_g2_points_outside_the_subgroup_are_refused():
    rogue = _twist_point_outside_the_subgroup()
    with pytest.raises(bls.BLSError, match="subgroup"):
        bls.g2_point(*rogue)


@pytest.mark.parametrize(
    ("point", "match"),
    [
        ((1, 3), "not on the curve"),
        ((P, 2), "outside the base field"),
        ((1,), "2 coordinates"),
        ((1.0, 2), "integers"),
    ],
)
def test_malformed_g1_points_are_refused(point, match):
    with pytest.raises(bls.BLSError, match=match):
        bls.aggregate_g1([point])


def test_g2_in_the_wrong_coordinate_order_is_refused(keys):
    x_im, x_re, y_im, y_re = keys[0].public_g2
    with pytest.raises(bls.BLSError, match="EIP-197"):
        bls.g2_point(x_re, x_im, y_re, y_im)
    with pytest.raises(bls.BLSError, match="4 coordinates"):
        bls.aggregate_g2([(x_im, x_re, y_im)])


# ---- signatures ------------------------------------------------------------------------------------------------


def test_a_signature_verifies_only_for_its_key_and_message(keys):
    signature = bls.sign(keys[0].secret, DIGEST)
    assert bls.verify(keys[0].public_g2, DIGEST, signature)
    assert not bls.verify(keys[1].public_g2, DIGEST, signature)
    assert not bls.verify(keys[0].public_g2, hashlib.sha256(b"other round").digest(), signature)


def test_a_forged_signature_fails(keys):
    forged = bls.hash_to_g1(DIGEST)  # a valid curve point, but not sk * H(m)
    assert not bls.verify(keys[0].public_g2, DIGEST, forged)
    assert not bls.verify(keys[0].public_g2, DIGEST, bls.G1_INFINITY)


def test_verify_refuses_the_identity_key_and_malformed_signatures(keys):
    with pytest.raises(bls.BLSError, match="infinity"):
        bls.verify((0, 0, 0, 0), DIGEST, bls.G1_INFINITY)
    with pytest.raises(bls.BLSError, match="signature"):
        bls.verify(keys[0].public_g2, DIGEST, (1, 3))


def test_an_attestation_signature_is_not_a_proof_of_possession(keys):
    message = bls.possession_message(keys[0].public_g2, OWNER, 1, COMMITTEE)
    wrong_domain = bls.sign(keys[0].secret, message, bls.DST_ATTEST)
    assert not bls.verify_possession(keys[0].public_g1, keys[0].public_g2, wrong_domain, OWNER, 1, COMMITTEE)


# ---- aggregation -----------------------------------------------------------------------------------------------


def test_aggregate_signature_verifies_for_all_signers_only(keys):
    aggregate = bls.aggregate_g1(bls.sign(k.secret, DIGEST) for k in keys)
    assert bls.verify_aggregate([k.public_g2 for k in keys], DIGEST, aggregate)
    assert not bls.verify_aggregate([k.public_g2 for k in keys[:2]], DIGEST, aggregate)


def test_the_contract_check_binds_the_g2_sum_to_the_g1_keys(keys):
    aggregate = bls.aggregate_g1(bls.sign(k.secret, DIGEST) for k in keys)
    apk_g1 = bls.aggregate_g1(k.public_g1 for k in keys)
    apk_g2 = bls.aggregate_g2(k.public_g2 for k in keys)
    assert bls.verify_with_g1_key(apk_g1, apk_g2, DIGEST, aggregate)
    # A caller who supplies a G2 sum that does not match the G1 keys the contract added is caught.
    assert not bls.verify_with_g1_key(
        bls.aggregate_g1(k.public_g1 for k in keys[:2]), apk_g2, DIGEST, aggregate
    )
    with pytest.raises(bls.BLSError, match="infinity"):
        bls.verify_with_g1_key(bls.G1_INFINITY, apk_g2, DIGEST, aggregate)


def test_nothing_to_aggregate_is_an_error():
    with pytest.raises(bls.BLSError):
        bls.aggregate_g1([])
    with pytest.raises(bls.BLSError):
        bls.aggregate_g2([])


def test_challenge_scalar_is_reduced_mod_r(keys):
    k = keys[0]
    gamma = bls.challenge_scalar(bls.hash_to_g1(DIGEST), bls.sign(k.secret, DIGEST), k.public_g1, k.public_g2)
    assert 0 <= gamma < curve_order


# ---- proofs of possession ---------------------------------------------------------------------------------------


def test_proof_of_possession_binds_owner_chain_and_committee(keys):
    k = keys[0]
    proof = bls.prove_possession(k, OWNER, 31337, COMMITTEE)
    assert bls.verify_possession(k.public_g1, k.public_g2, proof, OWNER, 31337, COMMITTEE)
    assert not bls.verify_possession(k.public_g1, k.public_g2, proof, "0x" + "33" * 20, 31337, COMMITTEE)
    assert not bls.verify_possession(k.public_g1, k.public_g2, proof, OWNER, 1, COMMITTEE)
    assert not bls.verify_possession(k.public_g1, k.public_g2, proof, OWNER, 31337, OWNER)
    # The G1 twin must belong to the same secret.
    assert not bls.verify_possession(keys[1].public_g1, k.public_g2, proof, OWNER, 31337, COMMITTEE)


def test_a_rogue_key_aggregates_but_cannot_prove_possession(keys):
    """The rogue-key attack: pk' = a*g2 - pk_honest makes the pair's aggregate key a*g2, which the attacker can
    sign for alone; the proof of possession is what stops pk' from joining."""
    honest = keys[0]
    attacker = bls.derive_keypair(b"attacker".ljust(32, b"!"))
    negated_g2 = bls.G2Point(honest.public_g2.x_im, honest.public_g2.x_re, P - honest.public_g2.y_im,
                             P - honest.public_g2.y_re)  # fmt: skip
    rogue_g2 = bls.aggregate_g2([attacker.public_g2, negated_g2])
    negated_g1 = bls.G1Point(honest.public_g1.x, P - honest.public_g1.y)
    rogue_g1 = bls.aggregate_g1([attacker.public_g1, negated_g1])
    # Without PoP the attacker alone "attests for both".
    assert bls.verify_aggregate([honest.public_g2, rogue_g2], DIGEST, bls.sign(attacker.secret, DIGEST))
    # With PoP: the best the attacker can sign is with its own secret, which does not prove the rogue key.
    best_try = bls.sign(
        attacker.secret, bls.possession_message(rogue_g2, OWNER, 31337, COMMITTEE), bls.DST_POP
    )
    assert not bls.verify_possession(rogue_g1, rogue_g2, best_try, OWNER, 31337, COMMITTEE)


@pytest.mark.parametrize(
    ("owner", "chain_id", "committee"),
    [("0x1234", 1, COMMITTEE), ("nothex" * 7, 1, COMMITTEE), (OWNER, 0, COMMITTEE), (OWNER, True, COMMITTEE)],
)
def test_possession_message_rejects_bad_context(keys, owner, chain_id, committee):
    with pytest.raises(bls.BLSError):
        bls.possession_message(keys[0].public_g2, owner, chain_id, committee)


def test_possession_message_is_the_abi_encoding(keys):
    message = bls.possession_message(keys[0].public_g2, bytes.fromhex("11" * 20), 5, COMMITTEE)
    assert len(message) == 7 * 32
    assert message[4 * 32 : 5 * 32] == bytes(12) + bytes.fromhex("11" * 20)
    assert int.from_bytes(message[5 * 32 : 6 * 32], "big") == 5


# ---- signer bitmaps --------------------------------------------------------------------------------------------


def test_signer_bitmap_round_trips():
    bitmap = bls.signer_bitmap([0, 2, 63], 64)
    assert bitmap == 1 | 4 | 1 << 63
    assert bls.bitmap_indices(bitmap) == [0, 2, 63]


@pytest.mark.parametrize(
    ("indices", "size"), [([], 4), ([4], 4), ([-1], 4), ([1, 1], 4), ([0], 0), ([0], 257), ([True], 4)]
)
def test_signer_bitmap_rejects_bad_indices(indices, size):
    with pytest.raises(bls.BLSError):
        bls.signer_bitmap(indices, size)


@pytest.mark.parametrize("bitmap", [-1, 2**256, "3"])
def test_bitmap_indices_rejects_non_uint256(bitmap):
    with pytest.raises(bls.BLSError):
        bls.bitmap_indices(bitmap)
