"""Round attestations: a verifier's BLS signature over a round's result digest, and the quorum attestation
built from several of them against the round's snapshot committee.

A verifier signs only after recomputing the round and finding the digest the market stores (`sign_round`).
Anyone then collects the signatures and `aggregate`s them (bad or foreign signatures are left out and reported,
never submitted) and `submit`s one attestation. `join` registers a verifier with the proof of possession made
for its own account, chain and committee.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from decimal import Decimal
from typing import Any

from eth_account.signers.local import LocalAccount
from web3 import Web3

from backend.chain.verifier_committee import (
    G2,
    QUORUM_DENOMINATOR,
    QUORUM_NUMERATOR,
    AttestationResult,
    CommitteeError,
    Member,
    VerifierCommittee,
    VerifierInfo,
)
from backend.committee import bls

__all__ = ["Attestation", "EmptyCommittee", "VerifierSignature", "aggregate", "join", "sign_round", "submit"]


def _ether(wei: int) -> str:
    text = format(Decimal(int(wei)) / 10**18, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


class EmptyCommittee(CommitteeError):
    """The snapshot committee of a round has no members, so nothing can ever attest that round."""


def _hex_point(point: Iterable[int]) -> list[str]:
    return [hex(v) for v in point]


def _parse_point(values: Any, size: int, what: str) -> tuple[int, ...]:
    if not isinstance(values, list | tuple) or len(values) != size:
        raise CommitteeError(f"{what}: expected {size} coordinates")
    try:
        return tuple(int(v, 0) if isinstance(v, str) else int(v) for v in values)
    except (TypeError, ValueError):
        raise CommitteeError(f"{what}: coordinates must be integers or hex strings") from None


def _parse_digest(value: Any) -> bytes:
    try:
        digest = bytes.fromhex(value.removeprefix("0x")) if isinstance(value, str) else bytes(value)
    except (TypeError, ValueError):
        raise CommitteeError(f"digest {value!r} is not hex") from None
    if len(digest) != 32:
        raise CommitteeError(f"a result digest has 32 bytes, got {len(digest)}")
    return digest


@dataclass(frozen=True)
class VerifierSignature:
    """One verifier's BLS signature over a round's result digest (what `trustmarket verifier sign` writes)."""

    verifier: str
    market: str
    project_id: int
    round: int
    digest: bytes
    signature: bls.G1Point

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "digest": "0x" + self.digest.hex(), "signature": _hex_point(self.signature)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> VerifierSignature:
        try:
            point = _parse_point(data["signature"], 2, "signature")
            return cls(
                Web3.to_checksum_address(data["verifier"]),
                Web3.to_checksum_address(data["market"]),
                int(data["project_id"]),
                int(data["round"]),
                _parse_digest(data["digest"]),
                bls.g1_point(*point),
            )
        except KeyError as exc:
            raise CommitteeError(f"a verifier signature needs the field {exc.args[0]!r}") from None


def sign_round(
    keys: bls.KeyPair, verifier: str, market: str, project_id: int, round_: int, digest: bytes | str
) -> VerifierSignature:
    """Sign a round's result digest (only after recomputing the round and finding the same digest)."""
    digest = _parse_digest(digest)
    return VerifierSignature(
        Web3.to_checksum_address(verifier),
        Web3.to_checksum_address(market),
        project_id,
        round_,
        digest,
        bls.sign(keys.secret, digest),
    )


