"""A trainer (an address) across every project: stake, rounds, scores, flags with their reasons, credited
shares, and what its claim paid or will pay."""

from __future__ import annotations

from dataclasses import dataclass, field

from backend.api.explorer.ledger import Ledger, ProjectView, RoundRow, TrainerStanding
from backend.api.explorer.reports import FlagView

__all__ = ["TrainerProject", "TrainerRound", "TrainerView", "trainer_view"]


@dataclass(frozen=True)
class TrainerRound:
    round: RoundRow
    submitted: bool
    status: str
    score: float | None
    interval: tuple[float, float] | None
    share: int | None
    flags: list[FlagView]


@dataclass
class TrainerProject:
    view: ProjectView
    standing: TrainerStanding
    rounds: list[TrainerRound]
    claimable: int
    registered_block: int

    @property
    def slash_due(self) -> int:
        """What a claim now would slash (the contract's rule on its flag count; 0 when under the threshold)."""
        info = self.view.info
        if not info.slash_after_flags or self.standing.flags < info.slash_after_flags:
            return 0
        return self.standing.stake * info.slash_bps // 10_000


@dataclass
class TrainerView:
    address: str
    projects: list[TrainerProject] = field(default_factory=list)

    @property
    def total_stake(self) -> int:
        return sum(p.standing.stake for p in self.projects)

    @property
    def total_reward(self) -> int:
        return sum(p.standing.reward for p in self.projects)

    @property
    def total_flags(self) -> int:
        return sum(p.standing.flags for p in self.projects)


def _round(ledger: Ledger, row: RoundRow, address: str) -> TrainerRound:
    submitted = address.lower() in {a.lower() for a in ledger.submissions(row.project_id, row.round)}
    entry = row.report.trainer(address) if row.report else None
    share = None
    if row.finalized and submitted:
        share = ledger.share(row.project_id, row.round, address)
    if not submitted:
        status = "did not submit" if row.finalized or row.state not in ("open", "pending") else "-"
    elif not row.finalized:
        status = "submitted"
    elif row.state == "reversed":
        status = "reversed"
    else:
        status = entry.verdict if entry is not None else "scored"
    return TrainerRound(
        round=row,
        submitted=submitted,
        status=status,
        score=entry.score if entry else None,
        interval=entry.interval if entry else None,
        share=share,
        flags=entry.flags if entry else [],
    )


def trainer_view(ledger: Ledger, address: str) -> TrainerView:
    """Every project `address` registered in, newest first."""
    view = TrainerView(address)
    registrations = ledger.events.events("TrainerRegistered", trainer=address)
    for event in sorted(registrations, key=lambda e: -int(e.args["projectId"])):
        project = ledger.project(int(event.args["projectId"]))
        standing = next((s for s in project.trainers if s.address.lower() == address.lower()), None)
        if standing is None:
            continue
        rounds = [_round(ledger, row, address) for row in project.rounds]
        claimable = ledger.market.claimable(project.info.project_id, address) if project.claims_open else 0
        view.projects.append(TrainerProject(project, standing, rounds, claimable, event.block))
    return view
