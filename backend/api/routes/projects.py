"""The training marketplace: projects, rounds (status, report, scores) and the report itself, all from the
TrainingMarket contract and the content store (verified against the on-chain sha256); and the gasless path of a
sealed round, where a trainer signs its commitment, then its reveal, as ERC-2771 requests (EIP-712) and the
service's relayer forwards them through the market's trusted forwarder."""

from __future__ import annotations

import json
import time
from typing import Annotated, Any, Literal

from eth_account.signers.local import LocalAccount
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
from backend.chain.errors import ContractRevert
from backend.chain.forwarder import Forwarder, ForwardRequest
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


_HEX32 = r"^0x[0-9a-fA-F]{64}$"


class RelayedCall(BaseModel):
    """A trainer's ERC-2771 request, signed for the market's forwarder (GET the same path for the payload)."""

    nonce: int = Field(ge=0, lt=2**256, description="The forwarder nonce the request was signed with.")
    deadline: int = Field(ge=0, lt=2**48, description="Unix time after which the signature is void.")
    signature: str = Field(pattern=r"^0x([0-9a-fA-F]{2}){65,1024}$", description="EIP-712 signature.")
    trainer: str | None = Field(
        default=None,
        pattern=_ADDRESS,
        description="The signer named in the request; must be the caller.",
    )


class RelayedCommitment(RelayedCall):
    commitment: str = Field(
        pattern=_HEX32,
        description="keccak256(abi.encode(chainid, market, projectId, round, trainer, updateSha256, salt)).",
    )


class RelayedReveal(RelayedCall):
    cid: str = Field(min_length=1, max_length=128, description="CID of the update (POST /v1/uploads, now).")
    sha256: str = Field(pattern=_SHA256, description="sha256 of the update's bytes, 64 hex digits.")
    salt: str = Field(pattern=_HEX32, description="The salt of the commitment.")


class Relayed(BaseModel):
    project_id: int
    round: int
    trainer: str
    call: str
    executed: bool
    transaction: str


def _open_round(market: TrainingMarket, project_id: int, round_index: int) -> None:
    info = market_project(market, project_id)
    if round_index >= info.rounds:
        raise NotFound(f"project {project_id} has rounds 0..{info.rounds - 1}", kind="unknown-round")


def _forwarder(market: TrainingMarket) -> Forwarder:
    address = market.forwarder_address()
    if address is None:
        raise Conflict("this market takes no relayed calls (it trusts no forwarder)", kind="no-forwarder")
    return Forwarder(market.client, address)


def _deadline(deadline: int | None) -> int:
    return deadline if deadline is not None else int(time.time()) + 3600


@router.get("/{project_id}/rounds/{round_index}/commitment:relay", responses=problem_responses(404, 409))
def commitment_payload(
    project_id: ProjectId,
    round_index: RoundIndex,
    caller: Annotated[Caller, require_scope("updates:relay", cost="free")],
    market: MarketDep,
    commitment: Annotated[str, Query(pattern=_HEX32)],
    deadline: Annotated[int | None, Query(ge=0, lt=2**48, description="Default: one hour from now.")] = None,
) -> dict[str, Any]:
    """The EIP-712 typed data (eth_signTypedData_v4) of a forwarded `commitUpdate` for the caller, with its
    forwarder nonce: sign it and POST it back with the signature."""
    _open_round(market, project_id, round_index)
    forwarder = _forwarder(market)
    data = market.commit_call(project_id, round_index, bytes.fromhex(commitment[2:]))
    return forwarder.typed_data(
        caller.wallet, market.address, data, forwarder.nonce(caller.wallet), _deadline(deadline)
    )


@router.get("/{project_id}/rounds/{round_index}/reveal:relay", responses=problem_responses(404, 409))
def reveal_payload(
    project_id: ProjectId,
    round_index: RoundIndex,
    caller: Annotated[Caller, require_scope("updates:relay", cost="free")],
    market: MarketDep,
    cid: Annotated[str, Query(min_length=1, max_length=128)],
    sha256: Annotated[str, Query(pattern=_SHA256)],
    salt: Annotated[str, Query(pattern=_HEX32)],
    deadline: Annotated[int | None, Query(ge=0, lt=2**48, description="Default: one hour from now.")] = None,
) -> dict[str, Any]:
    """The EIP-712 typed data of a forwarded `revealUpdate` for the caller, with its forwarder nonce."""
    _open_round(market, project_id, round_index)
    forwarder = _forwarder(market)
    data = market.reveal_call(
        project_id, round_index, cid, sha256.lower().removeprefix("0x"), bytes.fromhex(salt[2:])
    )
    return forwarder.typed_data(
        caller.wallet, market.address, data, forwarder.nonce(caller.wallet), _deadline(deadline)
    )


