"""The dRAG sources as the SourceRegistry tells them: bond, status, endpoint, corpus commitment, and each
source's reliability over time, replayed from the `FeedbackApplied` batches on top of the contract's prior.

The replay adds each batch's fixed-point evidence to (alpha, beta) exactly as `applyFeedback` does; the last
point of every history equals what `reliabilities()` returns now, which the explorer checks and reports when it
does not (a contract that changed its rule, or events missing from the node).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from backend.api.explorer.index import BlockMemo, EventIndex
from backend.chain.source_registry import (
    PRIOR_NEGATIVE,
    PRIOR_POSITIVE,
    SCALE,
    Reliability,
    SourceInfo,
    SourceRegistry,
    decode_feedback,
)

__all__ = ["ReliabilityPoint", "SourceView", "SourcesLedger"]


@dataclass(frozen=True)
class ReliabilityPoint:
    """A source's posterior after one batch: when, which epoch, and the evidence that batch added."""

    epoch: int
    block: int
    timestamp: int
    alpha: int
    beta: int
    positive: int
    negative: int

    @property
    def mean(self) -> float:
        return self.alpha / (self.alpha + self.beta)


@dataclass
class SourceView:
    info: SourceInfo
    reliability: Reliability
    history: list[ReliabilityPoint] = field(default_factory=list)
    registered_block: int | None = None
    consistent: bool = True

    @property
    def positive_observations(self) -> float:
        return (self.reliability.alpha - PRIOR_POSITIVE) / SCALE

    @property
    def negative_observations(self) -> float:
        return (self.reliability.beta - PRIOR_NEGATIVE) / SCALE


class SourcesLedger:
    """Reads of one SourceRegistry, remembered per block like the market's."""

    def __init__(self, registry: SourceRegistry, first_block: int, block_time, head):
        self.registry = registry
        self.events = EventIndex(registry.client, "SourceRegistry", registry.address, first_block)
        self.memo = BlockMemo()
        self._block_time, self._head = block_time, head

    def sources(self) -> list[SourceView]:
        number = self._head().number
        self.events.sync(number)
        return self.memo.get(number, "sources", self._read)

    def source(self, source_id: int) -> SourceView | None:
        return next((s for s in self.sources() if s.info.source_id == source_id), None)

    def _read(self) -> list[SourceView]:
        infos = self.registry.sources()
        now = self.registry.reliabilities()
        registered = {int(e.args["id"]): e.block for e in self.events.events("SourceRegistered")}
        state = {i.source_id: (PRIOR_POSITIVE, PRIOR_NEGATIVE) for i in infos}
        histories: dict[int, list[ReliabilityPoint]] = {i.source_id: [] for i in infos}
        for event in self.events.events("FeedbackApplied"):
            when = self._block_time(event.block)
            for entry in decode_feedback(bytes(event.args["entries"])):
                if entry.source_id not in state:
                    continue
                alpha, beta = state[entry.source_id]
                alpha, beta = alpha + entry.positive, beta + entry.negative
                state[entry.source_id] = (alpha, beta)
                histories[entry.source_id].append(
                    ReliabilityPoint(
                        int(
                            event.args["batch"]
                        ),  # the batch's number (its `epoch` is the budget's time epoch)
                        event.block,
                        when,
                        alpha,
                        beta,
                        entry.positive,
                        entry.negative,
                    )
                )
        views = []
        for info in infos:
            current = now.get(info.source_id) or Reliability(
                info.source_id, PRIOR_POSITIVE, PRIOR_NEGATIVE, info.status
            )
            replayed = state[info.source_id]
            views.append(
                SourceView(
                    info=info,
                    reliability=current,
                    history=histories[info.source_id],
                    registered_block=registered.get(info.source_id),
                    consistent=replayed == (current.alpha, current.beta),
                )
            )
        return views
