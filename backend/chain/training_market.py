"""Typed facade over TrainingMarket.sol: snake_case dataclasses in, frozen dataclasses out.

Hashes cross this boundary as 64 lower-case hex digits (no 0x), amounts as wei ints, addresses checksummed,
statuses as `IntEnum`s that mirror the contract's enums; structs decode into the dataclasses of
`backend.chain.market_types` by field name (`backend.chain.abi`). Reverts surface as this contract's own
`ContractRevert` classes (`TrainingMarket.errors.NotRegistered`). The rules off-chain code needs (the round's
timing, the update commitment, the validation leaf, the result digest) are in `backend.chain.market_rules`,
computed exactly as the contract computes them and tested against it.

A round is sealed: a trainer commits (`commit_update`) to its update while the round takes commitments, reveals
it (`reveal_update`) once commits close, and the round's validation shard is revealed (`reveal_validation`)
before the aggregator finalizes. A trainer without gas signs the call (`commit_call`, `reveal_call` give its
calldata) as an ERC-2771 request that a relayer forwards (`backend.chain.forwarder`); the market records it as the
trainer's.

The verifier committee a market may have (`committee_address`) attests rounds (`is_round_attested`); an attested
round stays challengeable until its window ends, and its attesters are slashed if a challenge overturns it.
"""

from __future__ import annotations

from typing import Any

from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.types import TxReceipt

from backend.chain.abi import AbiInputError, hash_bytes
from backend.chain.client import ChainClient
from backend.chain.facade import ContractFacade
from backend.chain.market_rules import (
    RoundPhase,
    claims_open,
    finalize_blocker,
    result_digest,
    round_is_final,
    round_phase,
    update_commitment,
)
from backend.chain.market_types import (
    ChallengeState,
    Claim,
    ProjectInfo,
    ProjectParameter,
    ProjectParams,
    ProjectStatus,
    Reveal,
    RoundInfo,
    RoundResult,
    SubmissionEntry,
    TrainerInfo,
    ValidationShard,
)

__all__ = [
    "ChallengeState",
    "Claim",
    "MarketInputError",
    "ProjectInfo",
    "ProjectParameter",
    "ProjectParams",
    "ProjectStatus",
    "Reveal",
    "RoundInfo",
    "RoundPhase",
    "RoundResult",
    "SubmissionEntry",
    "TrainerInfo",
    "TrainingMarket",
    "ValidationShard",
    "claims_open",
    "finalize_blocker",
    "result_digest",
    "round_is_final",
    "round_phase",
    "update_commitment",
]

NAME = "TrainingMarket"

