"""The training marketplace: projects, rounds (status, report, scores) and the report itself, all from the
TrainingMarket contract and the content store (verified against the on-chain sha256); and the gasless submission
path, where a trainer signs its submission (EIP-712) and the service's relayer sends it (`submitUpdateFor`)."""

from __future__ import annotations

import json
import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field

from aggregator.errors import AggregatorError
from aggregator.schema import DataSchema
from aggregator.tasks import get_task
from backend.api.core.access import Caller
from backend.api.core.errors import ApiError, BadRequest, Conflict, Forbidden, NotFound, problem_responses
from backend.api.deps import GatedRoute, MarketDep, RelayerDep, ServicesDep, StoreDep, require_scope
from backend.api.inference import current_model_ref
from backend.api.services import ApiServices
from backend.chain.training_market import (
    ChallengeState,
    ProjectInfo,
    ProjectStatus,
    RoundInfo,
    TrainingMarket,
)
from backend.errors import TrustmarketError
from backend.storage import ContentNotFound, ContentStore, IntegrityError, fetch_verified

__all__ = ["ProjectId", "market_project", "router"]

router = APIRouter(
    route_class=GatedRoute,
    prefix="/v1/projects",
    tags=["trainers"],
    responses=problem_responses(401, 403, 422, 429, 503),
)

ProjectId = Annotated[int, Path(ge=1, lt=2**256, description="Project id (ids start at 1).")]
RoundIndex = Annotated[int, Path(ge=0, lt=2**16, description="Round index (0-based).")]
_SHA256 = r"^(0x)?[0-9a-fA-F]{64}$"
_ADDRESS = r"^0x[0-9a-fA-F]{40}$"


class ContentView(BaseModel):
    cid: str
    sha256: str


class DataView(BaseModel):
    """The project's data schema in brief: what `predict` takes and answers."""

    kind: Literal["tensor", "text"] = Field(description="Rows of features, or texts.")
    feature_shape: list[int] | None = Field(description="One example's features (tensor data).")
    feature_names: list[str] | None = Field(description="Feature columns in model order (tabular data).")
    text_field: str | None = Field(description="The text column (text data).")
    labels: list[int | str] | None = Field(description="The class labels in output order (classification).")
    label_range: list[float] | None = Field(description="The owner's declared target range (regression).")
    preprocessing: list[str] = Field(
        description="Steps applied to every input, in order (scale, standardize)."
    )


class ManifestView(ContentView):
    """The manifest's reference and, when the store could be read, what it pins."""

    available: bool = Field(description="False: the store could not be read (the fields below are null).")
    detail: str | None = Field(default=None, description="Why the manifest is unavailable.")
    model: str | None = Field(
        default=None, description="The model's source and name (builtin:mlp, hf:minilm)."
    )
    task: str | None = None
    metric: str | None = Field(default=None, description="What rounds are judged by (accuracy, r2).")
    lora: bool | None = Field(default=None, description="Only LoRA adapters and the head travel.")
    data: DataView | None = None


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
    config: ManifestView = Field(description="The project manifest (CID, sha256) and what it pins.")


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


def market_project(market: TrainingMarket, project_id: int) -> ProjectInfo:
    """The project, or 404 `unknown-project`."""
    try:
        return market.project(project_id)
    except TrainingMarket.errors.UnknownProject:
        raise NotFound(f"no project {project_id}", kind="unknown-project") from None


class _Manifests:
    """Manifests for one request's project views, from the worker's cache by CID or the store; once the store
    fails, the rest of the request does not wait on it again (a listing costs at most one timeout)."""

    def __init__(self, services: ApiServices) -> None:
        self._services = services
        self._down: str | None = None

    def view(self, info: ProjectInfo) -> ManifestView:
        cid, sha256 = info.config_cid, info.config_sha256
        models = self._services.models.get()
        manifest = models.cached_manifest(info)
        if manifest is None and self._down is None:
            try:
                manifest = models.manifest(self._services.store.get(), info)
            except (ApiError, TrustmarketError, AggregatorError) as exc:
                detail = exc.detail if isinstance(exc, ApiError) else str(exc)
                if not isinstance(exc, AggregatorError | ContentNotFound | IntegrityError):
                    self._down = detail  # the store itself is down, not this one manifest
                return ManifestView(cid=cid, sha256=sha256, available=False, detail=detail)
        if manifest is None:
            return ManifestView(cid=cid, sha256=sha256, available=False, detail=self._down)
        schema = DataSchema.from_dict(manifest.data)
        return ManifestView(
            cid=cid,
            sha256=sha256,
            available=True,
            model=manifest.model.uri,
            task=manifest.task,
            metric=get_task(manifest.task).metric,
            lora=manifest.model.lora is not None,
            data=DataView(
                kind=schema.kind,  # type: ignore[arg-type]
                feature_shape=list(schema.feature_shape) if schema.feature_shape is not None else None,
                feature_names=list(schema.feature_names) if schema.feature_names is not None else None,
                text_field=schema.text_field,
                labels=list(schema.labels) if schema.labels is not None else None,
                label_range=list(schema.label_range) if schema.label_range is not None else None,
                preprocessing=[str(step["op"]) for step in schema.preprocessing],
            ),
        )


