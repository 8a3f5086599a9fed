"""Typed facade over TrainingMarket.sol: snake_case dataclasses in, frozen dataclasses out.

Hashes cross this boundary as 64 lower-case hex digits (no 0x), amounts as wei ints, addresses checksummed,
statuses as `IntEnum`s that mirror the contract's enums; structs decode into the dataclasses below by field
name (`backend.chain.abi`). Reverts surface as this contract's own `ContractRevert` classes
(`TrainingMarket.errors.NotRegistered`). The timing rule of finalization (`finalize_blocker`) and the result
digest (`result_digest`) are computed here exactly as the contract computes them, and tested against it.

A market may have a verifier committee (fixed at deployment, `committee_address`): a round its quorum attests is
final at once (`is_round_attested`, `is_round_final`), cannot be challenged (`RoundAlreadyAttested`) and does
not hold claims back until its challenge window ends.

A trainer without gas signs its submission as EIP-712 typed data (`submission_typed_data`, `sign_submission`)
and a relayer sends it (`submit_update_for`); the chain records it as the trainer's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eth_abi import encode as abi_encode
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import keccak
from web3 import Web3
from web3.types import TxReceipt

from backend.chain.abi import AbiInputError, ContractEnum, hash_bytes
from backend.chain.client import ChainClient
from backend.chain.facade import ContractFacade

__all__ = [
    "EIP712_DOMAIN",
    "SUBMIT_UPDATE_TYPE",
    "ChallengeState",
    "Claim",
    "MarketInputError",
    "ProjectInfo",
    "ProjectParams",
    "ProjectStatus",
    "RoundInfo",
    "RoundResult",
    "Submission",
    "SubmissionEntry",
    "TrainerInfo",
    "TrainingMarket",
    "finalize_blocker",
    "result_digest",
]

NAME = "TrainingMarket"
# The contract's EIP712(name, version).
EIP712_DOMAIN = ("trustmarket TrainingMarket", "1")
# The string SUBMIT_UPDATE_TYPEHASH hashes (checked against the contract in the tests).
SUBMIT_UPDATE_TYPE = (
    "SubmitUpdate(address trainer,uint256 projectId,uint16 round,string cid,bytes32 sha256,uint256 nonce,"
    "uint256 deadline)"
)

# A value that cannot go to the contract as given (e.g. a hash that is not 64 hex digits).
MarketInputError = AbiInputError


class ProjectStatus(ContractEnum):
    """ITrainingMarket.Status, member for member (the tests compare the names with the Solidity enum)."""

    NONE = 0
    ACTIVE = 1
    COMPLETED = 2
    CANCELLED = 3


class ChallengeState(ContractEnum):
    """ITrainingMarket.ChallengeState: `LAPSED` when the arbiter did not rule within the arbitration period."""

    NONE = 0
    OPEN = 1
    REJECTED = 2
    UPHELD = 3
    LAPSED = 4


@dataclass(frozen=True)
class ProjectParams:
    """`createProject`'s parameters (ITrainingMarket.ProjectParams, field for field in snake_case)."""

    initial_model_cid: str
    initial_model_sha256: str
    config_cid: str
    config_sha256: str
    rounds: int
    round_duration: int
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
    """A project as stored (ITrainingMarket.Project); hashes as hex."""

    project_id: int
    owner: str
    aggregator: str
    arbiter: str
    status: ProjectStatus
    rounds: int
    current_round: int
    round_opened_at: int
    round_duration: int
    aggregation_window: int
    round_submissions: int
    trainer_count: int
    max_trainers: int
    min_stake: int
    pool: int
    escrow: int
    challenge_window: int
    challenge_bond: int
    open_challenges: int
    initial_model_cid: str
    initial_model_sha256: str
    config_cid: str
    config_sha256: str
    # Accounting and the slashing rule (see ITrainingMarket.Project).
    slash_after_flags: int = 0
    slash_bps: int = 0
    owner_claimed: bool = False
    allocated_pool: int = 0
    owner_refund: int = 0
    last_finalized_at: int = 0
    total_submissions: int = 0
    total_flags: int = 0

    @property
    def window_end(self) -> int:
        """When the open round's submission window closes."""
        return self.round_opened_at + self.round_duration

    @property
    def aggregation_deadline(self) -> int:
        """The last second at which the open round can be finalized (then only `cancel` remains)."""
        return self.window_end + self.aggregation_window


@dataclass(frozen=True)
class RoundInfo:
    """A round as stored (ITrainingMarket.Round); an unfinalized round reads as zeros but `opened_at`."""

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
    result_digest: str
    model_cid: str
    model_sha256: str
    report_cid: str
    report_sha256: str


@dataclass(frozen=True)
class TrainerInfo:
    """A trainer's standing in one project (ITrainingMarket.Trainer)."""

    stake: int
    reward: int
    submissions: int
    flags: int
    registered: bool
    claimed: bool


