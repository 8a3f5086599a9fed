"""The dRAG sources as the SourceRegistry tells them: bond (and what slashes burned of it), status, endpoint,
corpus commitment, what feedback may still move each record this epoch, and each record's history.

The truth is the contract's: every figure on the pages comes from `source()` and `reliabilities()` at the page's
block. The history is replayed from the registry's events by the contract's rules: a registration starts from
the prior or takes over an earlier record (`SourceRegistered.inheritedFrom`), a new corpus resets the record to
the values its `CommitmentUpdated` event carries, and a `FeedbackApplied` batch adds its evidence and then
forgets in proportion whatever passes `maxEvidence`. The replay's last point must equal what `reliabilities()`
returns now; the page says so when it does not (a contract that changed its rule, or events missing from the
node), and shows the contract's figure either way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from backend.api.explorer.index import BlockMemo, ChainEvent, EventIndex
from backend.chain.source_registry import (
    PRIOR_NEGATIVE,
    PRIOR_POSITIVE,
    SCALE,
    Reliability,
    SourceInfo,
    SourceRegistry,
    decode_feedback,
)

__all__ = [
    "CanaryRound",
    "RecordChange",
    "RegistryRules",
    "SourceSlash",
    "SourceView",
    "SourcesLedger",
    "replay",
]

# The events that change a record, in the order the chain holds them.
_RECORD_EVENTS = ("SourceRegistered", "CommitmentUpdated", "FeedbackApplied")


@dataclass(frozen=True)
class RegistryRules:
    """The registry's immutable parameters (read once): the clock, the budgets, the cap, the bond and the slash."""

    genesis: int
    epoch_length: int
    max_delta: int
    max_evidence: int
    min_bond: int
    exit_delay: int
    slash_bps: int

    @property
    def kept_observations(self) -> float:
        """Observations beyond the prior's weight a record keeps before it forgets."""
        return (self.max_evidence - PRIOR_POSITIVE - PRIOR_NEGATIVE) / SCALE

    def epoch_at(self, timestamp: int) -> int:
        return max(timestamp - self.genesis, 0) // self.epoch_length


@dataclass(frozen=True)
class RecordChange:
    """A source's record after one event: a registration (from the prior or `inherited_from` an earlier source),
    a new corpus (confidence reset, mean kept) or a feedback batch (evidence added, `forgotten` units dropped
    by the `maxEvidence` cap)."""

    kind: str  # "registered" | "inherited" | "new corpus" | "feedback"
    epoch: int
    block: int
    timestamp: int
    alpha: int
    beta: int
    batch: int | None = None
    positive: int = 0
    negative: int = 0
    forgotten: int = 0
    inherited_from: int | None = None

    @property
    def mean(self) -> float:
        return self.alpha / (self.alpha + self.beta)

    @property
    def evidence(self) -> float:
        """Observations the record holds beyond the prior's weight."""
        return (self.alpha + self.beta - PRIOR_POSITIVE - PRIOR_NEGATIVE) / SCALE


@dataclass(frozen=True)
class SourceSlash:
    """Part of a bond burned for tampered canaries (`SourceSlashed`)."""

    epoch: int
    evaluator: str
    amount: int
    failures: int
    evidence: bytes
    block: int
    timestamp: int


@dataclass(frozen=True)
class CanaryRound:
    """An evaluator's canary set for one epoch: committed before it (a hash), revealed after it (the questions in
    the event, for anyone to check how the sources were scored), and the slashes it backed."""

    epoch: int
    evaluator: str
    count: int
    committed_block: int
    revealed_block: int | None
    slashed_sources: tuple[int, ...]