def _view(market: TrainingMarket, info: ProjectInfo, manifests: _Manifests) -> ProjectView:
    model_round, ref = current_model_ref(market, info)
    return ProjectView(
        id=info.project_id,
        owner=info.owner,
        aggregator=info.aggregator,
        status=info.status.name.lower(),
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
        config=manifests.view(info),
    )


@router.get("")
def projects(
    caller: Annotated[Caller, require_scope("projects:read", cost="read")],
    market: MarketDep,
    services: ServicesDep,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
    limit: Annotated[int, Query(ge=1, le=50)] = 20,
) -> list[ProjectView]:
    """Projects by id, oldest first, each with its manifest's model, task, metric and data schema."""
    last = market.project_count()
    manifests = _Manifests(services)
    return [
        _view(market, market.project(i), manifests) for i in range(offset + 1, min(last, offset + limit) + 1)
    ]


@router.get("/{project_id}", responses=problem_responses(404))
def project(
    project_id: ProjectId,
    caller: Annotated[Caller, require_scope("projects:read", cost="read")],
    market: MarketDep,
    services: ServicesDep,
) -> ProjectView:
    """One project: parameters, progress, the reference of its current global model (not the weights), and its
    manifest's model, task, metric and data schema (marked unavailable, not an error, when the store is down)."""
    return _view(market, market_project(market, project_id), _Manifests(services))


def _status(info: ProjectInfo, rd: RoundInfo, round_: int) -> str:
    if rd.finalized_at:
        return (
            "challenged"
            if rd.challenge is ChallengeState.OPEN
            else ("reversed" if rd.challenge is ChallengeState.UPHELD else "finalized")
        )
    if round_ == info.current_round and info.status is ProjectStatus.ACTIVE:
        return "open"
    return "cancelled" if info.status is ProjectStatus.CANCELLED else "pending"


def _report(store: ContentStore, rd: RoundInfo) -> dict[str, Any]:
    return json.loads(fetch_verified(store, rd.report_cid, rd.report_sha256))


@router.get("/{project_id}/rounds/{round_index}", responses=problem_responses(404, 502))
def round_view(
    project_id: ProjectId,
    round_index: RoundIndex,
    caller: Annotated[Caller, require_scope("projects:read", cost="read")],
    market: MarketDep,
    store: StoreDep,
) -> RoundView:
    """A round's status, its submissions, and once finalized its model, report and per-trainer scores."""
    info = market_project(market, project_id)
    if round_index >= info.rounds:
        raise NotFound(f"project {project_id} has rounds 0..{info.rounds - 1}", kind="unknown-round")
    rd = market.round(project_id, round_index)
    finalized = bool(rd.finalized_at)
    scores, flagged = None, None
    if finalized:
        report = _report(store, rd)
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
        challenge=rd.challenge.name.lower(),
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
    market: MarketDep,
    store: StoreDep,
) -> dict[str, Any]:
    """The round report the aggregator stored (rule, outliers, contribution, metrics), verified by its sha256."""
    info = market_project(market, project_id)
    if round_index >= info.rounds:
        raise NotFound(f"project {project_id} has rounds 0..{info.rounds - 1}", kind="unknown-round")
    rd = market.round(project_id, round_index)
    if not rd.finalized_at:
        raise NotFound(f"round {round_index} of project {project_id} is not finalized", kind="no-report")
    return _report(store, rd)


