"""Typed facade over `SourceRegistry.sol`: bonded data sources for dRAG and their Beta reliability on chain.

Reliability is a Beta posterior kept as fixed-point counts (`SCALE` units per observation), starting from a
pessimistic prior and capped at `maxEvidence` (older evidence is forgotten in proportion). Evaluators apply
feedback in numbered batches of packed 8-byte entries (`encode_feedback`); within one epoch (`epochLength`
seconds) a source moves at most `maxDelta` each way, all batches together. Canary questions are committed for a
future epoch (`canary_commitment`) and revealed after it; a source shown to tamper with a revealed canary's
passage can be slashed. Reverts come back as `ContractRevert` subclasses named after the Solidity errors
(`SourceRegistry.errors.WrongBatch`, ...).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from eth_abi import encode as abi_encode
from eth_account.signers.local import LocalAccount
from hexbytes import HexBytes
from web3 import Web3
from web3.types import FilterParams, TxReceipt

from backend.chain.abi import ContractEnum
from backend.chain.client import ChainClient
from backend.chain.errors import ChainError
from backend.chain.facade import ContractFacade

__all__ = [
    "CONTRACT",
    "DEFAULT_EPOCH_LENGTH",
    "DEFAULT_EXIT_DELAY",
    "DEFAULT_MAX_DELTA",
    "DEFAULT_MAX_EVIDENCE",
    "DEFAULT_MIN_BOND",
    "DEFAULT_SLASH_BPS",
    "ENTRY_FORMAT",
    "EVALUATOR_ROLE",
    "PRIOR_NEGATIVE",
    "PRIOR_POSITIVE",
    "SCALE",
    "CanarySet",
    "FeedbackBatch",
    "FeedbackEncodingError",
    "FeedbackEntry",
    "Reliability",
    "Slash",
    "SourceInfo",
    "SourceRegistry",
    "SourceStatus",
    "canary_commitment",
    "decode_feedback",
    "deploy_source_registry",
    "encode_feedback",
]

CONTRACT = "SourceRegistry"
# Mirrors of the contract's constants (checked against the chain in the tests).
SCALE = 1000
PRIOR_POSITIVE = 1 * SCALE
PRIOR_NEGATIVE = 4 * SCALE
ENTRY_FORMAT = ">IHH"  # uint32 source id | uint16 positive | uint16 negative, big-endian: 8 bytes
EVALUATOR_ROLE = Web3.keccak(text="EVALUATOR_ROLE")
# Constructor defaults: a bond that costs something on a real chain, an hour to leave, at most ten observations
# per source per hour-long epoch each way (uint16 holds 65 at SCALE 1000), records that keep the last ~40
# observations, and a tenth of the bond burned per tampered canary.
DEFAULT_MIN_BOND = 10**16
DEFAULT_EXIT_DELAY = 3600
DEFAULT_MAX_DELTA = 10 * SCALE
DEFAULT_EPOCH_LENGTH = 3600
DEFAULT_MAX_EVIDENCE = 40 * SCALE
DEFAULT_SLASH_BPS = 1000

# Events after which a cached directory (endpoints, commitments, records, statuses) is stale.
_DIRECTORY_EVENTS = ("SourceRegistered", "FeedbackApplied", "CommitmentUpdated", "EndpointUpdated",
                     "ExitRequested", "BondWithdrawn", "SourceSlashed")  # fmt: skip

_UINT16 = 0xFFFF
_UINT32 = 0xFFFFFFFF


class FeedbackEncodingError(ChainError, ValueError):
    """A feedback batch that the contract would reject (out-of-range values, repeated or unsorted ids)."""


class SourceStatus(ContractEnum):
    NONE = 0
    ACTIVE = 1
    EXITING = 2
    WITHDRAWN = 3


@dataclass(frozen=True)
class FeedbackEntry:
    """Evidence about one source in fixed-point units (`SCALE` per observation)."""

    source_id: int
    positive: int
    negative: int


@dataclass(frozen=True)
class FeedbackBatch:
    """One applied batch, as its `FeedbackApplied` event tells it: its number and the epoch it spent."""

    batch: int
    epoch: int
    evaluator: str
    entries: tuple[FeedbackEntry, ...]
    block: int
    gas_used: int | None = None


@dataclass(frozen=True)
class Reliability:
    """A source's Beta(alpha, beta) posterior, prior included, in fixed-point units, and what feedback may still
    move it this epoch (`budget_positive`, `budget_negative`; None when not read)."""

    source_id: int
    alpha: int
    beta: int
    status: SourceStatus = SourceStatus.ACTIVE
    budget_positive: int | None = None
    budget_negative: int | None = None

    @property
    def mean(self) -> float:
        return self.alpha / (self.alpha + self.beta)

    @property
    def observations(self) -> float:
        """Evidence beyond the prior's weight, in observations (at most `maxEvidence` minus the prior)."""
        return (self.alpha + self.beta - PRIOR_POSITIVE - PRIOR_NEGATIVE) / SCALE

    @property
    def std(self) -> float:
        """Posterior standard deviation, with the counts read as observations."""
        a, b = self.alpha / SCALE, self.beta / SCALE
        return math.sqrt(a * b / ((a + b) ** 2 * (a + b + 1)))


