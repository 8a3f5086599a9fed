"""TrainingMarket's rules that off-chain code needs, computed exactly as the contract computes them, so a trainer,
the aggregator and every verifier can act without asking the chain (each is tested against the contract):

- `round_phase` and `finalize_blocker`: the open round's schedule (commit window, reveal window, aggregation
  window) and whether `finalizeRound`'s timing allows it now (MarketRounds._checkFinalizeTiming);
- `claims_open` and `round_is_final`: whether `claim` is open (MarketPayouts._claimsOpen) and whether a round's
  result can still change;
- `update_commitment`: the commitment `commitUpdate` stores and `revealUpdate` checks;
- `validation_leaf`: the leaf of a round's validation shard under the project's `validationRoot`;
- `result_digest`: the digest `finalizeRound` records and the verifier committee signs (`resultDigestOf`).
"""

from __future__ import annotations

from enum import Enum

from eth_abi import encode as abi_encode
from eth_utils import keccak
from web3 import Web3

from backend.chain.abi import hash_bytes
from backend.chain.market_types import ChallengeState, ProjectInfo, ProjectStatus, RoundInfo, RoundResult
from backend.chain.merkle import leaf_hash

__all__ = [
    "RoundPhase",
    "claims_open",
    "finalize_blocker",
    "result_digest",
    "round_is_final",
    "round_phase",
    "update_commitment",
    "validation_leaf",
]


class RoundPhase(Enum):
    """Where the open round stands at a given chain time."""

    COMMIT = "commit"  # commitments accepted (until commit_end, included)
    REVEAL = "reveal"  # reveals accepted (after commit_end, until reveal_end, included)
    AGGREGATION = "aggregation"  # only the aggregator acts (until the deadline, included)
    MISSED = "missed"  # past the deadline: only `cancel` remains
    ENDED = "ended"  # the project is completed or cancelled: no open round


def round_phase(info: ProjectInfo, now: int) -> RoundPhase:
    """The open round's phase at chain time `now`."""
    if info.status is not ProjectStatus.ACTIVE or info.current_round >= info.rounds:
        return RoundPhase.ENDED
    if now <= info.commit_end:
        return RoundPhase.COMMIT
    if now <= info.reveal_end:
        return RoundPhase.REVEAL
    if now <= info.aggregation_deadline:
        return RoundPhase.AGGREGATION
    return RoundPhase.MISSED


def finalize_blocker(info: ProjectInfo, now: int, *, validation_revealed: bool = True) -> str | None:
    """Why `finalizeRound` would refuse the open round at chain time `now`, or None if it would not: past the
    reveal window, or past the commit window once every committer revealed; the validation shard revealed; never
    past the deadline."""
    phase = round_phase(info, now)
    if phase is RoundPhase.ENDED:
        return f"the project is {info.status.name.lower()}"
    if phase is RoundPhase.MISSED:
        return f"the aggregation deadline ({info.aggregation_deadline}) has passed; the project can only be cancelled"
    if phase is RoundPhase.COMMIT:
        return f"round {info.current_round} takes commitments until {info.commit_end}"
    everyone_revealed = info.round_reveals == info.round_commits
    if phase is RoundPhase.REVEAL and not everyone_revealed:
        return (
            f"{info.round_reveals} of {info.round_commits} committed updates are revealed and the reveal window is "
            f"open until {info.reveal_end}"
        )
    if not validation_revealed:
        return f"round {info.current_round}'s validation shard has not been revealed"
    return None


def claims_open(info: ProjectInfo, now: int) -> bool:
    """Whether `claim` is open at chain time `now`: the project completed or cancelled, no challenge open, and the
    last finalized round's challenge window over (rounds finalize in order, so every window is)."""
    if info.status not in (ProjectStatus.COMPLETED, ProjectStatus.CANCELLED) or info.open_challenges:
        return False
    return info.last_finalized_at == 0 or now > info.last_finalized_at + info.challenge_window


def round_is_final(info: ProjectInfo, rd: RoundInfo, now: int) -> bool:
    """Whether a round's result can no longer change at chain time `now`: finalized, not under an open or upheld
    challenge, and past its challenge window (a committee's attestation does not end the window)."""
    if not rd.finalized_at or rd.challenge in (ChallengeState.OPEN, ChallengeState.UPHELD):
        return False
    return now > rd.finalized_at + info.challenge_window


def update_commitment(
    chain_id: int, market: str, project_id: int, round_: int, trainer: str, update_sha256: str, salt: bytes
) -> bytes:
    """keccak256(abi.encode(chainid, market, projectId, uint16 round, trainer, updateSha256, salt))."""
    if len(salt) != 32:
        raise ValueError(f"a salt is 32 bytes, got {len(salt)}")
    return keccak(
        abi_encode(
            ["uint256", "address", "uint256", "uint16", "address", "bytes32", "bytes32"],
            [
                chain_id,
                Web3.to_checksum_address(market),
                project_id,
                round_,
                Web3.to_checksum_address(trainer),
                hash_bytes(update_sha256),
                bytes(salt),
            ],
        )
    )


def validation_leaf(round_: int, shard_sha256: str) -> bytes:
    """The leaf of round `round_`'s validation shard: keccak256(bytes.concat(keccak256(abi.encode(uint16 round,
    bytes32 sha256))))."""
    return leaf_hash(["uint16", "bytes32"], [round_, hash_bytes(shard_sha256)])


# RoundResult as the contract encodes it inside resultDigestOf.
_ALLOCATION_TYPES = ["address[]", "uint64[]", "address[]"]
_DIGEST_TYPES = ["uint256", "address", "uint256", "uint16", "bytes32", "bytes32", "bytes32"]


def result_digest(chain_id: int, market: str, project_id: int, round_: int, result: RoundResult) -> str:
    """The digest `finalizeRound` records for `result` and the verifier committee signs (`resultDigestOf`):
    keccak256(abi.encode(chainid, market, projectId, round, modelSha256, keccak256(abi.encode(trainers, scores,
    flagged)), reportSha256)), as 64 hex digits."""
    trainers = [Web3.to_checksum_address(t) for t in result.trainers]
    flagged = [Web3.to_checksum_address(t) for t in result.flagged]
    allocation = keccak(abi_encode(_ALLOCATION_TYPES, [trainers, list(result.scores), flagged]))
    values = [
        chain_id,
        Web3.to_checksum_address(market),
        project_id,
        round_,
        hash_bytes(result.model_sha256),
        allocation,
        hash_bytes(result.report_sha256),
    ]
    return keccak(abi_encode(_DIGEST_TYPES, values)).hex()