class RelayedSubmission(BaseModel):
    cid: str = Field(min_length=1, max_length=128, description="CID of the update (POST /v1/uploads).")
    sha256: str = Field(pattern=_SHA256, description="sha256 of the update's bytes, 64 hex digits.")
    deadline: int = Field(ge=0, lt=2**64, description="Unix time after which the signature is void.")
    signature: str = Field(pattern=r"^0x([0-9a-fA-F]{2}){65,1024}$", description="EIP-712 signature.")
    trainer: str | None = Field(
        default=None,
        pattern=_ADDRESS,
        description="The trainer named in the signed message; must be the caller.",
    )


class Relayed(BaseModel):
    project_id: int
    round: int
    trainer: str
    cid: str
    sha256: str
    transaction: str


def _open_round(market: TrainingMarket, project_id: int, round_index: int) -> None:
    info = market_project(market, project_id)
    if round_index >= info.rounds:
        raise NotFound(f"project {project_id} has rounds 0..{info.rounds - 1}", kind="unknown-round")


@router.get("/{project_id}/rounds/{round_index}/submissions:relay", responses=problem_responses(404))
def submission_payload(
    project_id: ProjectId,
    round_index: RoundIndex,
    caller: Annotated[Caller, require_scope("updates:relay", cost="free")],
    market: MarketDep,
    cid: Annotated[str, Query(min_length=1, max_length=128)],
    sha256: Annotated[str, Query(pattern=_SHA256)],
    deadline: Annotated[int | None, Query(ge=0, lt=2**64, description="Default: one hour from now.")] = None,
) -> dict[str, Any]:
    """The EIP-712 typed data (eth_signTypedData_v4) that submits this update for the caller, with its nonce."""
    _open_round(market, project_id, round_index)
    when = deadline if deadline is not None else int(time.time()) + 3600
    return market.submission_typed_data(caller.wallet, project_id, round_index, cid, sha256, when)


@router.post(
    "/{project_id}/rounds/{round_index}/submissions:relay", responses=problem_responses(400, 404, 409, 502)
)
def relay_submission(
    project_id: ProjectId,
    round_index: RoundIndex,
    body: RelayedSubmission,
    caller: Annotated[Caller, require_scope("updates:relay", cost="relay")],
    market: MarketDep,
    relayer: RelayerDep,
) -> Relayed:
    """Relay the caller's signed submission to TrainingMarket.submitUpdateFor (the service pays the gas). The
    chain records it as the caller's: the service never relays for anyone but the signed-in trainer."""
    if body.trainer is not None and body.trainer.lower() != caller.wallet.lower():
        raise Forbidden("the signed submission names another trainer than the caller", kind="not-the-trainer")
    _open_round(market, project_id, round_index)
    # A replayed submission would fail on chain as a bad signature (its nonce is spent): say what it is.
    if market.has_submitted(project_id, round_index, caller.wallet):
        raise Conflict(f"the caller already submitted to round {round_index}", kind="already-submitted")
    sha256 = body.sha256.lower().removeprefix("0x")
    try:
        receipt = market.submit_update_for(
            relayer, caller.wallet, project_id, round_index, body.cid, sha256, body.deadline,
            bytes.fromhex(body.signature[2:]),
        )  # fmt: skip
    except TrainingMarket.errors.InvalidSignature:
        raise BadRequest(
            "the signature is not the caller's over this project, round, CID, sha256, deadline and nonce",
            kind="invalid-signature",
        ) from None
    except TrainingMarket.errors.SignatureExpired:
        raise BadRequest("the signature's deadline has passed", kind="signature-expired") from None
    except TrainingMarket.errors.InvalidContentReference:
        raise BadRequest("the CID is empty or too long, or the sha256 is zero", kind="bad-request") from None
    except TrainingMarket.errors.AlreadySubmitted:
        raise Conflict(
            f"the caller already submitted to round {round_index}", kind="already-submitted"
        ) from None
    except TrainingMarket.errors.WrongRound:
        raise Conflict(f"round {round_index} is not the open round", kind="wrong-round") from None
    except TrainingMarket.errors.SubmissionWindowClosed:
        raise Conflict(f"round {round_index}'s submission window has closed", kind="window-closed") from None
    except TrainingMarket.errors.NotRegistered:
        raise Conflict(
            f"the caller is not registered in project {project_id}", kind="not-registered"
        ) from None
    return Relayed(
        project_id=project_id,
        round=round_index,
        trainer=caller.wallet,
        cid=body.cid,
        sha256=sha256,
        transaction=receipt["transactionHash"].to_0x_hex(),
    )
