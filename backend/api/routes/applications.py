"""Use-case applications for access: a wallet submits one, a grantor reviews it and decides; every step is logged.

An approval is applied on chain (`AccessRegistry.setTier`, sent by the service's relayer, which holds
GRANTOR_ROLE) with the application's reference, so the on-chain grant points back at its off-chain decision.
Grantors are the wallets holding GRANTOR_ROLE on chain; they may not decide their own applications.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from backend.api.core.access import Caller
from backend.api.core.errors import BadRequest, Conflict, Forbidden, NotFound, problem_responses
from backend.api.core.tables import AccessApplication, AccessDecision
from backend.api.deps import AccessRegistryDep, GatedRoute, RelayerDep, ServicesDep, require_scope
from backend.chain.access_registry import decision_ref
from backend.db import session_scope

__all__ = ["router"]

router = APIRouter(
    route_class=GatedRoute,
    prefix="/v1/access",
    tags=["access"],
    responses=problem_responses(401, 403, 422, 429, 503),
)

_ADDRESS = r"^0x[0-9a-fA-F]{40}$"
_MAX_OPEN = 3  # open applications per wallet: enough to correct a mistake, too few to flood reviewers
Status = Literal["submitted", "under_review", "approved", "rejected"]


class ApplicationIn(BaseModel):
    requested_tier: int = Field(ge=1, le=255)
    use_case: str = Field(min_length=20, max_length=4000, description="What you will do with the access.")
    contact: str | None = Field(default=None, max_length=256)


class ApplicationOut(BaseModel):
    id: int
    wallet: str
    requested_tier: int
    use_case: str
    contact: str | None
    status: Status
    created_at: float
    updated_at: float


class ReviewIn(BaseModel):
    note: str = Field(min_length=1, max_length=4000)


class DecisionIn(BaseModel):
    approve: bool
    tier: int | None = Field(default=None, ge=1, le=255, description="Default: the requested tier.")
    valid_days: int | None = Field(default=None, ge=1, le=3650)
    note: str = Field(default="", max_length=4000)


class RevocationIn(BaseModel):
    wallet: str = Field(pattern=_ADDRESS)
    note: str = Field(min_length=1, max_length=4000)


class DecisionOut(BaseModel):
    id: int
    application_id: int | None
    wallet: str
    reviewer: str
    action: str
    tier: int | None
    expires_at: int | None
    note: str | None
    tx_hash: str | None
    at: float


def _out(app: AccessApplication) -> ApplicationOut:
    return ApplicationOut.model_validate(app, from_attributes=True)


def _decision_out(d: AccessDecision) -> DecisionOut:
    return DecisionOut.model_validate(d, from_attributes=True)


def _application(session: Session, application_id: int, caller: Caller) -> AccessApplication:
    app = session.get(AccessApplication, application_id)
    # Someone else's application is reported as missing: its existence is not the caller's business.
    if app is None or (app.wallet != caller.wallet and "access:review" not in caller.scopes):
        raise NotFound(f"no application {application_id}")
    return app


@router.post("/applications", status_code=201, responses=problem_responses(400, 409))
def submit(
    body: ApplicationIn,
    caller: Annotated[Caller, require_scope("access:apply", cost="apply")],
    services: ServicesDep,
) -> ApplicationOut:
    """Apply for a tier, describing the use case; a grantor reviews it."""
    top = max(services.api.tiers)
    if body.requested_tier > top:
        raise BadRequest(f"tier {body.requested_tier} does not exist (highest: {top})", kind="unknown-tier")
    now = services.clock()
    with session_scope(services.sessions) as session:
        open_count = session.scalar(
            select(func.count())
            .select_from(AccessApplication)
            .where(
                AccessApplication.wallet == caller.wallet,
                AccessApplication.status.in_(("submitted", "under_review")),
            )
        )
        if (open_count or 0) >= _MAX_OPEN:
            raise Conflict(
                f"{_MAX_OPEN} applications are open already; wait for a decision", kind="too-many-open"
            )
        app = AccessApplication(
            wallet=caller.wallet,
            requested_tier=body.requested_tier,
            use_case=body.use_case,
            contact=body.contact,
            status="submitted",
            created_at=now,
            updated_at=now,
        )
        session.add(app)
        session.flush()
        return _out(app)


@router.get("/applications")
def my_applications(
    caller: Annotated[Caller, require_scope("access:apply", cost="read")], services: ServicesDep
) -> list[ApplicationOut]:
    """Your applications, newest first."""
    with session_scope(services.sessions) as session:
        rows = session.scalars(
            select(AccessApplication)
            .where(AccessApplication.wallet == caller.wallet)
            .order_by(AccessApplication.id.desc())
        )
        return [_out(a) for a in rows]


@router.get("/applications/{application_id}", responses=problem_responses(404))
def application(
    application_id: int,
    caller: Annotated[Caller, require_scope("access:apply", cost="read")],
    services: ServicesDep,
) -> ApplicationOut:
    """One application: yours, or any for a grantor."""
    with session_scope(services.sessions) as session:
        return _out(_application(session, application_id, caller))


@router.get("/review/applications")
def review_queue(
    caller: Annotated[Caller, require_scope("access:review", cost="read")],
    services: ServicesDep,
    status: Annotated[Status | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[ApplicationOut]:
    """All applications (optionally by status), oldest first: the grantors' queue."""
    with session_scope(services.sessions) as session:
        query = select(AccessApplication).order_by(AccessApplication.id).limit(limit)
        if status is not None:
            query = query.where(AccessApplication.status == status)
        return [_out(a) for a in session.scalars(query)]


