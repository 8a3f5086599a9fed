"""BLS signatures on BN254 (alt_bn128), laid out so the EVM's precompiles can check them cheaply.

Boneh, Lynn and Shacham, "Short signatures from the Weil pairing" (ASIACRYPT 2001); aggregation as in Boneh,
Gentry, Lynn and Shacham (EUROCRYPT 2003); rogue-key defence by proof of possession as in Ristenpart and Yilek,
"The power of proofs-of-possession" (EUROCRYPT 2007). The same layout EigenLayer's BLS quorum checks use:

- **Signatures and message points in G1, public keys in G2** (plus a G1 twin of every key). Hashing onto G1 is
  a few sha256 calls and one modular square root on chain; hashing onto G2 would need G2 scalar multiplication,
  for which the EVM has no precompile. The cost moves to the keys: G2 keys cannot be added on chain, so every
  key also exists in G1 (same secret), the contract adds the signers' G1 keys with ecAdd, the caller supplies
  their G2 sum, and one pairing call checks both the signature and that the two sums share a discrete log.
- **Hash to G1 by try-and-increment** over sha256 with a domain tag (`hash_to_g1`). The IETF hash_to_curve
  (RFC 9380) maps in constant time with SVDW for BN254; its cost on chain is several field inversions and
  square roots per call. Messages here are public round digests, so constant time buys nothing; each attempt
  reduces 512 hash bits modulo p (bias below 2^-250, like RFC 9380's expand_message) and succeeds with
  probability ~1/2. BN254's G1 has cofactor 1, so any curve point is in the group.
- **Proof of possession** signs the G2 key, the owner's address, the chain id and the committee's address under
  a separate domain tag (`DST_POP`), so a PoP is never a valid attestation and cannot be replayed by another
  owner or on another deployment.

Points travel as plain integers in EIP-197 order (`G2Point` puts each imaginary part first), the shape the
precompiles and the contract's ABI take. Pure: py_ecc and hashlib only.
"""

from __future__ import annotations

import functools
import hashlib
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from py_ecc.fields import optimized_bn128_FQ as FQ
from py_ecc.fields import optimized_bn128_FQ2 as FQ2
from py_ecc.fields import optimized_bn128_FQ12 as FQ12
from py_ecc.optimized_bn128 import (
    G1 as _G1,
)
from py_ecc.optimized_bn128 import (
    G2 as _G2,
)
from py_ecc.optimized_bn128 import (
    Z1,
    Z2,
    add,
    b,
    b2,
    curve_order,
    field_modulus,
    final_exponentiate,
    is_inf,
    is_on_curve,
    multiply,
    neg,
    normalize,
    pairing,
)

from aggregator.errors import AggregatorError

__all__ = [
    "CURVE_ORDER",
    "DST_ATTEST",
    "DST_POP",
    "FIELD_MODULUS",
    "G1_GENERATOR",
    "G1_INFINITY",
    "G2_GENERATOR",
    "BLSError",
    "G1Point",
    "G2Point",
    "KeyPair",
    "aggregate_g1",
    "aggregate_g2",
    "bitmap_indices",
    "challenge_scalar",
    "derive_keypair",
    "g1_point",
    "g2_point",
    "generate_keypair",
    "hash_to_g1",
    "keypair_from_secret",
    "possession_message",
    "prove_possession",
    "sign",
    "signer_bitmap",
    "verify",
    "verify_aggregate",
    "verify_possession",
    "verify_with_g1_key",
]

FIELD_MODULUS: int = field_modulus
CURVE_ORDER: int = curve_order
# Domain tags: a signature under one tag is never valid under the other (attestations vs proofs of possession).
DST_ATTEST = b"TRUSTMARKET-V1-BN254G1-SHA256-TAI-ATTEST"
DST_POP = b"TRUSTMARKET-V1-BN254G1-SHA256-TAI-POP"
_KEYGEN_TAG = b"TRUSTMARKET-V1-BN254-KEYGEN"
_MAX_HASH_TRIES = 256
_SQRT_EXPONENT = (FIELD_MODULUS + 1) // 4  # p = 3 (mod 4): a square root is one exponentiation


class BLSError(AggregatorError):
    """A malformed point or key, a point off the curve or outside the group, or an empty aggregation."""


class G1Point(NamedTuple):
    """An affine G1 point as the EVM encodes it; (0, 0) is the point at infinity."""

    x: int
    y: int


class G2Point(NamedTuple):
    """An affine G2 point in EIP-197 order (imaginary part first); all zeros is the point at infinity."""

    x_im: int
    x_re: int
    y_im: int
    y_re: int


G1_INFINITY = G1Point(0, 0)