@dataclass(frozen=True)
class Submission:
    trainer: str
    cid: str
    sha256: str
    block: int


@dataclass(frozen=True)
class SubmissionEntry:
    """A trainer's entry in one round: submitted, flagged at finalization, and the wei credited for it."""

    submitted: bool
    flagged: bool
    share: int


@dataclass(frozen=True)
class Claim:
    amount: int
    slashed: int
    transaction: str


def finalize_blocker(info: ProjectInfo, now: int) -> str | None:
    """Why `finalizeRound` would refuse the open round at chain time `now`, or None if its timing allows it: the
    contract's rule (MarketRounds._checkFinalizeTiming), the one Python copy, tested against the contract."""
    if info.status is not ProjectStatus.ACTIVE or info.current_round >= info.rounds:
        return f"the project is {info.status.name.lower()}"
    if now > info.aggregation_deadline:
        return f"the aggregation deadline ({info.aggregation_deadline}) has passed; the project can only be cancelled"
    everyone_submitted = info.round_submissions != 0 and info.round_submissions == info.trainer_count
    if now <= info.window_end and not everyone_submitted:
        return (
            f"{info.round_submissions} of {info.trainer_count} trainers submitted and the window is open until "
            f"{info.window_end}"
        )
    return None


# RoundResult as the contract encodes it inside resultDigestOf.
_ALLOCATION_TYPES = ["address[]", "uint64[]", "address[]"]
_DIGEST_TYPES = ["uint256", "address", "uint256", "uint16", "bytes32", "bytes32", "bytes32"]


def result_digest(chain_id: int, market: str, project_id: int, round_: int, result: RoundResult) -> str:
    """The digest `finalizeRound` records for `result` and the verifier committee signs (`resultDigestOf`):
    keccak256(abi.encode(chainid, market, projectId, round, modelSha256, keccak256(abi.encode(trainers, scores,
    flagged)), reportSha256)), as 64 hex digits. Computed here, so a verifier needs no chain call for it."""
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