@router.post(
    "/{project_id}/rounds/{round_index}/commitment:relay", responses=problem_responses(400, 404, 409, 502)
)
def relay_commitment(
    project_id: ProjectId,
    round_index: RoundIndex,
    body: RelayedCommitment,
    caller: Annotated[Caller, require_scope("updates:relay", cost="relay")],
    market: MarketDep,
    relayer: RelayerDep,
) -> Relayed:
    """Forward the caller's signed commitment (the service pays the gas); the market records it as the caller's,
    and the service never forwards for anyone but the signed-in trainer."""
    data = market.commit_call(project_id, round_index, bytes.fromhex(body.commitment[2:]))
    return _relay(market, relayer, caller, project_id, round_index, body, "commitUpdate", data)


@router.post(
    "/{project_id}/rounds/{round_index}/reveal:relay", responses=problem_responses(400, 404, 409, 502)
)
def relay_reveal(
    project_id: ProjectId,
    round_index: RoundIndex,
    body: RelayedReveal,
    caller: Annotated[Caller, require_scope("updates:relay", cost="relay")],
    market: MarketDep,
    relayer: RelayerDep,
) -> Relayed:
    """Forward the caller's signed reveal (after the round's commits close; the service pays the gas)."""
    sha256 = body.sha256.lower().removeprefix("0x")
    data = market.reveal_call(project_id, round_index, body.cid, sha256, bytes.fromhex(body.salt[2:]))
    return _relay(market, relayer, caller, project_id, round_index, body, "revealUpdate", data)


# What the market's refusals mean to the caller, by error name (TrainingMarket's errors).
_REFUSALS: dict[str, tuple[type[ApiError], str, str]] = {
    "NotRegistered": (Conflict, "not-registered", "the caller is not registered in this project"),
    "WrongRound": (Conflict, "wrong-round", "this round is not the open round"),
    "CommitWindowClosed": (Conflict, "window-closed", "the round's commit window has closed"),
    "AlreadyCommitted": (Conflict, "already-committed", "the caller committed to this round already"),
    "InvalidCommitment": (BadRequest, "bad-request", "the commitment is not a keccak256 output"),
    "NotRevealWindow": (Conflict, "not-reveal-window", "the round does not take reveals now"),
    "NothingToReveal": (
        Conflict,
        "nothing-to-reveal",
        "the caller has no commitment to reveal in this round",
    ),
    "CommitmentMismatch": (
        BadRequest,
        "commitment-mismatch",
        "the sha256 and salt do not match the commitment",
    ),
    "InvalidContentReference": (
        BadRequest,
        "bad-request",
        "the CID is empty or too long, or the sha256 is zero",
    ),
    "ProjectNotActive": (Conflict, "project-not-active", "the project has ended"),
}


def _relay(
    market: TrainingMarket,
    relayer: LocalAccount,
    caller: Caller,
    project_id: int,
    round_index: int,
    body: RelayedCall,
    call: str,
    data: bytes,
) -> Relayed:
    if body.trainer is not None and body.trainer.lower() != caller.wallet.lower():
        raise Forbidden("the signed request names another trainer than the caller", kind="not-the-trainer")
    _open_round(market, project_id, round_index)
    forwarder = _forwarder(market)
    # The market's own checks first, as the caller: a refusal is answered plainly, and nothing is sent for it.
    try:
        market.client.simulate("TrainingMarket", data, sender=caller.wallet, address=market.address)
    except ContractRevert as exc:
        kind = _REFUSALS.get(exc.error_name)
        if kind is None:
            raise
        error, problem, detail = kind
        raise error(f"{detail} ({exc.error_name})", kind=problem) from None
    request = ForwardRequest(
        caller.wallet, market.address, data, body.nonce, body.deadline, bytes.fromhex(body.signature[2:])
    )
    if body.deadline < market.client.timestamp():
        raise BadRequest("the signature's deadline has passed", kind="signature-expired")
    if body.nonce < forwarder.nonce(caller.wallet):
        raise Conflict(
            "this request's nonce was used already (relayed before, or invalidated)", kind="replayed"
        )
    if not forwarder.verify(request):
        raise BadRequest(
            "the signature is not the caller's over this call, nonce and deadline", kind="invalid-signature"
        )
    done = forwarder.forward(relayer, request)
    if done.executed and not done.succeeded:
        raise Conflict("the market refused the forwarded call", kind="refused")
    return Relayed(
        project_id=project_id,
        round=round_index,
        trainer=caller.wallet,
        call=call,
        executed=done.executed,
        transaction=done.transaction,
    )