def _g1_from_opt(point) -> G1Point:
    if is_inf(point):
        return G1_INFINITY
    x, y = normalize(point)
    return G1Point(int(x), int(y))


def _g2_from_opt(point) -> G2Point:
    if is_inf(point):
        return G2Point(0, 0, 0, 0)
    x, y = normalize(point)
    return G2Point(int(x.coeffs[1]), int(x.coeffs[0]), int(y.coeffs[1]), int(y.coeffs[0]))


G1_GENERATOR = _g1_from_opt(_G1)
G2_GENERATOR = _g2_from_opt(_G2)


def _check_coordinates(values: Sequence[int], what: str) -> None:
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int):
            raise BLSError(f"{what}: coordinates must be integers, got {type(value).__name__}")
        if not 0 <= value < FIELD_MODULUS:
            raise BLSError(f"{what}: coordinate {value} is outside the base field [0, p)")


def _g1_to_opt(point: Sequence[int], what: str = "G1 point"):
    if len(point) != 2:
        raise BLSError(f"{what}: expected 2 coordinates, got {len(point)}")
    _check_coordinates(point, what)
    if point[0] == 0 and point[1] == 0:
        return Z1
    opt = (FQ(point[0]), FQ(point[1]), FQ.one())
    if not is_on_curve(opt, b):
        raise BLSError(f"{what}: ({point[0]}, {point[1]}) is not on the curve y^2 = x^3 + 3")
    return opt  # G1 has cofactor 1: on the curve means in the group


def _g2_to_opt(point: Sequence[int], what: str = "G2 point"):
    if len(point) != 4:
        raise BLSError(f"{what}: expected 4 coordinates (x_im, x_re, y_im, y_re), got {len(point)}")
    _check_coordinates(point, what)
    if not any(point):
        return Z2
    x_im, x_re, y_im, y_re = point
    opt = (FQ2([x_re, x_im]), FQ2([y_re, y_im]), FQ2.one())
    if not is_on_curve(opt, b2):
        raise BLSError(f"{what}: not on the twisted curve (mind EIP-197 order: imaginary part first)")
    if not _in_g2_subgroup(tuple(point)):
        raise BLSError(f"{what}: not in the order-r subgroup of G2")
    return opt


@functools.lru_cache(maxsize=4096)
def _in_g2_subgroup(point: tuple[int, int, int, int]) -> bool:
    """r * Q == O. The twist has a large cofactor: a point of the wrong order could cancel out of a pairing.
    Cached because committee keys are checked over and over and the multiplication is the slow part."""
    x_im, x_re, y_im, y_re = point
    return is_inf(multiply((FQ2([x_re, x_im]), FQ2([y_re, y_im]), FQ2.one()), CURVE_ORDER))


def g1_point(x: int, y: int) -> G1Point:
    """A validated G1 point (on the curve, coordinates in the field)."""
    _g1_to_opt((x, y))
    return G1Point(x, y)


def g2_point(x_im: int, x_re: int, y_im: int, y_re: int) -> G2Point:
    """A validated G2 point (on the twist and in the order-r subgroup), EIP-197 order."""
    _g2_to_opt((x_im, x_re, y_im, y_re))
    return G2Point(x_im, x_re, y_im, y_re)


def _sha256(*parts: bytes) -> bytes:
    return hashlib.sha256(b"".join(parts)).digest()


def _word(value: int) -> bytes:
    return value.to_bytes(32, "big")


def hash_to_g1(message: bytes, dst: bytes = DST_ATTEST) -> G1Point:
    """Map `message` onto G1 by try-and-increment; `BN254.hashToG1` in Solidity computes the same point.

    tag = sha256(dst), m = sha256(message); for ctr = 0, 1, ...: x = (sha256(tag|m|ctr|0) * 2^256 +
    sha256(tag|m|ctr|1)) mod p; if x^3 + 3 is a square, return (x, y) with y its even square root.
    """
    if not isinstance(message, bytes | bytearray) or not isinstance(dst, bytes | bytearray):
        raise BLSError("hash_to_g1: message and domain tag must be bytes")
    if not dst:
        raise BLSError("hash_to_g1: the domain tag must not be empty")
    prefix = _sha256(dst) + _sha256(message)
    for counter in range(_MAX_HASH_TRIES):
        seed = prefix + bytes([counter])
        high = int.from_bytes(_sha256(seed, b"\x00"), "big")
        low = int.from_bytes(_sha256(seed, b"\x01"), "big")
        x = ((high << 256) | low) % FIELD_MODULUS
        rhs = (pow(x, 3, FIELD_MODULUS) + 3) % FIELD_MODULUS
        y = pow(rhs, _SQRT_EXPONENT, FIELD_MODULUS)
        if y * y % FIELD_MODULUS == rhs:
            return G1Point(x, FIELD_MODULUS - y if y & 1 else y)
    # Each attempt fails with probability ~1/2: 256 failures in a row do not happen.
    raise BLSError("hash_to_g1: no curve point found")  # pragma: no cover


