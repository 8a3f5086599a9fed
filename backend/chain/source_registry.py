"""Typed facade over `SourceRegistry.sol`: bonded data sources for dRAG and their Beta reliability on chain.

Reliability is a Beta posterior kept as fixed-point counts (`SCALE` units per observation) on top of a pessimistic
prior; the evaluator applies feedback in batches of packed 8-byte entries (`encode_feedback`), each batch carrying
the next epoch number. Reverts come back as `ContractRevert` subclasses named after the Solidity errors
(`SourceRegistry.errors.WrongEpoch`, ...).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import IntEnum

from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.types import TxReceipt

from backend.chain.client import ChainClient
from backend.chain.errors import ChainError
from backend.chain.facade import ContractFacade

__all__ = [
    "CONTRACT",
    "DEFAULT_EXIT_DELAY",
    "DEFAULT_MAX_DELTA",
    "DEFAULT_MIN_BOND",
    "ENTRY_FORMAT",
    "EVALUATOR_ROLE",
    "PRIOR_NEGATIVE",
    "PRIOR_POSITIVE",
    "SCALE",
    "FeedbackBatch",
    "FeedbackEncodingError",
    "FeedbackEntry",
    "Reliability",
    "SourceInfo",
    "SourceRegistry",
    "SourceStatus",
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
# Constructor defaults: a bond that costs something on a real chain, an hour to leave, and at most ten
# observations per source per batch (uint16 holds 65 at SCALE 1000).
DEFAULT_MIN_BOND = 10**16
DEFAULT_EXIT_DELAY = 3600
DEFAULT_MAX_DELTA = 10 * SCALE

_UINT16 = 0xFFFF
_UINT32 = 0xFFFFFFFF


class FeedbackEncodingError(ChainError, ValueError):
    """A feedback batch that the contract would reject (out-of-range values, repeated or unsorted ids)."""


class SourceStatus(IntEnum):
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
    """One applied batch, as its `FeedbackApplied` event tells it."""

    epoch: int
    evaluator: str
    entries: tuple[FeedbackEntry, ...]
    block: int
    gas_used: int | None = None


@dataclass(frozen=True)
class Reliability:
    """A source's Beta(alpha, beta) posterior, prior included, in fixed-point units."""

    source_id: int
    alpha: int
    beta: int
    status: SourceStatus = SourceStatus.ACTIVE

    @property
    def mean(self) -> float:
        return self.alpha / (self.alpha + self.beta)

    @property
    def observations(self) -> float:
        """Evidence beyond the prior, in observations."""
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

    def epoch(self) -> int:
        """Batches applied so far; the next batch must carry `epoch() + 1`."""
        return int(self._call("epoch"))

    def source_count(self) -> int:
        return int(self._call("sourceCount"))

    def min_bond(self) -> int:
        return int(self._call("minBond"))

    def max_delta(self) -> int:
        return int(self._call("maxDelta"))

    def source(self, source_id: int) -> SourceInfo:
        operator, bond, status, exit_at, commitment, endpoint = self._call("source", source_id)
        return SourceInfo(
            source_id, operator, int(bond), SourceStatus(status), int(exit_at), bytes(commitment), endpoint
        )

    def sources(self) -> list[SourceInfo]:
        return [self.source(i) for i in range(1, self.source_count() + 1)]

    def reliability(self, source_id: int) -> Reliability:
        alpha, beta = self._call("reliability", source_id)
        return Reliability(source_id, int(alpha), int(beta), self.source(source_id).status)

    def reliabilities(self, block: int | str = "latest") -> dict[int, Reliability]:
        """Every source's posterior in one call (what the orchestrator caches)."""
        count = int(self.client.call(CONTRACT, "sourceCount", address=self._address, block=block))
        if count == 0:
            return {}
        alphas, betas, statuses = self.client.call(
            CONTRACT, "reliabilities", 1, count, address=self._address, block=block
        )
        return {
            i + 1: Reliability(i + 1, int(a), int(b), SourceStatus(s))
            for i, (a, b, s) in enumerate(zip(alphas, betas, statuses, strict=True))
        }

    def is_evaluator(self, address: str) -> bool:
        return bool(self._call("hasRole", EVALUATOR_ROLE, Web3.to_checksum_address(address)))

    def verify_document(self, source_id: int, leaf: bytes, proof: Sequence[bytes]) -> bool:
        return bool(self._call("verifyDocument", source_id, leaf, list(proof)))

    def feedback_batches(self, from_block: int | None = None) -> list[FeedbackBatch]:
        """Every applied batch since `from_block` (default: the deployment block), oldest first."""
        logs = self.client.events(CONTRACT, "FeedbackApplied", from_block=from_block, address=self._address)
        return [
            FeedbackBatch(
                int(log["args"]["epoch"]),
                log["args"]["evaluator"],
                decode_feedback(bytes(log["args"]["entries"])),
                int(log["blockNumber"]),
            )
            for log in logs
        ]

    # -- writes ----------------------------------------------------------------------------------------------

    def register(self, operator: LocalAccount, endpoint: str, commitment: bytes, bond: int) -> int:
        """Lock `bond` wei and register; returns the new source id."""
        receipt = self._transact(operator, "registerSource", endpoint, commitment, value=bond)
        return int(self._event(receipt, "SourceRegistered")["id"])

    def update_endpoint(self, operator: LocalAccount, source_id: int, endpoint: str) -> TxReceipt:
        return self._transact(operator, "updateEndpoint", source_id, endpoint)

    def update_commitment(self, operator: LocalAccount, source_id: int, commitment: bytes) -> TxReceipt:
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
        self, evaluator: LocalAccount, epoch: int, entries: Iterable[FeedbackEntry]
    ) -> FeedbackBatch:
        """Apply one batch as epoch `epoch`; a stale or replayed epoch raises `SourceRegistry.errors.WrongEpoch`."""
        receipt = self._transact(evaluator, "applyFeedback", epoch, encode_feedback(entries))
        args = self._event(receipt, "FeedbackApplied")
        return FeedbackBatch(
            int(args["epoch"]),
            args["evaluator"],
            decode_feedback(bytes(args["entries"])),
            int(receipt["blockNumber"]),
            int(receipt["gasUsed"]),
        )


def deploy_source_registry(
    client: ChainClient,
    admin: LocalAccount,
    *,
    min_bond: int = DEFAULT_MIN_BOND,
    exit_delay: int = DEFAULT_EXIT_DELAY,
    max_delta: int = DEFAULT_MAX_DELTA,
    evaluator: str | None = None,
) -> SourceRegistry:
    """Deploy a fresh registry (admin = deployer) and grant `evaluator` its role, for tests and experiments."""
    receipt = client.deploy(admin, CONTRACT, min_bond, exit_delay, max_delta)
    registry = SourceRegistry(client, receipt["contractAddress"])
    if evaluator is not None:
        registry.grant_evaluator(admin, evaluator)
    return registry
