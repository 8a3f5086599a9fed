"""The training marketplace, read side: projects, rounds (status, report, scores) and the report itself, all
from the TrainingMarket contract and the content store (verified against the on-chain sha256)."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel

from backend.api.core.access import Caller
from backend.api.core.errors import NotFound, problem_responses
from backend.api.deps import Services, require_scope
from backend.api.inference import current_model_ref
from backend.api.services import ApiServices
from backend.chain.errors import revert_class
from backend.chain.training_market import ProjectInfo, RoundInfo, TrainingMarket
from backend.storage import fetch_verified

__all__ = ["ProjectId", "market_project", "router"]

router = APIRouter(
    prefix="/v1/projects", tags=["trainers"], responses=problem_responses(401, 403, 422, 429, 503)
)

ProjectId = Annotated[int, Path(ge=1, lt=2**256, description="Project id (ids start at 1).")]
RoundIndex = Annotated[int, Path(ge=0, lt=2**16, description="Round index (0-based).")]


class ContentView(BaseModel):
    cid: str
    sha256: str


class ProjectView(BaseModel):
    id: int
    owner: str
    aggregator: str
    status: str
    rounds: int
    current_round: int
    round_opened_at: int
    round_duration: int
    trainer_count: int
    max_trainers: int
    min_stake_wei: int
    pool_wei: int
    model_round: int | None
    model: ContentView
    config: ContentView


class RoundView(BaseModel):
    project_id: int
    round: int
    status: str
    opened_at: int
    finalized_at: int
    submissions: int
    flagged_count: int
    challenge: str
    final: bool
    model: ContentView | None
    report: ContentView | None
    scores: dict[str, float] | None
    flagged: list[str] | None


def market_project(services: ApiServices, project_id: int) -> tuple[TrainingMarket, ProjectInfo]:
    market: TrainingMarket = services.require("market")
    try:
        return market, market.project(project_id)
    except revert_class("UnknownProject"):
        raise NotFound(f"no project {project_id}", kind="unknown-project") from None


def _view(market: TrainingMarket, info: ProjectInfo) -> ProjectView:
    model_round, ref = current_model_ref(market, info)
    return ProjectView(
        id=info.project_id,
        owner=info.owner,
        aggregator=info.aggregator,
        status=info.status.lower(),
        rounds=info.rounds,
        current_round=info.current_round,
        round_opened_at=info.round_opened_at,
        round_duration=info.round_duration,
        trainer_count=info.trainer_count,
        max_trainers=info.max_trainers,
        min_stake_wei=info.min_stake,
        pool_wei=info.pool,
        model_round=model_round,
        model=ContentView(cid=ref.cid, sha256=ref.sha256),
        config=ContentView(cid=info.config_cid, sha256=info.config_sha256),
    )


@router.get("")
def projects(
    caller: Annotated[Caller, require_scope("projects:read", cost="read")],
    services: Services,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
    limit: Annotated[int, Query(ge=1, le=50)] = 20,
) -> list[ProjectView]:
    """Projects by id, oldest first."""
    market: TrainingMarket = services.require("market")
    last = market.project_count()
    return [_view(market, market.project(i)) for i in range(offset + 1, min(last, offset + limit) + 1)]


@router.get("/{project_id}", responses=problem_responses(404))
def project(
    project_id: ProjectId,
    caller: Annotated[Caller, require_scope("projects:read", cost="read")],
    services: Services,
) -> ProjectView:
    """One project: parameters, progress, and the reference of its current global model (not the weights)."""
    market, info = market_project(services, project_id)
    return _view(market, info)


def _status(info: ProjectInfo, rd: RoundInfo, round_: int) -> str:
    if rd.finalized_at:
        return (
            "challenged"
            if rd.challenge == "Open"
            else ("reversed" if rd.challenge == "Upheld" else "finalized")
        )
    if round_ == info.current_round and info.status == "Active":
        return "open"
    return "cancelled" if info.status == "Cancelled" else "pending"


def _report(services: ApiServices, rd: RoundInfo) -> dict[str, Any]:
    return json.loads(fetch_verified(services.require("store"), rd.report_cid, rd.report_sha256))


@router.get("/{project_id}/rounds/{round_index}", responses=problem_responses(404, 502))
def round_view(
    project_id: ProjectId,
    round_index: RoundIndex,
    caller: Annotated[Caller, require_scope("projects:read", cost="read")],
    services: Services,
) -> RoundView:
    """A round's status, its submissions, and once finalized its model, report and per-trainer scores."""
    market, info = market_project(services, project_id)
    if round_index >= info.rounds:
        raise NotFound(f"project {project_id} has rounds 0..{info.rounds - 1}", kind="unknown-round")
    rd = market.round(project_id, round_index)
    finalized = bool(rd.finalized_at)
    scores, flagged = None, None
    if finalized:
        report = _report(services, rd)
        scores = {t: float(entry["score"]) for t, entry in report.get("trainers", {}).items()}
        flagged = list(report.get("flagged", []))
    return RoundView(
        project_id=project_id,
        round=round_index,
        status=_status(info, rd, round_index),
        opened_at=rd.opened_at,
        finalized_at=rd.finalized_at,
        submissions=rd.submitters if finalized else len(market.submissions(project_id, round_index)),
        flagged_count=rd.flagged_count,
        challenge=rd.challenge.lower(),
        final=market.is_round_final(project_id, round_index) if finalized else False,
        model=ContentView(cid=rd.model_cid, sha256=rd.model_sha256) if finalized else None,
        report=ContentView(cid=rd.report_cid, sha256=rd.report_sha256) if finalized else None,
        scores=scores,
        flagged=flagged,
    )


@router.get("/{project_id}/rounds/{round_index}/report", responses=problem_responses(404, 502))
def round_report(
    project_id: ProjectId,
    round_index: RoundIndex,
    caller: Annotated[Caller, require_scope("projects:read", cost="read")],
    services: Services,
) -> dict[str, Any]:
    """The round report the aggregator stored (rule, outliers, contribution, metrics), verified by its sha256."""
    market, info = market_project(services, project_id)
    if round_index >= info.rounds:
        raise NotFound(f"project {project_id} has rounds 0..{info.rounds - 1}", kind="unknown-round")
    rd = market.round(project_id, round_index)
    if not rd.finalized_at:
        raise NotFound(f"round {round_index} of project {project_id} is not finalized", kind="no-report")
    return _report(services, rd)