# A value that cannot go to the contract as given (e.g. a hash that is not 64 hex digits).
MarketInputError = AbiInputError


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

    def commit_update(
        self, account: LocalAccount, project_id: int, round_: int, commitment: bytes
    ) -> TxReceipt:
        """Commit to an update (`update_commitment` makes the commitment) while the round takes commitments."""
        return self._transact(account, "commitUpdate", project_id, round_, bytes(commitment))

    def reveal_update(
        self, account: LocalAccount, project_id: int, round_: int, cid: str, sha256: str, salt: bytes
    ) -> TxReceipt:
        """Reveal the update committed to, once commits have closed and while the round takes reveals."""
        return self._transact(
            account, "revealUpdate", project_id, round_, cid, hash_bytes(sha256), bytes(salt)
        )

    def reveal_validation(
        self, account: LocalAccount, project_id: int, round_: int, cid: str, sha256: str, proof: list[bytes]
    ) -> TxReceipt:
        """Reveal the open round's validation shard with its Merkle proof (anyone holding the shard may)."""
        return self._transact(
            account,
            "revealValidation",
            project_id,
            round_,
            cid,
            hash_bytes(sha256),
            [bytes(p) for p in proof],
        )

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

    # -- relayed calls ----------------------------------------------------------------------------------------

    def call_data(self, fn: str, *args: Any) -> bytes:
        """The calldata of `fn(*args)` on this market (what a forwarded request carries)."""
        return bytes.fromhex(self.client.contract(NAME, self.address).encode_abi(fn, args=list(args))[2:])

    def commit_call(self, project_id: int, round_: int, commitment: bytes) -> bytes:
        return self.call_data("commitUpdate", project_id, round_, bytes(commitment))

    def reveal_call(self, project_id: int, round_: int, cid: str, sha256: str, salt: bytes) -> bytes:
        return self.call_data("revealUpdate", project_id, round_, cid, hash_bytes(sha256), bytes(salt))

    # -- reads ------------------------------------------------------------------------------------------------

    def project(self, project_id: int) -> ProjectInfo:
        return self._struct(
            ProjectInfo, "getProject", self._call("getProject", project_id), project_id=project_id
        )

    def round(self, project_id: int, round_: int) -> RoundInfo:
        return self._round(project_id, round_)

    def _round(self, project_id: int, round_: int) -> RoundInfo:
        value = self._call("getRound", project_id, round_)
        return self._struct(RoundInfo, "getRound", value, project_id=project_id, round=round_)

    def trainer(self, project_id: int, address: str) -> TrainerInfo:
        value = self._call("getTrainer", project_id, Web3.to_checksum_address(address))
        return self._struct(TrainerInfo, "getTrainer", value)

    def submission_entry(self, project_id: int, round_: int, trainer: str) -> SubmissionEntry:
        """`trainer`'s entry in the round: its commitment, whether it revealed, its flag and share once final."""
        value = self._call("getSubmission", project_id, round_, Web3.to_checksum_address(trainer))
        return self._struct(SubmissionEntry, "getSubmission", value)

    def submissions(self, project_id: int, round_: int) -> list[Reveal]:
        """The round's revealed updates from `UpdateRevealed` events, in chain order (what the runner aggregates)."""
        logs = self.client.events(
            NAME, "UpdateRevealed", filters={"projectId": project_id, "round": round_}, address=self.address
        )
        return [
            Reveal(
                log["args"]["trainer"],
                log["args"]["cid"],
                bytes(log["args"]["sha256"]).hex(),
                log["blockNumber"],
            )
            for log in logs
        ]

    def commitments(self, project_id: int, round_: int) -> dict[str, str]:
        """Who committed to the round, and to what (from `UpdateCommitted` events)."""
        logs = self.client.events(
            NAME, "UpdateCommitted", filters={"projectId": project_id, "round": round_}, address=self.address
        )
        return {log["args"]["trainer"]: bytes(log["args"]["commitment"]).hex() for log in logs}

    def validation_shard(self, project_id: int, round_: int) -> ValidationShard | None:
        """The round's revealed validation shard (None until it is revealed)."""
        logs = self.client.events(
            NAME,
            "ValidationRevealed",
            filters={"projectId": project_id, "round": round_},
            address=self.address,
        )
        if not logs:
            return None
        args = logs[-1]["args"]
        return ValidationShard(round_, args["cid"], bytes(args["sha256"]).hex(), logs[-1]["blockNumber"])

    def claimable(self, project_id: int, account: str) -> int:
        return int(self._call("claimable", project_id, Web3.to_checksum_address(account)))

    def claims_open(self, project_id: int) -> bool:
        """Whether `claim` is open now (`market_rules.claims_open`, the contract's rule)."""
        return claims_open(self.project(project_id), self.client.timestamp())

    def schedule(self, project_id: int) -> tuple[int, int, int]:
        """The open round's (last second of commits, last second of reveals, the aggregator's deadline)."""
        info = self.project(project_id)
        return info.commit_end, info.reveal_end, info.aggregation_deadline

    def is_round_final(self, project_id: int, round_: int) -> bool:
        """Finalized, not under an open or upheld challenge, and past its challenge window."""
        # One read of each struct, as the contract's isRoundFinal view was (callers that count round() reads,
        # like the explorer's block memo, see the question, not a change of storage).
        info = self.project(project_id)
        return round_is_final(info, self._round(project_id, round_), self.client.timestamp())

    def is_round_attested(self, project_id: int, round_: int) -> bool:
        """Whether the market's committee attests the round's current result (False without a committee)."""
        committee = self.committee_address()
        if committee is None:
            return False
        return bool(
            self.client.call(
                "IRoundAttestor", "isAttested", self.address, project_id, round_, address=committee
            )
        )

    def forwarder_address(self) -> str | None:
        """The ERC-2771 forwarder this market trusts, or None for a market without relayed calls."""
        address = self._call("trustedForwarder")
        return None if int(address, 16) == 0 else Web3.to_checksum_address(address)

    def committee_address(self) -> str | None:
        """The verifier committee this market trusts, or None for a market without one."""
        address = self._call("committee")
        return None if int(address, 16) == 0 else Web3.to_checksum_address(address)

    def reversed_rounds(self, project_id: int) -> list[int]:
        """Rounds whose allocations an upheld challenge reversed, in the order they were (`RoundReversed` events)."""
        logs = self.client.events(
            NAME, "RoundReversed", filters={"projectId": project_id}, address=self.address
        )
        return [int(log["args"]["round"]) for log in logs]

    def result_digest(self, project_id: int, round_: int) -> str:
        """The digest stored when the round was finalized (64 zeros if it was not)."""
        return bytes(self._call("roundResultDigest", project_id, round_)).hex()

    def result_digest_of(self, project_id: int, round_: int, result: RoundResult) -> str:
        """The digest this market records for `result` (what verifiers compare and sign), computed in Python
        exactly as the contract's `resultDigestOf`, without a chain call."""
        return result_digest(self.client.chain_id, self.address, project_id, round_, result)

    def commitment_of(self, project_id: int, round_: int, trainer: str, sha256: str, salt: bytes) -> bytes:
        """The commitment `trainer` makes to an update (`market_rules.update_commitment`, as the contract)."""
        return update_commitment(
            self.client.chain_id, self.address, project_id, round_, trainer, sha256, salt
        )

    def project_count(self) -> int:
        return int(self._call("projectCount"))