@dataclass
class SourceView:
    info: SourceInfo
    reliability: Reliability  # the contract's, at the page's block
    history: list[RecordChange] = field(default_factory=list)
    slashes: list[SourceSlash] = field(default_factory=list)
    registered_block: int | None = None
    registered_bond: int | None = None
    withdrawn: int | None = None  # wei paid back by `withdrawBond`
    inherited_from: int | None = None
    inherited_by: list[int] = field(default_factory=list)

    @property
    def consistent(self) -> bool:
        """Whether the replayed history ends where the contract's record is."""
        if not self.history:
            return True
        last = self.history[-1]
        return (last.alpha, last.beta) == (self.reliability.alpha, self.reliability.beta)

    @property
    def slashed(self) -> int:
        return sum(s.amount for s in self.slashes)

    @property
    def forgotten(self) -> float:
        """Observations the `maxEvidence` cap has dropped from this record, in observations."""
        return sum(c.forgotten for c in self.history) / SCALE


def replay(
    events: list[ChainEvent], max_evidence: int, epoch_of: Callable[[ChainEvent], int], block_time
) -> dict[int, list[RecordChange]]:
    """Each source's record changes from the registry's record-changing events, oldest first (see the module
    docstring for the rules; they mirror `registerSource`, `updateCommitment` and `applyFeedback`)."""
    state: dict[int, tuple[int, int]] = {}
    changes: dict[int, list[RecordChange]] = {}

    def record(source: int, change: RecordChange) -> None:
        state[source] = (change.alpha, change.beta)
        changes.setdefault(source, []).append(change)

    for event in events:
        args, when, epoch = event.args, block_time(event.block), epoch_of(event)
        if event.name == "SourceRegistered":
            source, heir_of = int(args["id"]), int(args.get("inheritedFrom") or 0)
            alpha, beta = state.get(heir_of, (PRIOR_POSITIVE, PRIOR_NEGATIVE))
            kind = "inherited" if heir_of else "registered"
            record(
                source,
                RecordChange(kind, epoch, event.block, when, alpha, beta, inherited_from=heir_of or None),
            )
        elif event.name == "CommitmentUpdated":
            record(
                int(args["id"]),
                RecordChange("new corpus", epoch, event.block, when, int(args["alpha"]), int(args["beta"])),
            )
        elif event.name == "FeedbackApplied":
            for entry in decode_feedback(bytes(args["entries"])):
                alpha, beta = state.get(entry.source_id, (PRIOR_POSITIVE, PRIOR_NEGATIVE))
                alpha, beta = alpha + entry.positive, beta + entry.negative
                forgotten = 0
                if alpha + beta > max_evidence:  # the contract's proportional forgetting, same integer maths
                    forgotten = alpha + beta - max_evidence
                    alpha = alpha * max_evidence // (alpha + beta)
                    beta = max_evidence - alpha
                record(
                    entry.source_id,
                    RecordChange(
                        "feedback",
                        epoch,
                        event.block,
                        when,
                        alpha,
                        beta,
                        batch=int(args["batch"]),
                        positive=entry.positive,
                        negative=entry.negative,
                        forgotten=forgotten,
                    ),
                )
    return changes