@dataclass(frozen=True)
class KeyPair:
    """A BLS secret key with its public key in G2 (what signatures verify against) and its G1 twin."""

    secret: int = field(repr=False)
    public_g1: G1Point
    public_g2: G2Point


def _check_secret(secret: int) -> None:
    if isinstance(secret, bool) or not isinstance(secret, int):
        raise BLSError("a secret key must be an integer")
    if not 0 < secret < CURVE_ORDER:
        raise BLSError("a secret key must lie in [1, r) for the BN254 group order r")


def keypair_from_secret(secret: int) -> KeyPair:
    """The key pair of a secret scalar in [1, r)."""
    _check_secret(secret)
    return KeyPair(secret, _g1_from_opt(multiply(_G1, secret)), _g2_from_opt(multiply(_G2, secret)))


def derive_keypair(seed: bytes) -> KeyPair:
    """A deterministic key pair from a seed of at least 32 bytes (512 hash bits reduced mod r, never 0)."""
    if not isinstance(seed, bytes | bytearray) or len(seed) < 32:
        raise BLSError("a key seed must be at least 32 bytes")
    for counter in range(_MAX_HASH_TRIES):
        wide = _sha256(_KEYGEN_TAG, seed, bytes([counter, 0])) + _sha256(
            _KEYGEN_TAG, seed, bytes([counter, 1])
        )
        secret = int.from_bytes(wide, "big") % CURVE_ORDER
        if secret:
            return keypair_from_secret(secret)
    raise BLSError("derive_keypair: no usable scalar")  # pragma: no cover


def generate_keypair() -> KeyPair:
    """A fresh key pair from the operating system's randomness."""
    return derive_keypair(secrets.token_bytes(64))


def sign(secret: int, message: bytes, dst: bytes = DST_ATTEST) -> G1Point:
    """sigma = sk * H(message): a G1 signature (for attestations `message` is the 32-byte result digest)."""
    _check_secret(secret)
    return _g1_from_opt(multiply(_g1_to_opt(hash_to_g1(message, dst)), secret))


def _pairing_product_is_one(pairs) -> bool:
    """prod e(Q_i, P_i) == 1 with one final exponentiation, as the EIP-197 precompile computes it."""
    accumulated = FQ12.one()
    for q, p in pairs:
        accumulated = accumulated * pairing(q, p, final_exponentiate=False)
    return final_exponentiate(accumulated) == FQ12.one()


def verify(
    public_g2: Sequence[int], message: bytes, signature: Sequence[int], dst: bytes = DST_ATTEST
) -> bool:
    """e(sigma, g2) == e(H(message), pk). Raises `BLSError` on malformed input, returns False on a bad signature.

    Only aggregate keys of proven-possession keys (`verify_possession`) are safe to pass here.
    """
    pk = _g2_to_opt(public_g2, "public key")
    if is_inf(pk):
        raise BLSError("public key: the point at infinity is not a key")
    sigma = _g1_to_opt(signature, "signature")
    h = _g1_to_opt(hash_to_g1(message, dst))
    return _pairing_product_is_one([(neg(_G2), sigma), (pk, h)])


def challenge_scalar(
    message_point: Sequence[int], signature: Sequence[int], apk_g1: Sequence[int], apk_g2: Sequence[int]
) -> int:
    """gamma = sha256(abi.encode(H, sigma, apkG1, apkG2)) mod r: the random-linear-combination weight.

    It is fixed by everything the prover chose, so a forged pair cannot be tuned to cancel (Fiat-Shamir).
    """
    words = [*message_point, *signature, *apk_g1, *apk_g2]
    return int.from_bytes(_sha256(*(_word(v) for v in words)), "big") % CURVE_ORDER


def verify_with_g1_key(
    apk_g1: Sequence[int],
    apk_g2: Sequence[int],
    message: bytes,
    signature: Sequence[int],
    dst: bytes = DST_ATTEST,
) -> bool:
    """The contract's check: e(sigma + gamma*apkG1, -g2) * e(H + gamma*g1, apkG2) == 1, one pairing call.

    It holds for honest input, and (for a random gamma) only if sigma = sk*H and apkG1 = sk*g1 for the sk of
    apkG2: the signature is valid and the G2 sum the caller supplied matches the G1 keys the contract added.
    """
    apk1 = _g1_to_opt(apk_g1, "aggregate G1 key")
    apk2 = _g2_to_opt(apk_g2, "aggregate G2 key")
    if is_inf(apk1) or is_inf(apk2):
        raise BLSError("aggregate key: the point at infinity is not a key")
    sigma = _g1_to_opt(signature, "signature")
    h_point = hash_to_g1(message, dst)
    gamma = challenge_scalar(h_point, signature, apk_g1, apk_g2)
    left = add(sigma, multiply(apk1, gamma))
    right = add(_g1_to_opt(h_point), multiply(_G1, gamma))
    return _pairing_product_is_one([(neg(_G2), left), (apk2, right)])


