"""CIDs as this store uses them: sha2-256 multihashes, dag-pb or raw codec, version 0 or 1.

Parsing and the text form go through `multiformats`. Binary CIDs of blocks are built from prefixes that
`multiformats` computes once at import, so the importer pays one concatenation per block instead of a full CID
object (which costs ~100 µs, i.e. seconds for a 1 GB file).
"""

from __future__ import annotations

import base64
import hashlib

from multiformats import CID, multihash

from backend.storage.errors import StorageError

_ZERO_DIGEST = bytes(32)
_SHA256_MH = multihash.wrap(_ZERO_DIGEST, "sha2-256")
MULTIHASH_PREFIX = _SHA256_MH[: -len(_ZERO_DIGEST)]  # b"\x12\x20": sha2-256, 32 bytes
DAG_PB_V0_PREFIX = bytes(CID("base58btc", 0, "dag-pb", _SHA256_MH))[: -len(_SHA256_MH)]  # empty: v0 is the mh
DAG_PB_V1_PREFIX = bytes(CID("base32", 1, "dag-pb", _SHA256_MH))[: -len(_SHA256_MH)]
RAW_V1_PREFIX = bytes(CID("base32", 1, "raw", _SHA256_MH))[: -len(_SHA256_MH)]
DIGEST_SIZE = len(_ZERO_DIGEST)

DAG_PB = "dag-pb"
RAW = "raw"


def sha256_hex(data: bytes | bytearray | memoryview) -> str:
    """Hex sha256 of `data`: the digest recorded on chain next to a CID."""
    return hashlib.sha256(data).hexdigest()


def make_cid(prefix: bytes, digest: bytes) -> bytes:
    """Binary CID of a block from its prefix (one of the `*_PREFIX` constants) and sha256 digest."""
    return prefix + MULTIHASH_PREFIX + digest


def parse_cid(cid: str | bytes) -> CID:
    """Decode a CID (text or binary) and check that this store can verify it: sha2-256, dag-pb or raw."""
    try:
        decoded = CID.decode(cid)
    except (ValueError, KeyError, TypeError) as exc:
        shown = cid if isinstance(cid, str) else cid.hex()
        raise StorageError(f"not a valid CID: {shown!r}") from exc
    if decoded.hashfun.name != "sha2-256" or len(decoded.raw_digest) != DIGEST_SIZE:
        raise StorageError(f"unsupported hash function {decoded.hashfun.name} in CID {decoded}")
    if decoded.codec.name not in (DAG_PB, RAW):
        raise StorageError(f"unsupported codec {decoded.codec.name} in CID {decoded} (only dag-pb and raw)")
    return decoded


_B58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_CID_PREFIXES = (DAG_PB_V1_PREFIX + MULTIHASH_PREFIX, RAW_V1_PREFIX + MULTIHASH_PREFIX)
_V0_LENGTH = len(MULTIHASH_PREFIX) + DIGEST_SIZE
_V1_LENGTH = len(_CID_PREFIXES[0]) + DIGEST_SIZE


def is_block_cid(binary: bytes) -> bool:
    """Whether a binary CID is one this store can verify (sha2-256; dag-pb v0/v1 or raw v1), without decoding."""
    if len(binary) == _V0_LENGTH:
        return binary.startswith(MULTIHASH_PREFIX)
    return len(binary) == _V1_LENGTH and binary.startswith(_CID_PREFIXES)


def _base58btc(data: bytes) -> str:
    number = int.from_bytes(data, "big")
    out = []
    while number:
        number, digit = divmod(number, 58)
        out.append(_B58_ALPHABET[digit])
    zeros = len(data) - len(data.lstrip(b"\0"))
    return "1" * zeros + "".join(reversed(out))


def cid_text(binary: bytes) -> str:
    """The text form Kubo prints: base58btc for CIDv0, base32 for CIDv1.

    Encoded here (stdlib base32, a ten-line base58) for the CIDs this store makes, because `multiformats` spends
    ~0.5 ms per CID on run-time type checks and KuboStore names every block it fetches; the tests check both
    encodings against `multiformats`, which still handles every other CID.
    """
    if is_block_cid(binary):
        if len(binary) == _V0_LENGTH:
            return _base58btc(binary)
        return "b" + base64.b32encode(binary).decode("ascii").lower().rstrip("=")
    decoded = CID.decode(binary)
    return str(decoded if decoded.version == 0 else decoded.set(base="base32"))


def codec_of(binary: bytes) -> str:
    """`raw` or `dag-pb`, read from the binary CID's prefix without a full decode."""
    return RAW if binary.startswith(RAW_V1_PREFIX) else DAG_PB


def digest_of(binary: bytes) -> bytes:
    """The raw sha256 digest inside a binary CID (its last 32 bytes for every CID this store accepts)."""
    return binary[-DIGEST_SIZE:]


def block_key(binary: bytes) -> str:
    """Canonical name of a block: its CIDv1 in base32 (a CIDv0 and its CIDv1 name the same block).

    base32 is done by the stdlib encoder because this runs once per block; the tests check it against
    `multiformats`.
    """
    if binary.startswith(MULTIHASH_PREFIX):  # CIDv0: the multihash alone, always dag-pb
        binary = DAG_PB_V1_PREFIX + binary
    return "b" + base64.b32encode(binary).decode("ascii").lower().rstrip("=")


__all__ = [
    "DAG_PB",
    "DAG_PB_V0_PREFIX",
    "DAG_PB_V1_PREFIX",
    "DIGEST_SIZE",
    "MULTIHASH_PREFIX",
    "RAW",
    "RAW_V1_PREFIX",
    "block_key",
    "cid_text",
    "codec_of",
    "digest_of",
    "is_block_cid",
    "make_cid",
    "parse_cid",
    "sha256_hex",
]
