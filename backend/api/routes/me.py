"""The signed-in wallet: its tier, scopes, terms status and usage."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter
from pydantic import BaseModel

from backend.api.core.access import Caller
from backend.api.core.errors import problem_responses
from backend.api.deps import GatedRoute, ServicesDep, require_scope

__all__ = ["router"]

router = APIRouter(
    route_class=GatedRoute, prefix="/v1", tags=["me"], responses=problem_responses(401, 403, 429, 503)
)


class UsageView(BaseModel):
    requests_this_minute: int
    requests_per_minute: int
    units_today: int
    units_per_day: int
    day_resets_at: int


class Me(BaseModel):
    address: str
    tier: int
    tier_name: str
    expires_at: int
    grantor: bool
    terms_accepted: bool
    scopes: list[str]
    limits: dict[str, int]
    usage: UsageView


@router.get("/me")
def me(caller: Annotated[Caller, require_scope("account:read", cost="free")], services: ServicesDep) -> Me:
    """Who you are to the API: tier (from chain, cached briefly), scopes, limits and today's usage."""
    usage = services.quotas.usage(caller.wallet, caller.policy)
    policy = caller.policy
    return Me(
        address=caller.wallet,
        tier=caller.tier,
        tier_name=policy.name,
        expires_at=caller.grant.expires_at,
        grantor=caller.grant.grantor,
        terms_accepted=caller.grant.accepted_current_terms,
        scopes=sorted(caller.scopes),
        limits={
            "max_predict_rows": policy.max_predict_rows,
            "max_upload_bytes": policy.max_upload_bytes,
            "max_query_chars": policy.max_query_chars,
            "max_text_chars": policy.max_text_chars,
        },
        usage=UsageView(
            requests_this_minute=usage.minute_used,
            requests_per_minute=usage.minute_limit,
            units_today=usage.day_used,
            units_per_day=usage.day_limit,
            day_resets_at=usage.day_resets_at,
        ),
    )
