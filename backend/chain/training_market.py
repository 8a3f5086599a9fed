"""Typed facade over TrainingMarket.sol: snake_case dataclasses in, frozen dataclasses out.

Hashes cross this boundary as 64 lower-case hex digits (no 0x), amounts as wei ints, addresses checksummed.
Reverts surface as `ContractRevert` subclasses named after the contract's custom errors.

A market may have a verifier committee (fixed at deployment, `committee_address`): a round its quorum attests is
final at once (`is_round_attested`, `is_round_final`), cannot be challenged (`RoundAlreadyAttested`) and does
not hold claims back until its challenge window ends.

A trainer without gas signs its submission as EIP-712 typed data (`submission_typed_data`, `sign_submission`)
and a relayer sends it (`submit_update_for`); the chain records it as the trainer's.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.types import TxReceipt

from backend.chain.client import ChainClient
from backend.chain.errors import ChainError
from backend.chain.facade import ContractFacade, typed_data

__all__ = [
    "STATUSES",
    "SUBMIT_UPDATE_TYPES",
    "Claim",
    "MarketInputError",
    "ProjectInfo",
    "ProjectParams",
    "RoundInfo",
    "RoundResult",
    "Submission",
    "SubmissionEntry",
    "TrainerInfo",
    "TrainingMarket",
]

NAME = "TrainingMarket"
_NO_CONTRACT = "0x0000000000000000000000000000000000000000"
STATUSES = ("None", "Active", "Completed", "Cancelled")
CHALLENGE_STATES = ("None", "Open", "Rejected", "Upheld", "Lapsed")
EIP712_NAME = "trustmarket TrainingMarket"
EIP712_VERSION = "1"

# Must match SUBMIT_UPDATE_TYPEHASH in the contract.
SUBMIT_UPDATE_TYPES: dict[str, list[dict[str, str]]] = {
    "SubmitUpdate": [
        {"name": "trainer", "type": "address"},
        {"name": "projectId", "type": "uint256"},
        {"name": "round", "type": "uint16"},
        {"name": "cid", "type": "string"},
        {"name": "sha256", "type": "bytes32"},
        {"name": "nonce", "type": "uint256"},
        {"name": "deadline", "type": "uint256"},
    ]
}


class MarketInputError(ChainError, ValueError):
    """A value that cannot go to the contract as given (e.g. a hash that is not 64 hex digits)."""


def _b32(hex_digest: str) -> bytes:
    digits = hex_digest.lower().removeprefix("0x") if isinstance(hex_digest, str) else None
    if digits is None or len(digits) != 64 or any(c not in "0123456789abcdef" for c in digits):
        raise MarketInputError(f"expected a 32-byte hash as 64 hex digits, got {hex_digest!r}")
    return bytes.fromhex(digits)


def _hex(value: bytes) -> str:
    return bytes(value).hex()


@dataclass(frozen=True)
class ProjectParams:
    """`createProject`'s parameters (see ITrainingMarket.ProjectParams)."""

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

    def to_abi(self) -> tuple:
        return (
            self.initial_model_cid,
            _b32(self.initial_model_sha256),
            self.config_cid,
            _b32(self.config_sha256),
            self.rounds,
            self.round_duration,
            self.aggregation_window,
            self.min_stake,
            self.max_trainers,
            Web3.to_checksum_address(self.aggregator),
            Web3.to_checksum_address(self.arbiter),
            self.challenge_window,
            self.challenge_bond,
            self.slash_after_flags,
            self.slash_bps,
        )


@dataclass(frozen=True)
class RoundResult:
    """What the aggregator posts; `trainers` and `flagged` sorted by ascending address."""

    model_cid: str
    model_sha256: str
    trainers: list[str]
    scores: list[int]
    flagged: list[str]
    report_cid: str
    report_sha256: str

    def to_abi(self) -> tuple:
        return (
            self.model_cid,
            _b32(self.model_sha256),
            [Web3.to_checksum_address(t) for t in self.trainers],
            list(self.scores),
            [Web3.to_checksum_address(t) for t in self.flagged],
            self.report_cid,
            _b32(self.report_sha256),
        )


@dataclass(frozen=True)
class ProjectInfo:
    project_id: int
    owner: str
    aggregator: str
    arbiter: str
    status: str
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


@dataclass(frozen=True)
class RoundInfo:
    project_id: int
    round: int
    opened_at: int
    finalized_at: int
    allocated: int
    submitters: int
    flagged_count: int
    challenge: str
    result_digest: str
    model_cid: str
    model_sha256: str
    report_cid: str
    report_sha256: str


@dataclass(frozen=True)
class TrainerInfo:
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


def _named(client: ChainClient, fn: str, value: tuple) -> dict[str, Any]:
    """A struct returned by `fn`, keyed by its ABI component names."""
    abi = next(i for i in client.artifacts.abi(NAME) if i.get("type") == "function" and i["name"] == fn)
    components = abi["outputs"][0]["components"]
    return {c["name"]: v for c, v in zip(components, value, strict=True)}


