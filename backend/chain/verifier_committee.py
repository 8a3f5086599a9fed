"""Typed facade over `VerifierCommittee.sol`: staked BLS verifiers who attest to training rounds' result digests.

A verifier registers with a stake, a BLS key pair on BN254 (`aggregator.bls`) and a proof of possession; for each
finalized round it recomputes the result and, on a match, signs the digest the market stores (`sign_round`).
Anyone then collects the signatures, `aggregate`s them against the round's snapshot committee (bad or foreign
signatures are dropped and reported, never submitted) and `submit`s one attestation. Reverts come back as
`ContractRevert` subclasses named after the Solidity errors (`revert_class("QuorumNotReached")`, ...).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from enum import IntEnum
from typing import Any

from eth_account.signers.local import LocalAccount
from web3 import Web3

from aggregator import bls
from backend.chain.client import ChainClient
from backend.chain.errors import ChainError
from backend.chain.facade import ContractFacade

__all__ = [
    "CONTRACT",
    "MARKET_INTERFACE",
    "QUORUM_DENOMINATOR",
    "QUORUM_NUMERATOR",
    "Attestation",
    "AttestationResult",
    "CommitteeError",
    "EpochInfo",
    "Member",
    "RoundRecord",
    "VerifierCommittee",
    "VerifierInfo",
    "VerifierSignature",
    "VerifierStatus",
    "deploy_verifier_committee",
    "sign_round",
]

CONTRACT = "VerifierCommittee"
# The one view the committee needs from a market (TrainingMarket implements it).
MARKET_INTERFACE = "IRoundResultSource"
QUORUM_NUMERATOR, QUORUM_DENOMINATOR = 2, 3  # mirrors of the contract's constants (checked in the tests)


class CommitteeError(ChainError, ValueError):
    """An attestation that cannot be built: mixed rounds, a stale digest, too few valid signatures."""


class VerifierStatus(IntEnum):
    NONE = 0
    ACTIVE = 1
    EXITING = 2


@dataclass(frozen=True)
class VerifierInfo:
    address: str
    stake: int
    withdrawable_at: int
    index: int
    status: VerifierStatus


@dataclass(frozen=True)
class Member:
    """One seat of an epoch's committee; `index` is its bit in signer bitmaps."""

    index: int
    address: str
    stake: int
    public_g1: bls.G1Point


@dataclass(frozen=True)
class EpochInfo:
    epoch: int
    table: str
    size: int
    started_at: int
    total_stake: int


@dataclass(frozen=True)
class RoundRecord:
    """A round result's snapshot epoch (fixed when first pinned) and whether it has been attested."""

    epoch: int
    pinned_at: int
    pinned: bool
    attested: bool


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
    signed_stake: int
    total_stake: int

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
                int(data["signed_stake"]),
                int(data["total_stake"]),
            )
        except KeyError as exc:
            raise CommitteeError(f"an attestation needs the field {exc.args[0]!r}") from None


@dataclass(frozen=True)
class AttestationResult:
    """What `RoundAttested` recorded."""

    epoch: int
    signer_bitmap: int
    signed_stake: int
    total_stake: int
    block: int
    gas_used: int