def _address_word(address: str | bytes, what: str) -> bytes:
    if isinstance(address, str):
        text = address[2:] if address[:2] in ("0x", "0X") else address
        try:
            raw = bytes.fromhex(text)
        except ValueError:
            raise BLSError(f"{what}: {address!r} is not a hex address") from None
    else:
        raw = bytes(address)
    if len(raw) != 20:
        raise BLSError(f"{what}: an address has 20 bytes, got {len(raw)}")
    return bytes(12) + raw


def possession_message(
    public_g2: Sequence[int], owner: str | bytes, chain_id: int, committee: str | bytes
) -> bytes:
    """abi.encode(pkG2.xIm, pkG2.xRe, pkG2.yIm, pkG2.yRe, owner, chainid, committee): what a PoP signs."""
    if isinstance(chain_id, bool) or not isinstance(chain_id, int) or not 0 < chain_id < 2**256:
        raise BLSError("chain id must be a positive integer")
    _check_coordinates(public_g2, "public key")
    return b"".join(
        [
            *(_word(v) for v in public_g2),
            _address_word(owner, "owner"),
            _word(chain_id),
            _address_word(committee, "committee"),
        ]
    )


def prove_possession(keys: KeyPair, owner: str | bytes, chain_id: int, committee: str | bytes) -> G1Point:
    """A proof of possession of `keys` for registration by `owner` on `committee` at `chain_id`."""
    return sign(keys.secret, possession_message(keys.public_g2, owner, chain_id, committee), DST_POP)


def verify_possession(
    public_g1: Sequence[int],
    public_g2: Sequence[int],
    proof: Sequence[int],
    owner: str | bytes,
    chain_id: int,
    committee: str | bytes,
) -> bool:
    """True when `proof` is a PoP of the secret behind both `public_g1` and `public_g2` (what `register` checks)."""
    message = possession_message(public_g2, owner, chain_id, committee)
    return verify_with_g1_key(public_g1, public_g2, message, proof, DST_POP)


def aggregate_g1(points: Iterable[Sequence[int]]) -> G1Point:
    """The sum of G1 points (signatures, or G1 keys); each is validated first."""
    total, count = Z1, 0
    for count, point in enumerate(points, start=1):
        total = add(total, _g1_to_opt(point, f"G1 point #{count - 1}"))
    if count == 0:
        raise BLSError("nothing to aggregate")
    return _g1_from_opt(total)


def aggregate_g2(points: Iterable[Sequence[int]]) -> G2Point:
    """The sum of G2 public keys (each validated on the twist and in the subgroup)."""
    total, count = Z2, 0
    for count, point in enumerate(points, start=1):
        total = add(total, _g2_to_opt(point, f"G2 point #{count - 1}"))
    if count == 0:
        raise BLSError("nothing to aggregate")
    return _g2_from_opt(total)


def verify_aggregate(
    public_keys_g2: Sequence[Sequence[int]], message: bytes, signature: Sequence[int], dst: bytes = DST_ATTEST
) -> bool:
    """One aggregated signature by every key over the same message (keys must have proven possession)."""
    return verify(aggregate_g2(public_keys_g2), message, signature, dst)


def signer_bitmap(indices: Iterable[int], committee_size: int) -> int:
    """Bit i set for committee member i; indices must be distinct and below `committee_size` (<= 256)."""
    if not 0 < committee_size <= 256:
        raise BLSError(f"committee size must be in [1, 256], got {committee_size}")
    bitmap = 0
    for index in indices:
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < committee_size:
            raise BLSError(f"signer index {index!r} is outside the committee [0, {committee_size})")
        if bitmap >> index & 1:
            raise BLSError(f"signer index {index} appears twice")
        bitmap |= 1 << index
    if bitmap == 0:
        raise BLSError("a signer bitmap needs at least one signer")
    return bitmap


def bitmap_indices(bitmap: int) -> list[int]:
    """The member indices set in a signer bitmap, ascending."""
    if isinstance(bitmap, bool) or not isinstance(bitmap, int) or not 0 <= bitmap < 2**256:
        raise BLSError("a signer bitmap is a uint256")
    return [i for i in range(bitmap.bit_length()) if bitmap >> i & 1]