class SourcesLedger:
    """Reads of one SourceRegistry for the pages: state at the page's block, history from the event index."""

    def __init__(self, registry: SourceRegistry, first_block: int, block_time, head):
        self.registry = registry
        self.events = EventIndex(registry.client, "SourceRegistry", registry.address, first_block)
        self.memo = BlockMemo()
        self.state = BlockMemo()  # storage views and the replay, kept until the registry emits an event
        self._block_time, self._head = block_time, head
        self._rules: RegistryRules | None = None

    @property
    def rules(self) -> RegistryRules:
        if self._rules is None:
            read = self.registry._call
            self._rules = RegistryRules(
                genesis=int(read("genesis")),
                epoch_length=self.registry.epoch_length(),
                max_delta=self.registry.max_delta(),
                max_evidence=self.registry.max_evidence(),
                min_bond=self.registry.min_bond(),
                exit_delay=int(read("exitDelay")),
                slash_bps=int(read("slashBps")),
            )
        return self._rules

    def current_epoch(self) -> int:
        return self.rules.epoch_at(self._head().timestamp)

    def canaries(self) -> list[CanaryRound]:
        """Every committed canary set, newest epoch first."""
        self.sources()
        revealed = {(int(e.args["epoch"]), e.args["evaluator"].lower()): e.block
                    for e in self.events.events("CanariesRevealed")}  # fmt: skip
        slashed: dict[tuple[int, str], list[int]] = {}
        for e in self.events.events("SourceSlashed"):
            slashed.setdefault((int(e.args["epoch"]), e.args["evaluator"].lower()), []).append(
                int(e.args["id"])
            )
        sets = []
        for e in self.events.events("CanariesCommitted"):
            key = (int(e.args["epoch"]), e.args["evaluator"].lower())
            sets.append(CanaryRound(key[0], e.args["evaluator"], int(e.args["count"]), e.block, revealed.get(key),
                                    tuple(slashed.get(key, ()))))  # fmt: skip
        return sorted(sets, key=lambda c: (-c.epoch, c.evaluator.lower()))

    def batches(self) -> int:
        """Feedback batches applied so far (the number of the last one)."""
        self.sources()
        applied = self.events.events("FeedbackApplied")
        return int(applied[-1].args["batch"]) if applied else 0

    def sources(self) -> list[SourceView]:
        head = self._head()
        self.events.sync(head.number)
        return self.memo.get(head.key, "sources", self._read)

    def source(self, source_id: int) -> SourceView | None:
        return next((s for s in self.sources() if s.info.source_id == source_id), None)

    def _read(self) -> list[SourceView]:
        rules = self.rules
        # `source()` is storage only; `reliabilities()` holds the epoch's budgets, which time renews: every block.
        number = self._head().number
        version = self.events.version_at(number)
        infos = self.state.get(version, "infos", self.registry.sources)
        now = self.registry.reliabilities()

        def epoch_of(event: ChainEvent) -> int:
            if "epoch" in event.args:
                return int(event.args["epoch"])
            return rules.epoch_at(self._block_time(event.block))

        histories = self.state.get(
            version,
            "histories",
            lambda: replay(
                self.events.timeline(*_RECORD_EVENTS), rules.max_evidence, epoch_of, self._block_time
            ),
        )
        registered = {int(e.args["id"]): e for e in self.events.events("SourceRegistered")}
        withdrawn = {int(e.args["id"]): int(e.args["amount"]) for e in self.events.events("BondWithdrawn")}
        slashes: dict[int, list[SourceSlash]] = {}
        for e in self.events.events("SourceSlashed"):
            a = e.args
            slashes.setdefault(int(a["id"]), []).append(
                SourceSlash(
                    int(a["epoch"]),
                    a["evaluator"],
                    int(a["amount"]),
                    int(a["failures"]),
                    bytes(a["evidence"]),
                    e.block,
                    self._block_time(e.block),
                )
            )
        heirs: dict[int, list[int]] = {}
        for sid, e in registered.items():
            if int(e.args.get("inheritedFrom") or 0):
                heirs.setdefault(int(e.args["inheritedFrom"]), []).append(sid)
        views = []
        for info in infos:
            sid = info.source_id
            reg = registered.get(sid)
            views.append(
                SourceView(
                    info=info,
                    reliability=now.get(sid) or Reliability(sid, PRIOR_POSITIVE, PRIOR_NEGATIVE, info.status),
                    history=histories.get(sid, []),
                    slashes=slashes.get(sid, []),
                    registered_block=reg.block if reg else None,
                    registered_bond=int(reg.args["bond"]) if reg else None,
                    withdrawn=withdrawn.get(sid),
                    inherited_from=(int(reg.args.get("inheritedFrom") or 0) or None) if reg else None,
                    inherited_by=heirs.get(sid, []),
                )
            )
        return views