@router.post("/review/applications/{application_id}/review", responses=problem_responses(404, 409))
def start_review(
    application_id: int,
    body: ReviewIn,
    caller: Annotated[Caller, require_scope("access:review", cost="default")],
    services: ServicesDep,
) -> ApplicationOut:
    """Mark an application as under review, with a note (logged)."""
    with session_scope(services.sessions) as session:
        app = _application(session, application_id, caller)
        _check_reviewable(app, caller)
        app.status, app.updated_at = "under_review", services.clock()
        session.add(_log(services, app.id, app.wallet, caller, "review", note=body.note))
        return _out(app)


@router.post("/review/applications/{application_id}/decision", responses=problem_responses(404, 409, 502))
def decide(
    application_id: int,
    body: DecisionIn,
    caller: Annotated[Caller, require_scope("access:review", cost="default")],
    services: ServicesDep,
) -> DecisionOut:
    """Approve (the tier is granted on chain at once) or reject an application; logged either way."""
    with session_scope(services.sessions) as session:
        app = _application(session, application_id, caller)
        _check_reviewable(app, caller)
        wallet, requested = app.wallet, app.requested_tier
    tier = body.tier or requested
    tx_hash, expires_at = None, None
    if body.approve:
        registry = services.registry()
        chain_max = registry.max_tier()
        if tier > chain_max:
            raise BadRequest(f"tier {tier} is above the registry's maximum {chain_max}", kind="unknown-tier")
        days = body.valid_days or services.api.grant_days_default
        expires_at = services.chain.get().timestamp() + days * 86_400
        receipt = registry.set_tier(
            services.relayer.get(),
            wallet,
            tier,
            expires_at,
            decision_ref(f"application:{application_id}"),
        )
        tx_hash = receipt["transactionHash"].to_0x_hex()
        services.access.invalidate(wallet)
    with session_scope(services.sessions) as session:
        app = _application(session, application_id, caller)
        app.status = "approved" if body.approve else "rejected"
        app.updated_at = services.clock()
        decision = _log(
            services, app.id, wallet, caller, "approve" if body.approve else "reject",
            tier=tier if body.approve else None, expires_at=expires_at, note=body.note, tx_hash=tx_hash,
        )  # fmt: skip
        session.add(decision)
        session.flush()
        return _decision_out(decision)


@router.post("/review/revocations", status_code=201, responses=problem_responses(409, 502))
def revoke(
    body: RevocationIn,
    caller: Annotated[Caller, require_scope("access:review", cost="default")],
    services: ServicesDep,
    registry: AccessRegistryDep,
    relayer: RelayerDep,
) -> DecisionOut:
    """Revoke a wallet's tier on chain now (logged); the API honours it at once, other replicas within the TTL."""
    from web3 import Web3

    wallet = Web3.to_checksum_address(body.wallet)
    now = services.clock()
    receipt = registry.revoke(relayer, wallet, decision_ref(f"revocation:{now}"))
    services.access.invalidate(wallet)
    with session_scope(services.sessions) as session:
        decision = _log(
            services,
            None,
            wallet,
            caller,
            "revoke",
            note=body.note,
            tx_hash=receipt["transactionHash"].to_0x_hex(),
        )
        session.add(decision)
        session.flush()
        return _decision_out(decision)


@router.get("/review/decisions")
def decisions(
    caller: Annotated[Caller, require_scope("access:review", cost="read")],
    services: ServicesDep,
    wallet: Annotated[str | None, Query(pattern=_ADDRESS)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[DecisionOut]:
    """The decision log, newest first (optionally for one wallet)."""
    with session_scope(services.sessions) as session:
        query = select(AccessDecision).order_by(AccessDecision.id.desc()).limit(limit)
        if wallet is not None:
            query = query.where(func.lower(AccessDecision.wallet) == wallet.lower())
        return [_decision_out(d) for d in session.scalars(query)]


def _check_reviewable(app: AccessApplication, caller: Caller) -> None:
    if app.wallet == caller.wallet:
        raise Forbidden("grantors may not review or decide their own applications", kind="self-review")
    if app.status in ("approved", "rejected"):
        raise Conflict(f"application {app.id} is {app.status} already", kind="already-decided")


def _log(
    services, application_id: int | None, wallet: str, caller: Caller, action: str, **fields
) -> AccessDecision:
    return AccessDecision(
        application_id=application_id,
        wallet=wallet,
        reviewer=caller.wallet,
        action=action,
        on_chain=fields.get("tx_hash") is not None,
        at=services.clock(),
        **fields,
    )
