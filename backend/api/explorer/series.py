"""The explorer's charts as data: the same series feed the pages (uPlot, in the browser) and
`trustmarket report plot` (matplotlib, PNG), so a figure in a paper is the figure on the page.

x is a round index (-1 stands for the initial model) or a feedback epoch; y values are floats or None (no point).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from backend.api.explorer.ledger import ProjectView
from backend.api.explorer.sources import SourceView
from backend.api.explorer.words import WEI, address_short, loss_words, metric_title

__all__ = ["Chart", "Series", "accuracy_loss", "cumulative_shares", "pool_paid", "reliability_over_time"]


@dataclass(frozen=True)
class Series:
    label: str
    values: Sequence[float | None]
    axis: str = "y"  # "y" or "y2" (a second scale on the right)
    step: bool = False  # a value holds until the next point (evidence arrives in batches)


@dataclass(frozen=True)
class Chart:
    name: str  # file name of the PNG, id of the element
    title: str
    x: list[float]
    series: list[Series]
    x_label: str
    y_label: str
    y2_label: str | None = None
    x_kind: str = "round"  # "round" or "epoch"
    summary: str = ""  # what the chart shows, in one sentence (its text alternative)
    y_range: tuple[float, float] | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.x or all(all(v is None for v in s.values) for s in self.series)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _finalized(view: ProjectView):
    return [r for r in view.rounds if r.finalized and r.report is not None]


def accuracy_loss(view: ProjectView) -> Chart:
    """The validation metric (left: accuracy, or R-squared for regression) and loss (right) of the model after each
    finalized round. The chart keeps its name whatever the metric: it is the PNG's file name and the element's id."""
    rows = _finalized(view)
    metric_name, loss_name = view.metric_name, view.loss_name
    x: list[float] = []
    metric: list[float | None] = []
    loss: list[float | None] = []
    if rows:
        x.append(-1)
        metric.append(rows[0].metric(f"{metric_name}_before"))
        loss.append(rows[0].metric("loss_before"))
    for row in rows:
        x.append(row.round)
        metric.append(row.metric(f"{metric_name}_after"))
        loss.append(row.metric("loss_after"))
    words = "accuracy" if metric_name == "accuracy" else metric_title(metric_name)
    last = next((a for a in reversed(metric) if a is not None), None)
    summary = (
        f"Validation {words} went from {metric[0]:.3f} before round 0 to {last:.3f} after round {rows[-1].round}."
        if rows and metric[0] is not None and last is not None
        else "No round has been finalized yet."
    )
    return Chart(
        name="accuracy-loss",
        title=f"Project {view.info.project_id}: validation {words} and loss per round",
        x=x,
        series=[Series(metric_name, metric), Series("loss", loss, axis="y2")],
        x_label="round (-1: initial model)",
        y_label=words,
        y2_label=loss_words(loss_name),
        summary=summary,
        # Accuracy lies in [0, 1]; R-squared has no lower bound, so its axis follows the values.
        y_range=(0.0, 1.0) if metric_name == "accuracy" else None,
    )


def cumulative_shares(view: ProjectView, labels: dict[str, str] | None = None) -> Chart:
    """Each trainer's credited shares added up round by round, in ether."""
    rows = [r for r in view.rounds if r.finalized]
    series = []
    for standing in sorted(view.trainers, key=lambda s: -sum(s.shares.values())):
        total, values = 0, []
        for row in rows:
            if row.state != "reversed":
                total += standing.shares.get(row.round, 0)
            values.append(total / WEI)
        label = (labels or {}).get(standing.address) or address_short(standing.address)
        series.append(Series(label, values))
    top = series[0] if series and series[0].values else None
    return Chart(
        name="cumulative-shares",
        title=f"Project {view.info.project_id}: trainers' cumulative shares",
        x=[float(r.round) for r in rows],
        series=series,
        x_label="round",
        y_label="credited (ETH)",
        summary=(
            f"{len(series)} trainers; the largest total after round {rows[-1].round} is "
            f"{top.values[-1]:.4f} ETH ({top.label})."
            if top and rows
            else "Nothing has been credited yet."
        ),
    )


def pool_paid(view: ProjectView) -> Chart:
    """The escrowed pool against what the rounds allocated to trainers and left to the owner, cumulatively."""
    rows = [r for r in view.rounds if r.finalized]
    allocated, dust, total_a, total_d = [], [], 0, 0
    for row in rows:
        if row.state != "reversed":
            total_a += row.allocated or 0
            total_d += row.dust or 0
        allocated.append(total_a / WEI)
        dust.append(total_d / WEI)
    pool = view.info.pool / WEI
    return Chart(
        name="pool-paid",
        title=f"Project {view.info.project_id}: pool allocated against escrowed",
        x=[float(r.round) for r in rows],
        series=[
            Series("escrowed pool", [pool] * len(rows)),
            Series("allocated to trainers", allocated),
            Series("owner's refund (unearned)", dust),
        ],
        x_label="round",
        y_label="ETH",
        summary=(
            f"{total_a / WEI:.4f} of the {pool:.4f} ETH pool allocated to trainers after {len(rows)} "
            f"finalized round{'s' if len(rows) != 1 else ''}."
        ),
        y_range=(0.0, pool * 1.05 if pool else 1.0),
    )


def reliability_over_time(sources: list[SourceView]) -> Chart:
    """Each source's posterior mean reliability at the end of every epoch in which its record changed (the
    registry's clock: feedback moves a record at most `maxDelta` per epoch, and batches of one epoch may land in
    one second, so wall time would stack them). No point before a source was registered; an inherited record
    starts where its predecessor's stood."""
    epochs = sorted({c.epoch for s in sources for c in s.history})
    series = []
    for source in sources:
        by_epoch = {c.epoch: c.mean for c in source.history}  # the last change of each epoch wins
        current: float | None = None
        values: list[float | None] = []
        for epoch in epochs:
            current = by_epoch.get(epoch, current)
            values.append(current)
        series.append(Series(f"source {source.info.source_id}", values, step=True))
    return Chart(
        name="source-reliability",
        title="Sources: reliability over time",
        x=[float(e) for e in epochs],
        series=series,
        x_label="registry epoch",
        y_label="posterior mean reliability",
        x_kind="epoch",
        summary=(
            "; ".join(f"source {s.info.source_id} at {s.reliability.mean:.3f}" for s in sources)
            + (f" at the end of epoch {epochs[-1]}." if epochs else ".")
            if sources
            else "No sources are registered."
        ),
        y_range=(0.0, 1.0),
    )