class TrainingMarket(ContractFacade):
    """The deployed TrainingMarket (or the one at `address`), checked to have code when built."""

    contract_name = NAME

    def __init__(self, client: ChainClient, address: str | None = None):
        super().__init__(client, client.contract(NAME, address).address)

    # -- transactions -----------------------------------------------------------------------------------------

    def create_project(self, account: LocalAccount, params: ProjectParams, value: int) -> int:
        """Escrow `value` wei as the pool; returns the new project id."""
        receipt = self._transact(account, "createProject", params.to_abi(), value=value)
        return int(self._event(receipt, "ProjectCreated")["projectId"])

    def register(self, account: LocalAccount, project_id: int, stake_wei: int) -> TxReceipt:
        return self._transact(account, "register", project_id, value=stake_wei)

    def submit_update(
        self, account: LocalAccount, project_id: int, round_: int, cid: str, sha256: str
    ) -> TxReceipt:
        return self._transact(account, "submitUpdate", project_id, round_, cid, _b32(sha256))

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
            _b32(sha256),
            deadline,
            bytes(signature),
        )

    def submission_typed_data(
        self, trainer: str, project_id: int, round_: int, cid: str, sha256: str, deadline: int
    ) -> dict[str, Any]:
        """The EIP-712 payload `trainer` signs to have a relayer submit its update (eth_signTypedData_v4
        layout), with the trainer's current nonce."""
        return typed_data(
            self.client,
            self.address,
            (EIP712_NAME, EIP712_VERSION),
            SUBMIT_UPDATE_TYPES,
            "SubmitUpdate",
            {
                "trainer": Web3.to_checksum_address(trainer),
                "projectId": int(project_id),
                "round": int(round_),
                "cid": cid,
                "sha256": "0x" + _b32(sha256).hex(),
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
        return self._transact(account, "finalizeRound", project_id, round_, result.to_abi())

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
        p = _named(self.client, "getProject", self._call("getProject", project_id))
        return ProjectInfo(
            project_id=project_id,
            owner=p["owner"],
            aggregator=p["aggregator"],
            arbiter=p["arbiter"],
            status=STATUSES[p["status"]],
            rounds=p["rounds"],
            current_round=p["currentRound"],
            round_opened_at=p["roundOpenedAt"],
            round_duration=p["roundDuration"],
            aggregation_window=p["aggregationWindow"],
            round_submissions=p["roundSubmissions"],
            trainer_count=p["trainerCount"],
            max_trainers=p["maxTrainers"],
            min_stake=p["minStake"],
            pool=p["pool"],
            escrow=p["escrow"],
            challenge_window=p["challengeWindow"],
            challenge_bond=p["challengeBond"],
            open_challenges=p["openChallenges"],
            initial_model_cid=p["initialModelCid"],
            initial_model_sha256=_hex(p["initialModelSha256"]),
            config_cid=p["configCid"],
            config_sha256=_hex(p["configSha256"]),
            slash_after_flags=p["slashAfterFlags"],
            slash_bps=p["slashBps"],
            owner_claimed=p["ownerClaimed"],
            allocated_pool=p["allocatedPool"],
            owner_refund=p["ownerRefund"],
            last_finalized_at=p["lastFinalizedAt"],
            total_submissions=p["totalSubmissions"],
            total_flags=p["totalFlags"],
        )

    def round(self, project_id: int, round_: int) -> RoundInfo:
        r = _named(self.client, "getRound", self._call("getRound", project_id, round_))
        return RoundInfo(
            project_id=project_id,
            round=round_,
            opened_at=r["openedAt"],
            finalized_at=r["finalizedAt"],
            allocated=r["allocated"],
            submitters=r["submitters"],
            flagged_count=r["flaggedCount"],
            challenge=CHALLENGE_STATES[r["challenge"]],
            result_digest=_hex(r["resultDigest"]),
            model_cid=r["modelCid"],
            model_sha256=_hex(r["modelSha256"]),
            report_cid=r["reportCid"],
            report_sha256=_hex(r["reportSha256"]),
        )

    def trainer(self, project_id: int, address: str) -> TrainerInfo:
        t = _named(
            self.client, "getTrainer", self._call("getTrainer", project_id, Web3.to_checksum_address(address))
        )
        return TrainerInfo(**{f.name: t[f.name] for f in fields(TrainerInfo)})

    def submissions(self, project_id: int, round_: int) -> list[Submission]:
        """The round's submissions from `UpdateSubmitted` events, in chain order."""
        logs = self.client.events(
            NAME, "UpdateSubmitted", filters={"projectId": project_id, "round": round_}, address=self.address
        )
        return [
            Submission(
                log["args"]["trainer"], log["args"]["cid"], _hex(log["args"]["sha256"]), log["blockNumber"]
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
        submitted, flagged, share = self._call(
            "getSubmission", project_id, round_, Web3.to_checksum_address(trainer)
        )
        return SubmissionEntry(bool(submitted), bool(flagged), int(share))

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
        return _hex(self._call("roundResultDigest", project_id, round_))

    def result_digest_of(self, project_id: int, round_: int, result: RoundResult) -> str:
        """The digest the contract would record for `result` (what verifiers compare and sign)."""
        return _hex(self._call("resultDigestOf", project_id, round_, result.to_abi()))

    def submission_nonce(self, trainer: str) -> int:
        """The nonce `trainer`'s next signed submission must carry (consumed by each relayed one)."""
        return int(self._call("nonces", Web3.to_checksum_address(trainer)))

    def project_count(self) -> int:
        return int(self._call("projectCount"))
