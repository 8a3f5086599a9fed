"""Typed facade over `TrainingMarket.sol`: the proof-of-contribution marketplace (docs/contracts.md).

Inputs are checked before anything is sent (`MarketInputError`); reverts come back as `ContractRevert` subclasses
named after the contract's errors (`revert_class("NotRegistered")`, ...), through the `ChainClient`. Submissions are
read from `UpdateSubmitted` events, everything else from the contract's views.
"""

from __future__ import annotations

from typing import Any

from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.types import TxReceipt

from backend.chain.client import ChainClient
from backend.chain.training_market_types import (
    ZERO_ADDRESS,
    ChallengeState,
    MarketInputError,
    ProjectInfo,
    ProjectParams,
    ProjectStatus,
    RoundInfo,
    RoundResult,
    Submission,
    TrainerInfo,
    _address,
    _cid,
    _uint,
    compute_result_digest,
    sha256_bytes,
    sha256_hex,
)

__all__ = ["CONTRACT", "TrainingMarket", "deploy_training_market"]

CONTRACT = "TrainingMarket"


class TrainingMarket:
    """The deployed TrainingMarket (or the one at `address`), through a `ChainClient`."""

    def __init__(self, client: ChainClient, address: str | None = None):
        self.client = client
        self._address = address

    @property
    def address(self) -> str:
        return Web3.to_checksum_address(self._address or self.client.address_of(CONTRACT))

    def _call(self, fn: str, *args: Any) -> Any:
        return self.client.call(CONTRACT, fn, *args, address=self._address)

    def _transact(self, account: LocalAccount, fn: str, *args: Any, value: int = 0) -> TxReceipt:
        return self.client.transact(account, CONTRACT, fn, *args, value=value, address=self._address)

    def _event(self, receipt: TxReceipt, name: str) -> Any:
        contract = self.client.contract(CONTRACT, self._address)
        events = getattr(contract.events, name)().process_receipt(receipt)
        return events[0]["args"]

    # -- writes ------------------------------------------------------------------------------------------------

    def create_project(self, account: LocalAccount, params: ProjectParams, pool_wei: int) -> int:
        """Escrow `pool_wei` as the reward pool and create the project; returns its id (round 0 is open)."""
        struct = params.to_abi()
        receipt = self._transact(account, "createProject", struct, value=_uint(pool_wei, 96, "pool_wei", 1))
        return int(self._event(receipt, "ProjectCreated")["projectId"])

    def register(self, account: LocalAccount, project_id: int, stake_wei: int) -> TxReceipt:
        """Join the project with `stake_wei` (>= its minStake) as stake."""
        return self._transact(account, "register", project_id, value=_uint(stake_wei, 96, "stake_wei"))

    def submit_update(
        self, account: LocalAccount, project_id: int, round: int, cid: str, sha256_hex: str | bytes
    ) -> TxReceipt:
        """Record this trainer's update (its CID and the sha256 of its bytes) for the open round."""
        digest = sha256_bytes(sha256_hex, "sha256_hex")
        return self._transact(
            account, "submitUpdate", project_id, _uint(round, 16, "round"), _cid(cid, "cid"), digest
        )

    def finalize_round(
        self, account: LocalAccount, project_id: int, round: int, result: RoundResult
    ) -> TxReceipt:
        """Post the round's result (aggregator only); `result_digest(project_id, round)` then returns its digest."""
        return self._transact(account, "finalizeRound", project_id, _uint(round, 16, "round"), result.to_abi())

    def cancel(self, account: LocalAccount, project_id: int) -> TxReceipt:
        """Cancel a project whose aggregator missed the open round's deadline (anyone)."""
        return self._transact(account, "cancel", project_id)

    def challenge(
        self, account: LocalAccount, project_id: int, round: int, bond_wei: int | None = None
    ) -> TxReceipt:
        """Challenge a finalized round within its window; the bond defaults to the project's challengeBond."""
        bond = self.project(project_id).challenge_bond if bond_wei is None else _uint(bond_wei, 96, "bond_wei")
        return self._transact(account, "challenge", project_id, _uint(round, 16, "round"), value=bond)

    def resolve_challenge(self, account: LocalAccount, project_id: int, round: int, upheld: bool) -> TxReceipt:
        """The arbiter's ruling on an open challenge."""
        if not isinstance(upheld, bool):
            raise MarketInputError(f"upheld must be a bool, not {upheld!r}")
        return self._transact(account, "resolveChallenge", project_id, _uint(round, 16, "round"), upheld)

    def expire_challenge(self, account: LocalAccount, project_id: int, round: int) -> TxReceipt:
        """Close a challenge the arbiter left unresolved past the arbitration period (anyone)."""
        return self._transact(account, "expireChallenge", project_id, _uint(round, 16, "round"))

    def claim(self, account: LocalAccount, project_id: int) -> int:
        """Pull everything the project owes `account`; returns the wei paid."""
        receipt = self._transact(account, "claim", project_id)
        return int(self._event(receipt, "Claimed")["amount"])

    # -- reads -------------------------------------------------------------------------------------------------

    def project_count(self) -> int:
        return int(self._call("projectCount"))

    def project(self, project_id: int) -> ProjectInfo:
        p = self._call("getProject", project_id)
        return ProjectInfo(
            project_id=project_id,
            owner=p[0],
            round_opened_at=int(p[1]),
            rounds=int(p[2]),
            current_round=int(p[3]),
            aggregator=p[4],
            round_duration=int(p[5]),
            aggregation_window=int(p[6]),
            round_submissions=int(p[7]),
            status=ProjectStatus(p[8]),
            owner_claimed=bool(p[9]),
            arbiter=p[10],
            challenge_window=int(p[11]),
            max_trainers=int(p[12]),
            trainer_count=int(p[13]),
            slash_after_flags=int(p[14]),
            slash_bps=int(p[15]),
            pool=int(p[16]),
            min_stake=int(p[17]),
            last_finalized_at=int(p[18]),
            challenge_bond=int(p[19]),
            escrow=int(p[20]),
            total_submissions=int(p[21]),
            open_challenges=int(p[22]),
            allocated_pool=int(p[23]),
            owner_refund=int(p[24]),
            total_flags=int(p[25]),
            initial_model_sha256=sha256_hex(p[26]),
            config_sha256=sha256_hex(p[27]),
            initial_model_cid=p[28],
            config_cid=p[29],
        )

    def round(self, project_id: int, round: int) -> RoundInfo:
        r = self._call("getRound", project_id, _uint(round, 16, "round"))
        return RoundInfo(
            project_id=project_id,
            round=round,
            opened_at=int(r[0]),
            finalized_at=int(r[1]),
            allocated=int(r[2]),
            submitters=int(r[3]),
            flagged_count=int(r[4]),
            challenger=None if r[5] == ZERO_ADDRESS else r[5],
            challenged_at=int(r[6]),
            challenge=ChallengeState(r[7]),
            result_digest=bytes(r[8]),
            model_sha256=sha256_hex(r[9]),
            report_sha256=sha256_hex(r[10]),
            model_cid=r[11],
            report_cid=r[12],
        )

    def trainer(self, project_id: int, trainer: str) -> TrainerInfo:
        address = _address(trainer, "trainer")
        stake, reward, submissions, flags, registered, claimed = self._call("getTrainer", project_id, address)
        return TrainerInfo(
            project_id, address, bool(registered), int(stake), int(reward), int(submissions), int(flags),
            bool(claimed),
        )  # fmt: skip

    def has_submitted(self, project_id: int, round: int, trainer: str) -> bool:
        entry = self._call("getSubmission", project_id, _uint(round, 16, "round"), _address(trainer, "trainer"))
        return bool(entry[0])

    def submissions(self, project_id: int, round: int, from_block: int | None = None) -> list[Submission]:
        """The round's submissions in chain order, from `UpdateSubmitted` events (what the round runner reads)."""
        logs = self.client.events(
            CONTRACT,
            "UpdateSubmitted",
            from_block=from_block,
            filters={"projectId": project_id, "round": _uint(round, 16, "round")},
            address=self._address,
        )
        return [
            Submission(
                project_id=int(log["args"]["projectId"]),
                round=int(log["args"]["round"]),
                trainer=log["args"]["trainer"],
                cid=log["args"]["cid"],
                sha256=sha256_hex(log["args"]["sha256"]),
                block_number=int(log["blockNumber"]),
                tx_hash=bytes(log["transactionHash"]).hex(),
            )
            for log in logs
        ]

    def claimable(self, project_id: int, account: str) -> int:
        """Wei `claim` would pay `account` now (0 while claims are not open)."""
        return int(self._call("claimable", project_id, _address(account, "account")))

    def claims_open(self, project_id: int) -> bool:
        return bool(self._call("claimsOpen", project_id))

    def deadlines(self, project_id: int) -> tuple[int, int]:
        """The open round's (submission window end, aggregator deadline), both included."""
        window_end, deadline = self._call("roundDeadlines", project_id)
        return int(window_end), int(deadline)

    def is_round_final(self, project_id: int, round: int) -> bool:
        return bool(self._call("isRoundFinal", project_id, _uint(round, 16, "round")))

    def reversed_rounds(self, project_id: int) -> list[int]:
        return [int(r) for r in self._call("reversedRounds", project_id)]

    def result_digest(self, project_id: int, round: int, result: RoundResult | None = None) -> bytes:
        """The digest of `result` for this round of this market and chain, computed locally; without `result`,
        the digest stored when the round was finalized (32 zero bytes if it was not)."""
        if result is None:
            return bytes(self._call("roundResultDigest", project_id, _uint(round, 16, "round")))
        return compute_result_digest(self.client.chain_id, self.address, project_id, round, result)


def deploy_training_market(client: ChainClient, account: LocalAccount) -> TrainingMarket:
    """Deploy a fresh TrainingMarket (for tests and experiments; `trustmarket chain deploy` deploys the real one)."""
    receipt = client.deploy(account, CONTRACT)
    return TrainingMarket(client, receipt["contractAddress"])
