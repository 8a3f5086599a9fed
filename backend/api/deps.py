"""Route dependencies: the services, and structured access as a dependency (`require_scope`).

Every route declares either `require_scope("...")` or `public`; `check_routes_declared` refuses to build an app
with a route that declares neither, so a forgotten declaration fails closed at start-up, not open in production.

`require_scope(scope, cost=...)` admits a request only if, in this order: a bearer token is present (401), it is
a valid, unexpired token of ours (401) that was not revoked by logout (401); the wallet's tier (from chain,
cached) grants the scope (403); the wallet accepted the current terms if the scope needs them (403); and the
request fits the tier's rate limit and daily quota at the endpoint's cost (429 with Retry-After).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request, Security
from fastapi import routing as fastapi_routing
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from backend.api.core.access import Caller, scopes_of
from backend.api.core.config import ACCOUNT_SCOPES, ALL_SCOPES, REVIEW_SCOPES
from backend.api.core.errors import ApiError, Forbidden, Unauthorized
from backend.api.core.observe import AUDIT_KEY
from backend.api.services import ApiServices
from backend.errors import ConfigError

__all__ = [
    "Services",
    "check_routes_declared",
    "get_services",
    "public",
    "require_scope",
    "set_audit",
]

_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="SIWE session",
    description="A session token from POST /v1/auth/login (Sign-In with Ethereum).",
)


async def get_services(request: Request) -> ApiServices:
    # async: a sync dependency would cost every request a trip through the thread pool.
    return request.app.state.services


Services = Annotated[ApiServices, Depends(get_services)]
Bearer = Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)]


async def public(request: Request) -> None:
    """Declares a route open to anyone (still audited and metered)."""
    request.state.audit = {"decision": "public"}


public.access_marker = "public"  # type: ignore[attr-defined]


def require_scope(scope: str, *, cost: str = "default") -> Any:
    """A dependency that admits the request (returning the `Caller`) or raises 401/403/429; see module doc."""
    if scope not in ALL_SCOPES:
        raise ConfigError(f"unknown scope {scope!r}")
    needs_terms = scope not in ACCOUNT_SCOPES and scope not in REVIEW_SCOPES

    async def gate(request: Request, services: Services, credentials: Bearer) -> Caller:
        info: dict[str, Any] = {"scope": scope, "decision": "deny"}
        request.state.audit = info
        try:
            caller = await _admit(services, credentials, scope, needs_terms, cost, info)
        except ApiError as exc:
            info["reason"] = exc.kind
            raise
        except Exception as exc:  # chain or database down: still audited, then mapped by the error handlers
            info["reason"] = type(exc).__name__
            raise
        info["decision"] = "allow"
        return caller

    gate.access_marker = scope  # type: ignore[attr-defined]
    gate.__name__ = f"require_{scope.replace(':', '_')}"
    return Depends(gate)


async def _admit(
    services: ApiServices,
    credentials: HTTPAuthorizationCredentials | None,
    scope: str,
    needs_terms: bool,
    cost_name: str,
    info: dict[str, Any],
) -> Caller:
    # The common case does no I/O and stays on the event loop; whatever may block (a revocation sync, a tier
    # lookup on the node, a quota reservation) goes to the thread pool.
    if credentials is None or credentials.scheme.lower() != "bearer" or not credentials.credentials:
        raise Unauthorized("a bearer session token is required (POST /v1/auth/login)", kind="unauthenticated")
    claims = services.tokens.decode(credentials.credentials)
    info["wallet"] = claims.wallet
    if services.revocations.stale():
        await run_in_threadpool(services.revocations.sync)
    services.revocations.check(claims)
    grant = services.access.peek(claims.wallet)
    if grant is None:
        grant = await run_in_threadpool(services.access.get, claims.wallet)
    info["tier"] = grant.tier
    policy = services.api.policy(grant.tier)
    scopes = scopes_of(grant, services.api)
    if scope not in scopes:
        raise Forbidden(
            f"tier {grant.tier} ({policy.name}) does not include scope {scope!r}; apply at /v1/access/applications",
            kind="insufficient-scope",
            required_scope=scope,
        )
    if needs_terms and not grant.accepted_current_terms:
        raise Forbidden(
            "accept the current terms first (GET /v1/terms, then POST /v1/terms/accept)",
            kind="terms-not-accepted",
        )
    cost = services.api.cost(cost_name)
    if not services.quotas.try_local(claims.wallet, cost):
        await run_in_threadpool(services.quotas.consume, claims.wallet, policy, cost)
    info["cost"] = cost
    return Caller(claims.wallet, grant, policy, scopes, claims.jti, claims.expires_at)


def _markers(dependant: Dependant) -> Iterator[str]:
    for dep in dependant.dependencies:
        marker = getattr(dep.call, "access_marker", None)
        if marker is not None:
            yield marker
        yield from _markers(dep)


def check_routes_declared(app: FastAPI) -> dict[str, list[str]]:
    """Every route's declared access ('public' or its scopes); raises `ConfigError` if one declares none."""
    declared: dict[str, list[str]] = {}
    for route in _api_routes(app):
        markers = sorted(set(_markers(route.dependant)))
        if not markers:
            raise ConfigError(
                f"route {sorted(route.methods)} {route.path} declares no access (denied by default)"
            )
        for method in sorted(route.methods):
            declared[f"{method} {route.path}"] = markers
    return declared


def _api_routes(app: FastAPI) -> Iterator[Any]:
    """Every API route with its effective path and dependencies (included routers resolved)."""
    contexts = getattr(fastapi_routing, "iter_route_contexts", None)
    if contexts is None:  # FastAPI before lazily included routers: the routes are flat already
        yield from (r for r in app.routes if isinstance(r, APIRoute))
        return
    for context in contexts(app.routes):
        if isinstance(context.original_route, APIRoute):
            yield context


def set_audit(request: Request, **fields: Any) -> None:
    """Add detail to the request's audit entry (e.g. the wallet on a public login route)."""
    info = getattr(request.state, AUDIT_KEY, None)
    if info is None:
        info = {}
        request.state.audit = info
    info.update(fields)