@dataclass(frozen=True)
class SourceInfo:
    source_id: int
    operator: str
    bond: int
    status: SourceStatus
    exit_available_at: int
    commitment: bytes
    endpoint: str


@dataclass(frozen=True)
class CanarySet:
    """An evaluator's committed canary set for one epoch."""

    epoch: int
    evaluator: str
    commitment: bytes
    count: int
    revealed: bool


@dataclass(frozen=True)
class Slash:
    """One `SourceSlashed` event."""

    source_id: int
    epoch: int
    evaluator: str
    amount: int
    failures: int
    evidence: bytes
    block: int


def canary_commitment(
    chain_id: int, registry: str, evaluator: str, epoch: int, salt: bytes, count: int, canaries: bytes
) -> bytes:
    """What `commitCanaries` takes, as `SourceRegistry.canaryCommitment` computes it."""
    return Web3.keccak(
        abi_encode(
            ["uint256", "address", "address", "uint64", "bytes32", "uint16", "bytes32"],
            [
                chain_id,
                Web3.to_checksum_address(registry),
                Web3.to_checksum_address(evaluator),
                epoch,
                salt,
                count,
                Web3.keccak(canaries),
            ],
        )
    )


def encode_feedback(entries: Iterable[FeedbackEntry]) -> bytes:
    """Pack entries for `applyFeedback`, sorted by id; each id once, every value in its field's range."""
    ordered = sorted(entries, key=lambda e: e.source_id)
    if not ordered:
        raise FeedbackEncodingError("a feedback batch needs at least one entry")
    previous = 0
    out = bytearray()
    for entry in ordered:
        if not 0 < entry.source_id <= _UINT32:
            raise FeedbackEncodingError(f"source id {entry.source_id} is outside 1..{_UINT32}")
        if entry.source_id == previous:
            raise FeedbackEncodingError(f"source {entry.source_id} appears twice in one batch")
        for name, value in (("positive", entry.positive), ("negative", entry.negative)):
            if not isinstance(value, int) or not 0 <= value <= _UINT16:
                raise FeedbackEncodingError(
                    f"{name} delta {value!r} of source {entry.source_id} not in 0..65535"
                )
        out += struct.pack(ENTRY_FORMAT, entry.source_id, entry.positive, entry.negative)
        previous = entry.source_id
    return bytes(out)


def decode_feedback(data: bytes) -> tuple[FeedbackEntry, ...]:
    """The inverse of `encode_feedback` (reads a `FeedbackApplied` event's `entries`)."""
    size = struct.calcsize(ENTRY_FORMAT)
    if len(data) % size:
        raise FeedbackEncodingError(f"feedback bytes of length {len(data)} are not whole {size}-byte entries")
    return tuple(FeedbackEntry(*struct.unpack_from(ENTRY_FORMAT, data, i)) for i in range(0, len(data), size))


