"""TrainingMarket's vocabulary in Python: its enums and the dataclasses its structs decode into.

Each dataclass is the contract's struct field for field in snake_case (`backend.chain.abi` maps them by name);
hashes are 64 lower-case hex digits, amounts wei, addresses checksummed. `backend.chain.training_market` re-exports
all of them beside the facade.
"""

from __future__ import annotations

from dataclasses import dataclass

from backend.chain.abi import ContractEnum

__all__ = [
    "ChallengeState",
    "Claim",
    "ProjectInfo",
    "ProjectParameter",
    "ProjectParams",
    "ProjectStatus",
    "Reveal",
    "RoundInfo",
    "RoundResult",
    "SubmissionEntry",
    "TrainerInfo",
    "ValidationShard",
]


class ProjectStatus(ContractEnum, solidity="ITrainingMarket.Status"):
    """ITrainingMarket.Status, member for member (the tests compare the names with the Solidity enum)."""

    NONE = 0
    ACTIVE = 1
    COMPLETED = 2
    CANCELLED = 3


class ChallengeState(ContractEnum, solidity="ITrainingMarket.ChallengeState"):
    """ITrainingMarket.ChallengeState: `LAPSED` when the arbiter did not rule within the arbitration period."""

    NONE = 0
    OPEN = 1
    REJECTED = 2
    UPHELD = 3
    LAPSED = 4


class ProjectParameter(ContractEnum, solidity="ITrainingMarket.Parameter"):
    """ITrainingMarket.Parameter: what `InvalidParameter(name)` names."""

    VALIDATION_ROOT = 0
    ROUNDS = 1
    ROUND_DURATION = 2
    REVEAL_WINDOW = 3
    AGGREGATION_WINDOW = 4
    MIN_STAKE = 5
    MAX_TRAINERS = 6
    AGGREGATOR = 7
    ARBITER = 8
    CHALLENGE_WINDOW = 9
    CHALLENGE_BOND = 10
    SLASH_BPS = 11
    COMMITTEE = 12


@dataclass(frozen=True)
class ProjectParams:
    """`createProject`'s parameters (ITrainingMarket.ProjectParams). `validation_root` is the Merkle root of the
    rounds' validation shards (`backend.marketplace.validation.seal_validation` makes it)."""

    initial_model_cid: str
    initial_model_sha256: str
    config_cid: str
    config_sha256: str
    validation_root: str
    rounds: int
    round_duration: int
    reveal_window: int
    aggregation_window: int
    min_stake: int
    max_trainers: int
    aggregator: str
    arbiter: str
    challenge_window: int
    challenge_bond: int
    slash_after_flags: int = 0
    slash_bps: int = 0


@dataclass(frozen=True)
class RoundResult:
    """What the aggregator posts (ITrainingMarket.RoundResult); `trainers` and `flagged` sorted by address."""

    model_cid: str
    model_sha256: str
    trainers: list[str]
    scores: list[int]
    flagged: list[str]
    report_cid: str
    report_sha256: str


@dataclass(frozen=True)
class ProjectInfo:
    """A project as stored (ITrainingMarket.Project)."""

    project_id: int
    owner: str
    aggregator: str
    arbiter: str
    status: ProjectStatus
    rounds: int
    current_round: int
    round_opened_at: int
    round_duration: int
    reveal_window: int
    aggregation_window: int
    round_commits: int
    round_reveals: int
    round_revealed_stake: int
    trainer_count: int
    max_trainers: int
    min_stake: int
    pool: int
    escrow: int
    challenge_window: int
    challenge_bond: int
    open_challenges: int
    slash_after_flags: int
    slash_bps: int
    owner_claimed: bool
    allocated_pool: int
    owner_refund: int
    last_finalized_at: int
    work_weight: int
    initial_model_cid: str
    initial_model_sha256: str
    config_cid: str
    config_sha256: str
    validation_root: str

    @property
    def commit_end(self) -> int:
        """The last second the open round takes commitments."""
        return self.round_opened_at + self.round_duration

    @property
    def reveal_end(self) -> int:
        """The last second the open round takes reveals."""
        return self.commit_end + self.reveal_window

    @property
    def aggregation_deadline(self) -> int:
        """The last second at which the open round can be finalized (then only `cancel` remains)."""
        return self.reveal_end + self.aggregation_window


@dataclass(frozen=True)
class RoundInfo:
    """A round as stored (ITrainingMarket.Round); an unfinalized round reads as zeros but `opened_at` and, once
    revealed, `validation_sha256`."""

    project_id: int
    round: int
    opened_at: int
    finalized_at: int
    allocated: int
    submitters: int
    flagged_count: int
    challenger: str
    challenged_at: int
    challenge: ChallengeState
    flagged_stake: int
    result_digest: str
    model_cid: str
    model_sha256: str
    report_cid: str
    report_sha256: str
    validation_sha256: str


@dataclass(frozen=True)
class TrainerInfo:
    """A trainer's standing in one project (ITrainingMarket.Trainer); `submissions` counts finalized rounds it
    revealed an update to."""

    stake: int
    reward: int
    submissions: int
    flags: int
    registered: bool
    claimed: bool


@dataclass(frozen=True)
class SubmissionEntry:
    """A trainer's entry in one round (ITrainingMarket.Submission): its commitment until it reveals (64 zeros
    after, or if it never committed), then `revealed`, and once finalized its flag and the wei credited."""

    commitment: str
    revealed: bool
    flagged: bool
    share: int

    @property
    def committed(self) -> bool:
        return self.revealed or int(self.commitment, 16) != 0


@dataclass(frozen=True)
class Reveal:
    """One revealed update of a round, from its `UpdateRevealed` event."""

    trainer: str
    cid: str
    sha256: str
    block: int


@dataclass(frozen=True)
class ValidationShard:
    """A round's revealed validation shard, from its `ValidationRevealed` event."""

    round: int
    cid: str
    sha256: str
    block: int


@dataclass(frozen=True)
class Claim:
    amount: int
    slashed: int
    transaction: str