class VerifierCommittee(ContractFacade):
    """The deployed VerifierCommittee (or the one at `address`), through a `ChainClient`."""

    contract_name = CONTRACT

    # -- reads -----------------------------------------------------------------------------------------------

    def min_stake(self) -> int:
        return int(self._call("minStake"))

    def exit_delay(self) -> int:
        return int(self._call("exitDelay"))

    def attest_window(self) -> int:
        return int(self._call("attestWindow"))

    def current_epoch(self) -> int:
        return int(self._call("currentEpoch"))

    def epoch(self, epoch: int) -> EpochInfo:
        table, size, started_at, total_stake = self._call("epochInfo", epoch)
        return EpochInfo(epoch, table, int(size), int(started_at), int(total_stake))

    def members(self, epoch: int | None = None) -> list[Member]:
        """The committee of `epoch` (default: the current one) in bitmap order."""
        epoch = self.current_epoch() if epoch is None else epoch
        addresses, stakes, keys = self._call("committee", epoch)
        return [
            Member(i, a, int(s), bls.G1Point(int(k[0]), int(k[1])))
            for i, (a, s, k) in enumerate(zip(addresses, stakes, keys, strict=True))
        ]

    def verifier(self, address: str) -> VerifierInfo:
        stake, withdrawable_at, index, status = self._call("verifiers", Web3.to_checksum_address(address))
        return VerifierInfo(
            Web3.to_checksum_address(address),
            int(stake),
            int(withdrawable_at),
            int(index),
            VerifierStatus(status),
        )

    def public_key_g2(self, address: str) -> bls.G2Point:
        return bls.G2Point(*(int(v) for v in self._call("publicKeyG2", Web3.to_checksum_address(address))))

    def market_digest(self, market: str, project_id: int, round_: int) -> bytes:
        """The result digest the market stores for the round (32 zero bytes while it is not finalized)."""
        return bytes(
            self.client.call(
                MARKET_INTERFACE,
                "roundResultDigest",
                project_id,
                round_,
                address=Web3.to_checksum_address(market),
            )
        )

    def round_record(self, market: str, project_id: int, round_: int, digest: bytes) -> RoundRecord:
        epoch, pinned_at, pinned, attested = self._call(
            "roundRecord", Web3.to_checksum_address(market), project_id, round_, _parse_digest(digest)
        )
        return RoundRecord(int(epoch), int(pinned_at), bool(pinned), bool(attested))

    def is_attested(self, market: str, project_id: int, round_: int) -> bool:
        """Whether the result the market stores now for the round has a quorum attestation."""
        return bool(self._call("isAttested", Web3.to_checksum_address(market), project_id, round_))

    # -- writes ----------------------------------------------------------------------------------------------

    def register(self, account: LocalAccount, keys: bls.KeyPair, stake: int) -> VerifierInfo:
        """Lock `stake` wei and join with `keys` (the proof of possession is made here, for this account)."""
        proof = bls.prove_possession(keys, account.address, self.client.chain_id, self.address)
        self._transact(account, "register", keys.public_g1, keys.public_g2, proof, value=stake)
        return self.verifier(account.address)

    def request_exit(self, account: LocalAccount) -> int:
        """Leave the committee; returns the time from which the stake can be withdrawn."""
        receipt = self._transact(account, "requestExit")
        return int(self._event(receipt, "ExitRequested")["withdrawableAt"])

    def withdraw(self, account: LocalAccount) -> int:
        """Pull the stake back after the exit delay; returns the amount paid."""
        receipt = self._transact(account, "withdraw")
        return int(self._event(receipt, "StakeWithdrawn")["amount"])

    def pin_snapshot(self, account: LocalAccount, market: str, project_id: int, round_: int) -> int:
        """Fix the round's snapshot epoch now (idempotent); returns it."""
        self._transact(account, "pinSnapshot", Web3.to_checksum_address(market), project_id, round_)
        digest = self.market_digest(market, project_id, round_)
        return self.round_record(market, project_id, round_, digest).epoch

    def submit(self, account: LocalAccount, attestation: Attestation) -> AttestationResult:
        """Send one aggregated attestation; reverts (replay, no quorum, bad signature) raise named errors."""
        a = attestation
        receipt = self._transact(
            account,
            "attest",
            a.market,
            a.project_id,
            a.round,
            a.digest,
            a.signer_bitmap,
            a.apk_g2,
            a.signature,
        )
        args = self._event(receipt, "RoundAttested")
        return AttestationResult(
            int(args["epoch"]),
            int(args["signerBitmap"]),
            int(args["signedStake"]),
            int(args["totalStake"]),
            int(receipt["blockNumber"]),
            int(receipt["gasUsed"]),
        )

    # -- aggregation -----------------------------------------------------------------------------------------

    def aggregate(self, signatures: Iterable[VerifierSignature]) -> tuple[Attestation, dict[str, str]]:
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
            raise CommitteeError(
                f"signatures for {len(rounds)} different round results; aggregate one at a time"
            )
        market, project_id, round_, digest = rounds.pop()
        stored = self.market_digest(market, project_id, round_)
        if stored != digest:
            raise CommitteeError(
                f"the market stores digest 0x{stored.hex()} for this round, not 0x{digest.hex()}"
            )
        record = self.round_record(market, project_id, round_, digest)
        epoch = record.epoch if record.pinned else self.current_epoch()
        seats = {m.address: m for m in self.members(epoch)}
        rejected: dict[str, str] = {}
        candidates: dict[str, tuple[Member, bls.G2Point, bls.G1Point]] = {}
        for sig in collected:
            if sig.verifier in candidates or sig.verifier in rejected:
                rejected.setdefault(sig.verifier, "signed more than once")
                continue
            if sig.verifier not in seats:
                rejected[sig.verifier] = f"not a member of the snapshot committee (epoch {epoch})"
                continue
            candidates[sig.verifier] = (seats[sig.verifier], self.public_key_g2(sig.verifier), sig.signature)
        if candidates and not bls.verify_aggregate(
            [c[1] for c in candidates.values()], digest, bls.aggregate_g1(c[2] for c in candidates.values())
        ):
            # Some signature is bad: find it (one pairing check each, only on this slow path).
            for address, (_, key, signature) in list(candidates.items()):
                if not bls.verify(key, digest, signature):
                    rejected[address] = "signature does not verify for this digest"
                    del candidates[address]
        return self._build(market, project_id, round_, digest, epoch, candidates, rejected), rejected

    def _build(self, market, project_id, round_, digest, epoch, candidates, rejected) -> Attestation:
        total = self.epoch(epoch).total_stake
        signed = sum(member.stake for member, _, _ in candidates.values())
        if not candidates or signed * QUORUM_DENOMINATOR < total * QUORUM_NUMERATOR:
            reasons = "; ".join(f"{a}: {why}" for a, why in rejected.items())
            raise CommitteeError(
                f"no quorum: valid signers hold {signed} of {total} wei staked in epoch {epoch} (need "
                f"{QUORUM_NUMERATOR}/{QUORUM_DENOMINATOR})" + (f"; left out {reasons}" if reasons else "")
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


def deploy_verifier_committee(
    client: ChainClient, deployer: LocalAccount, *, min_stake: int = 10**16, exit_delay: int = 3600
) -> VerifierCommittee:
    """Deploy a fresh committee (for tests, benchmarks and experiments)."""
    receipt = client.deploy(deployer, CONTRACT, min_stake, exit_delay)
    return VerifierCommittee(client, receipt["contractAddress"])