class SourceRegistry(ContractFacade):
    """The deployed SourceRegistry (or the one at `address`), through a `ChainClient`."""

    contract_name = CONTRACT

    # -- reads -----------------------------------------------------------------------------------------------

    def current_epoch(self, block: int | str = "latest") -> int:
        """The epoch at `block`: whole `epochLength`s since deployment (the budget and canary clock)."""
        return int(self.client.call(CONTRACT, "currentEpoch", address=self._address, block=block))

    def batches(self) -> int:
        """Batches applied so far; the next batch must carry `batches() + 1`."""
        return int(self._call("batches"))

    def source_count(self) -> int:
        return int(self._call("sourceCount"))

    def min_bond(self) -> int:
        return int(self._call("minBond"))

    def required_bond(self, operator: str) -> int:
        """What `operator` must lock to register one more source (`minBond` x its live sources + 1)."""
        return int(self._call("requiredBond", Web3.to_checksum_address(operator)))

    def max_delta(self) -> int:
        return int(self._call("maxDelta"))

    def epoch_length(self) -> int:
        return int(self._call("epochLength"))

    def genesis(self) -> int:
        """The deployment's timestamp: epoch `e` runs from `genesis + e * epochLength`."""
        return int(self._call("genesis"))

    def max_evidence(self) -> int:
        return int(self._call("maxEvidence"))

    def source(self, source_id: int) -> SourceInfo:
        operator, bond, status, exit_at, commitment, endpoint = self._call("source", source_id)
        return SourceInfo(
            source_id, operator, int(bond), SourceStatus(status), int(exit_at), bytes(commitment), endpoint
        )

    def sources(self) -> list[SourceInfo]:
        return [self.source(i) for i in range(1, self.source_count() + 1)]

    def reliability(self, source_id: int) -> Reliability:
        alpha, beta = self._call("reliability", source_id)
        positive, negative = self._call("remainingBudget", source_id)
        return Reliability(source_id, int(alpha), int(beta), self.source(source_id).status, int(positive),
                           int(negative))  # fmt: skip

    def reliabilities(self, block: int | str = "latest") -> dict[int, Reliability]:
        """Every source's posterior and remaining budget in one call (what the orchestrator caches)."""
        count = int(self.client.call(CONTRACT, "sourceCount", address=self._address, block=block))
        if count == 0:
            return {}
        columns = self.client.call(CONTRACT, "reliabilities", 1, count, address=self._address, block=block)
        return {
            i + 1: Reliability(i + 1, int(a), int(b), SourceStatus(s), int(p), int(n))
            for i, (a, b, s, p, n) in enumerate(zip(*columns, strict=True))
        }

    def is_evaluator(self, address: str) -> bool:
        return bool(self._call("hasRole", EVALUATOR_ROLE, Web3.to_checksum_address(address)))

    def verify_document(self, source_id: int, leaf: bytes, proof: Sequence[bytes]) -> bool:
        return bool(self._call("verifyDocument", source_id, leaf, list(proof)))

    def canaries(self, evaluator: str, epoch: int) -> CanarySet:
        evaluator = Web3.to_checksum_address(evaluator)
        return self._struct(CanarySet, "canaries", self._call("canaries", evaluator, epoch), epoch=epoch,
                            evaluator=evaluator)  # fmt: skip

    def feedback_batches(self, from_block: int | None = None) -> list[FeedbackBatch]:
        """Every applied batch since `from_block` (default: the deployment block), oldest first."""
        logs = self.client.events(CONTRACT, "FeedbackApplied", from_block=from_block, address=self._address)
        return [
            FeedbackBatch(
                int(log["args"]["batch"]),
                int(log["args"]["epoch"]),
                log["args"]["evaluator"],
                decode_feedback(bytes(log["args"]["entries"])),
                int(log["blockNumber"]),
            )
            for log in logs
        ]

    def changes_since(self, from_block: int, to_block: int | None = None) -> list[str]:
        """Names of the events in `from_block..to_block` (default: the head) that change what a directory caches
        (registrations, feedback, new commitments or endpoints, exits, slashes), oldest first; one `eth_getLogs`."""
        if to_block is None:
            to_block = self.client.block_number()
        if from_block > to_block:
            return []
        contract = self.client.contract(CONTRACT, self._address)
        by_topic: dict[bytes, str] = {}
        for name in _DIRECTORY_EVENTS:
            abi = getattr(contract.events, name)().abi
            signature = f"{name}({','.join(i['type'] for i in abi['inputs'])})"
            by_topic[bytes(Web3.keccak(text=signature))] = name
        params: FilterParams = {"address": Web3.to_checksum_address(self.address), "fromBlock": from_block,
                                "toBlock": to_block, "topics": [[HexBytes(t) for t in by_topic]]}  # fmt: skip
        logs = self.client._rpc(lambda: self.client.w3.eth.get_logs(params))
        return [by_topic[bytes(log["topics"][0])] for log in logs]

    def revealed_canaries(self, from_block: int | None = None) -> list[tuple[int, str, bytes, bytes]]:
        """(epoch, evaluator, salt, canaries) of every reveal since `from_block`, oldest first."""
        logs = self.client.events(CONTRACT, "CanariesRevealed", from_block=from_block, address=self._address)
        return [(int(log["args"]["epoch"]), log["args"]["evaluator"], bytes(log["args"]["salt"]),
                 bytes(log["args"]["canaries"])) for log in logs]  # fmt: skip

    def slashes(self, from_block: int | None = None) -> list[Slash]:
        logs = self.client.events(CONTRACT, "SourceSlashed", from_block=from_block, address=self._address)
        return [
            Slash(
                int(a["id"]),
                int(a["epoch"]),
                a["evaluator"],
                int(a["amount"]),
                int(a["failures"]),
                bytes(a["evidence"]),
                int(log["blockNumber"]),
            )
            for log in logs
            for a in (log["args"],)
        ]

    # -- writes ----------------------------------------------------------------------------------------------

    def register(
        self, operator: LocalAccount, endpoint: str, commitment: bytes, bond: int | None = None
    ) -> int:
        """Lock `bond` wei (default: what the operator must lock now) and register; returns the new source id."""
        if bond is None:
            bond = self.required_bond(operator.address)
        receipt = self._transact(operator, "registerSource", endpoint, commitment, value=bond)
        return int(self._event(receipt, "SourceRegistered")["id"])

    def update_endpoint(self, operator: LocalAccount, source_id: int, endpoint: str) -> TxReceipt:
        return self._transact(operator, "updateEndpoint", source_id, endpoint)

    def update_commitment(self, operator: LocalAccount, source_id: int, commitment: bytes) -> TxReceipt:
        """Commit to a new corpus: the record keeps its mean, its confidence falls to the prior's."""
        return self._transact(operator, "updateCommitment", source_id, commitment)

    def request_exit(self, operator: LocalAccount, source_id: int) -> int:
        """Start leaving; returns the timestamp from which the bond can be withdrawn."""
        receipt = self._transact(operator, "requestExit", source_id)
        return int(self._event(receipt, "ExitRequested")["availableAt"])

    def withdraw_bond(self, operator: LocalAccount, source_id: int) -> int:
        """Pull the bond back after the exit delay; returns the amount paid."""
        receipt = self._transact(operator, "withdrawBond", source_id)
        return int(self._event(receipt, "BondWithdrawn")["amount"])

    def grant_evaluator(self, admin: LocalAccount, evaluator: str) -> TxReceipt:
        return self._transact(admin, "grantRole", EVALUATOR_ROLE, Web3.to_checksum_address(evaluator))

    def apply_feedback(
        self, evaluator: LocalAccount, batch: int, entries: Iterable[FeedbackEntry]
    ) -> FeedbackBatch:
        """Apply one batch numbered `batch`; a stale or replayed number raises `SourceRegistry.errors.WrongBatch`,
        a source moved past its epoch budget `SourceRegistry.errors.EpochBudgetExceeded`."""
        receipt = self._transact(evaluator, "applyFeedback", batch, encode_feedback(entries))
        args = self._event(receipt, "FeedbackApplied")
        return FeedbackBatch(int(args["batch"]), int(args["epoch"]), args["evaluator"],
                             decode_feedback(bytes(args["entries"])), int(receipt["blockNumber"]),
                             int(receipt["gasUsed"]))  # fmt: skip

    def commit_canaries(
        self, evaluator: LocalAccount, epoch: int, salt: bytes, count: int, canaries: bytes
    ) -> bytes:
        """Commit to `canaries` (the set's bytes) for a future `epoch`; returns the commitment."""
        commitment = canary_commitment(self.client.chain_id, self.address, evaluator.address, epoch, salt, count,
                                       canaries)  # fmt: skip
        self._transact(evaluator, "commitCanaries", epoch, commitment, count)
        return commitment

    def reveal_canaries(self, evaluator: LocalAccount, epoch: int, salt: bytes, canaries: bytes) -> TxReceipt:
        return self._transact(evaluator, "revealCanaries", epoch, salt, canaries)

    def slash(
        self, evaluator: LocalAccount, source_id: int, epoch: int, failures: int, evidence: bytes
    ) -> int:
        """Burn part of the bond of a source shown wrong on `epoch`'s revealed canaries; returns the wei burned."""
        receipt = self._transact(evaluator, "slash", source_id, epoch, failures, evidence)
        return int(self._event(receipt, "SourceSlashed")["amount"])


def deploy_source_registry(
    client: ChainClient,
    admin: LocalAccount,
    *,
    min_bond: int = DEFAULT_MIN_BOND,
    exit_delay: int = DEFAULT_EXIT_DELAY,
    max_delta: int = DEFAULT_MAX_DELTA,
    epoch_length: int = DEFAULT_EPOCH_LENGTH,
    max_evidence: int = DEFAULT_MAX_EVIDENCE,
    slash_bps: int = DEFAULT_SLASH_BPS,
    evaluator: str | None = None,
) -> SourceRegistry:
    """Deploy a fresh registry (admin = deployer) and grant `evaluator` its role, for tests and experiments."""
    receipt = client.deploy(
        admin, CONTRACT, min_bond, exit_delay, max_delta, epoch_length, max_evidence, slash_bps
    )
    registry = SourceRegistry(client, receipt["contractAddress"])
    if evaluator is not None:
        registry.grant_evaluator(admin, evaluator)
    return registry