class TrainingMarket(ContractFacade):
    """The deployed TrainingMarket (or the one at `address`), checked to have code when built."""

    contract_name = NAME

    def __init__(self, client: ChainClient, address: str | None = None):
        super().__init__(client, client.contract(NAME, address).address)

    # -- transactions -----------------------------------------------------------------------------------------

    def create_project(self, account: LocalAccount, params: ProjectParams, value: int) -> int:
        """Escrow `value` wei as the pool; returns the new project id."""
        receipt = self._transact(
            account, "createProject", self._struct_arg("createProject", params), value=value
        )
        return int(self._event(receipt, "ProjectCreated")["projectId"])

    def register(self, account: LocalAccount, project_id: int, stake_wei: int) -> TxReceipt:
        return self._transact(account, "register", project_id, value=stake_wei)

    def submit_update(
        self, account: LocalAccount, project_id: int, round_: int, cid: str, sha256: str
    ) -> TxReceipt:
        return self._transact(account, "submitUpdate", project_id, round_, cid, hash_bytes(sha256))

    def submit_update_for(
        self,
        relayer: LocalAccount,
        trainer: str,
        project_id: int,
        round_: int,
        cid: str,
        sha256: str,
        deadline: int,
        signature: bytes,
    ) -> TxReceipt:
        """Relay `trainer`'s signed submission; `relayer` pays the gas, the chain records the trainer."""
        return self._transact(
            relayer,
            "submitUpdateFor",
            Web3.to_checksum_address(trainer),
            project_id,
            round_,
            cid,
            hash_bytes(sha256),
            deadline,
            bytes(signature),
        )

    def submission_typed_data(
        self, trainer: str, project_id: int, round_: int, cid: str, sha256: str, deadline: int
    ) -> dict[str, Any]:
        """The EIP-712 payload `trainer` signs to have a relayer submit its update (eth_signTypedData_v4
        layout), with the trainer's current nonce."""
        return self._typed_data(
            EIP712_DOMAIN,
            SUBMIT_UPDATE_TYPE,
            {
                "trainer": Web3.to_checksum_address(trainer),
                "projectId": int(project_id),
                "round": int(round_),
                "cid": cid,
                "sha256": "0x" + hash_bytes(sha256).hex(),
                "nonce": self.submission_nonce(trainer),
                "deadline": int(deadline),
            },
        )

    def sign_submission(
        self, account: LocalAccount, project_id: int, round_: int, cid: str, sha256: str, deadline: int
    ) -> bytes:
        """Sign a submission with a local key (tests, CLI users holding a keystore)."""
        payload = self.submission_typed_data(account.address, project_id, round_, cid, sha256, deadline)
        return bytes(Account.sign_typed_data(account.key, full_message=payload).signature)

    def finalize_round(
        self, account: LocalAccount, project_id: int, round_: int, result: RoundResult
    ) -> TxReceipt:
        return self._transact(
            account, "finalizeRound", project_id, round_, self._struct_arg("finalizeRound", result, index=2)
        )

    def claim(self, account: LocalAccount, project_id: int) -> Claim:
        receipt = self._transact(account, "claim", project_id)
        args = self._event(receipt, "Claimed")
        return Claim(int(args["amount"]), int(args["slashed"]), receipt["transactionHash"].to_0x_hex())

    def cancel(self, account: LocalAccount, project_id: int) -> TxReceipt:
        return self._transact(account, "cancel", project_id)

    def challenge(self, account: LocalAccount, project_id: int, round_: int, bond_wei: int) -> TxReceipt:
        return self._transact(account, "challenge", project_id, round_, value=bond_wei)

    def resolve_challenge(
        self, account: LocalAccount, project_id: int, round_: int, upheld: bool
    ) -> TxReceipt:
        return self._transact(account, "resolveChallenge", project_id, round_, upheld)

    def expire_challenge(self, account: LocalAccount, project_id: int, round_: int) -> TxReceipt:
        """Close a challenge the arbiter left unresolved for ARBITRATION_PERIOD (anyone may)."""
        return self._transact(account, "expireChallenge", project_id, round_)

    # -- reads ------------------------------------------------------------------------------------------------

    def project(self, project_id: int) -> ProjectInfo:
        return self._struct(
            ProjectInfo, "getProject", self._call("getProject", project_id), project_id=project_id
        )

    def round(self, project_id: int, round_: int) -> RoundInfo:
        value = self._call("getRound", project_id, round_)
        return self._struct(RoundInfo, "getRound", value, project_id=project_id, round=round_)

    def trainer(self, project_id: int, address: str) -> TrainerInfo:
        value = self._call("getTrainer", project_id, Web3.to_checksum_address(address))
        return self._struct(TrainerInfo, "getTrainer", value)

    def submissions(self, project_id: int, round_: int) -> list[Submission]:
        """The round's submissions from `UpdateSubmitted` events, in chain order."""
        logs = self.client.events(
            NAME, "UpdateSubmitted", filters={"projectId": project_id, "round": round_}, address=self.address
        )
        return [
            Submission(
                log["args"]["trainer"],
                log["args"]["cid"],
                bytes(log["args"]["sha256"]).hex(),
                log["blockNumber"],
            )
            for log in logs
        ]

    def claimable(self, project_id: int, account: str) -> int:
        return int(self._call("claimable", project_id, Web3.to_checksum_address(account)))

    def claims_open(self, project_id: int) -> bool:
        return bool(self._call("claimsOpen", project_id))

    def deadlines(self, project_id: int) -> tuple[int, int]:
        """(end of the open round's submission window, the aggregator's deadline)."""
        window_end, aggregator_deadline = self._call("roundDeadlines", project_id)
        return int(window_end), int(aggregator_deadline)

    def submission_entry(self, project_id: int, round_: int, trainer: str) -> SubmissionEntry:
        """`trainer`'s entry in the round: the share credited at finalization (0 while the round is open)."""
        value = self._call("getSubmission", project_id, round_, Web3.to_checksum_address(trainer))
        return self._struct(SubmissionEntry, "getSubmission", value)

    def has_submitted(self, project_id: int, round_: int, trainer: str) -> bool:
        entry = self._call("getSubmission", project_id, round_, Web3.to_checksum_address(trainer))
        return bool(entry[0])

    def is_round_final(self, project_id: int, round_: int) -> bool:
        """Finalized, not under an open or upheld challenge, and attested or past its challenge window."""
        return bool(self._call("isRoundFinal", project_id, round_))

    def is_round_attested(self, project_id: int, round_: int) -> bool:
        """Whether the market's committee attests the round's current result (False without a committee)."""
        return bool(self._call("isRoundAttested", project_id, round_))

    def committee_address(self) -> str | None:
        """The verifier committee this market trusts, or None for a market without one."""
        address = self._call("committee")
        return None if int(address, 16) == 0 else Web3.to_checksum_address(address)

    def reversed_rounds(self, project_id: int) -> list[int]:
        """Rounds whose allocations an upheld challenge reversed."""
        return [int(r) for r in self._call("reversedRounds", project_id)]

    def result_digest(self, project_id: int, round_: int) -> str:
        """The digest stored when the round was finalized (64 zeros if it was not)."""
        return bytes(self._call("roundResultDigest", project_id, round_)).hex()

    def result_digest_of(self, project_id: int, round_: int, result: RoundResult) -> str:
        """The digest this market records for `result` (what verifiers compare and sign), computed in Python
        exactly as the contract's `resultDigestOf` (`result_digest`), without a chain call."""
        return result_digest(self.client.chain_id, self.address, project_id, round_, result)

    def submission_nonce(self, trainer: str) -> int:
        """The nonce `trainer`'s next signed submission must carry (consumed by each relayed one)."""
        return int(self._call("nonces", Web3.to_checksum_address(trainer)))

    def project_count(self) -> int:
        return int(self._call("projectCount"))