@dataclass(frozen=True)
class Attestation:
    """One aggregated attestation, ready for `attest` (what `trustmarket verifier aggregate` writes)."""

    market: str
    project_id: int
    round: int
    digest: bytes
    epoch: int
    signer_bitmap: int
    apk_g2: bls.G2Point
    signature: bls.G1Point
    signers: tuple[str, ...]
    signed_weight: int
    total_weight: int

    def to_json(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "digest": "0x" + self.digest.hex(),
            "signer_bitmap": hex(self.signer_bitmap),
            "apk_g2": _hex_point(self.apk_g2),
            "signature": _hex_point(self.signature),
            "signers": list(self.signers),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Attestation:
        try:
            return cls(
                Web3.to_checksum_address(data["market"]),
                int(data["project_id"]),
                int(data["round"]),
                _parse_digest(data["digest"]),
                int(data["epoch"]),
                int(data["signer_bitmap"], 0),
                bls.g2_point(*_parse_point(data["apk_g2"], 4, "apk_g2")),
                bls.g1_point(*_parse_point(data["signature"], 2, "signature")),
                tuple(Web3.to_checksum_address(a) for a in data["signers"]),
                int(data["signed_weight"]),
                int(data["total_weight"]),
            )
        except KeyError as exc:
            raise CommitteeError(f"an attestation needs the field {exc.args[0]!r}") from None


def aggregate(
    committee: VerifierCommittee, signatures: Iterable[VerifierSignature]
) -> tuple[Attestation, dict[str, str]]:
    """Build the attestation from collected signatures against the round's snapshot committee.

    Returns it with the signatures left out and why (not a member, a repeat, does not verify). Raises
    `CommitteeError` if the signatures are for different rounds, the market now stores another digest, or
    the valid ones hold less than the quorum.
    """
    collected = list(signatures)
    if not collected:
        raise CommitteeError("no signatures to aggregate")
    rounds = {(s.market, s.project_id, s.round, s.digest) for s in collected}
    if len(rounds) != 1:
        raise CommitteeError(f"signatures for {len(rounds)} different round results; aggregate one at a time")
    market, project_id, round_, digest = rounds.pop()
    stored = committee.market_digest(market, project_id, round_)
    if stored != digest:
        raise CommitteeError(
            f"the market stores digest 0x{stored.hex()} for this round, not 0x{digest.hex()}"
        )
    record = committee.round_record(market, project_id, round_, digest)
    epoch = record.epoch if record.pinned else committee.current_epoch()
    seats = {m.address: m for m in committee.members(epoch)}
    rejected: dict[str, str] = {}
    candidates: dict[str, tuple[Member, G2, bls.G1Point]] = {}
    for sig in collected:
        if sig.verifier in candidates or sig.verifier in rejected:
            rejected.setdefault(sig.verifier, "signed more than once")
            continue
        if sig.verifier not in seats:
            rejected[sig.verifier] = f"not a member of the snapshot committee (epoch {epoch})"
            continue
        candidates[sig.verifier] = (seats[sig.verifier], committee.public_key_g2(sig.verifier), sig.signature)
    if candidates and not bls.verify_aggregate(
        [c[1] for c in candidates.values()], digest, bls.aggregate_g1(c[2] for c in candidates.values())
    ):
        # Some signature is bad: find it (one pairing check each, only on this slow path).
        for address, (_, key, signature) in list(candidates.items()):
            if not bls.verify(key, digest, signature):
                rejected[address] = "signature does not verify for this digest"
                del candidates[address]
    return _build(committee, market, project_id, round_, digest, epoch, candidates, rejected), rejected


def _build(
    committee: VerifierCommittee, market, project_id, round_, digest, epoch, candidates, rejected
) -> Attestation:
    total = committee.epoch(epoch).total_weight
    if total == 0:
        raise EmptyCommittee(
            f"the committee of epoch {epoch}, this round's snapshot, has no members (the round was finalized "
            "before any verifier joined): no quorum can attest it; its challenge window applies"
        )
    signed = sum(member.weight for member, _, _ in candidates.values())
    if not candidates or signed * QUORUM_DENOMINATOR < total * QUORUM_NUMERATOR:
        reasons = "; ".join(f"{a}: {why}" for a, why in rejected.items())
        raise CommitteeError(
            f"no quorum yet: valid signers hold {_ether(signed)} of {_ether(total)} ETH of stake (each member's "
            f"capped) in epoch {epoch} (need {QUORUM_NUMERATOR}/{QUORUM_DENOMINATOR})"
            + (f"; left out {reasons}" if reasons else "")
        )
    ordered = sorted(candidates.values(), key=lambda c: c[0].index)
    return Attestation(
        market,
        project_id,
        round_,
        digest,
        epoch,
        bls.signer_bitmap([m.index for m, _, _ in ordered], 256),
        bls.aggregate_g2(key for _, key, _ in ordered),
        bls.aggregate_g1(sig for _, _, sig in ordered),
        tuple(m.address for m, _, _ in ordered),
        signed,
        total,
    )


def join(committee: VerifierCommittee, account: LocalAccount, keys: bls.KeyPair, stake: int) -> VerifierInfo:
    """Lock `stake` wei and join with `keys`, proving possession of the key for this account and committee."""
    proof = bls.prove_possession(keys, account.address, committee.client.chain_id, committee.address)
    return committee.register(account, keys.public_g1, keys.public_g2, proof, stake)


def submit(
    committee: VerifierCommittee, account: LocalAccount, attestation: Attestation
) -> AttestationResult:
    """Send one aggregated attestation; reverts (replay, no quorum, bad signature) raise named errors."""
    a = attestation
    return committee.attest(
        account, a.market, a.project_id, a.round, a.digest, a.signer_bitmap, a.apk_g2, a.signature
    )
