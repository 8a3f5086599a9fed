"""Known-answer vectors for `backend.committee.bls`, shared with the Solidity side (tests/fixtures/bls_vectors.json).

The fixture is written by this module (`python tests/backend/committee/test_bls_vectors.py --write`) and checked in:
the test here fails if the Python implementation drifts from it, and the contract tests check the same numbers
against `BN254.sol`, so Python and Solidity cannot drift apart silently either.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest

from backend.committee import bls

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "bls_vectors.json"

# Fixed inputs: every vector is a pure function of these.
SEEDS = [hashlib.sha256(f"trustmarket bls vector key {i}".encode()).digest() for i in range(4)]
DIGEST = hashlib.sha256(b"trustmarket bls vector round digest").digest()
MESSAGES = [b"", b"abc", DIGEST, bytes(range(256)) * 2]
OWNER = "0x" + "70997970c51812dc3a010c7d01b50e0d17dc79c8"
COMMITTEE = "0x" + "5fbdb2315678afecb367f032d93f642f64180aa3"
CHAIN_ID = 31337


def _hex(value: int) -> str:
    return hex(value)


def _point(point) -> list[str]:
    return [_hex(v) for v in point]


def build_vectors() -> dict:
    """Every vector, recomputed from the fixed inputs above."""
    keys = [bls.derive_keypair(seed) for seed in SEEDS]
    signatures = [bls.sign(k.secret, DIGEST) for k in keys]
    aggregate = bls.aggregate_g1(signatures)
    apk_g1 = bls.aggregate_g1(k.public_g1 for k in keys)
    apk_g2 = bls.aggregate_g2(k.public_g2 for k in keys)
    message_point = bls.hash_to_g1(DIGEST)
    return {
        "about": "BLS on BN254 as backend/committee/bls.py and contracts/lib/BN254.sol compute it; integers in hex, "
        "G2 points in EIP-197 order (x_im, x_re, y_im, y_re). Regenerate with "
        "`python tests/backend/committee/test_bls_vectors.py --write`.",
        "dst": {"attest": bls.DST_ATTEST.decode(), "pop": bls.DST_POP.decode()},
        "tags": {
            "attest": "0x" + hashlib.sha256(bls.DST_ATTEST).hexdigest(),
            "pop": "0x" + hashlib.sha256(bls.DST_POP).hexdigest(),
        },
        "hash_to_g1": [
            {
                "dst": dst.decode(),
                "message": "0x" + message.hex(),
                "point": _point(bls.hash_to_g1(message, dst)),
            }
            for dst in (bls.DST_ATTEST, bls.DST_POP)
            for message in MESSAGES
        ],
        "keys": [
            {
                "seed": "0x" + seed.hex(),
                "secret": _hex(k.secret),
                "public_g1": _point(k.public_g1),
                "public_g2": _point(k.public_g2),
            }
            for seed, k in zip(SEEDS, keys, strict=True)
        ],
        "attestation": {
            "digest": "0x" + DIGEST.hex(),
            "message_point": _point(message_point),
            "signatures": [_point(s) for s in signatures],
            "aggregate_signature": _point(aggregate),
            "apk_g1": _point(apk_g1),
            "apk_g2": _point(apk_g2),
            "challenge": _hex(bls.challenge_scalar(message_point, aggregate, apk_g1, apk_g2)),
        },
        "possession": {
            "owner": OWNER,
            "chain_id": CHAIN_ID,
            "committee": COMMITTEE,
            "messages": [
                "0x" + bls.possession_message(k.public_g2, OWNER, CHAIN_ID, COMMITTEE).hex() for k in keys
            ],
            "proofs": [_point(bls.prove_possession(k, OWNER, CHAIN_ID, COMMITTEE)) for k in keys],
        },
    }


def load_vectors() -> dict:
    """The checked-in fixture."""
    return json.loads(FIXTURE.read_text())


def ints(values: list[str]) -> tuple[int, ...]:
    """A fixture point as integers."""
    return tuple(int(v, 16) for v in values)


def test_fixture_matches_the_implementation():
    assert load_vectors() == build_vectors()


def test_fixture_signatures_verify():
    vectors = load_vectors()
    attestation = vectors["attestation"]
    digest = bytes.fromhex(attestation["digest"][2:])
    assert bls.verify_with_g1_key(
        ints(attestation["apk_g1"]),
        ints(attestation["apk_g2"]),
        digest,
        ints(attestation["aggregate_signature"]),
    )
    first = vectors["keys"][0]
    assert bls.verify(ints(first["public_g2"]), digest, ints(attestation["signatures"][0]))


@pytest.mark.parametrize("index", [0, 3])
def test_fixture_proofs_of_possession_verify(index):
    vectors = load_vectors()
    pop, key = vectors["possession"], vectors["keys"][index]
    assert bls.verify_possession(
        ints(key["public_g1"]),
        ints(key["public_g2"]),
        ints(pop["proofs"][index]),
        pop["owner"],
        pop["chain_id"],
        pop["committee"],
    )


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python tests/backend/committee/test_bls_vectors.py --write")
    FIXTURE.parent.mkdir(parents=True, exist_ok=True)
    FIXTURE.write_text(json.dumps(build_vectors(), indent=2) + "\n")
    print(f"wrote {FIXTURE}")
