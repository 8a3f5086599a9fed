"""Route dependencies: typed aliases for the services and their parts, and structured access (`require_scope`).

Routes take what they use by type, as in the FastAPI full-stack template's `api/deps.py`: `ServicesDep`,
`ChainDep`, `RelayerDep`, `StoreDep`, `ModelsDep`, `MarketDep`, `RagDep`, `AccessRegistryDep`. A part that is
missing answers 503 with the reason before the route runs; one built on first use is built off the event loop.

Every route declares either `require_scope("...")` or `public`; `check_routes_declared` refuses to build an app
with a route that declares neither, so a forgotten declaration fails closed at start-up, not open in production.

`require_scope(scope, cost=...)` admits a request only if, in this order: a bearer token is present (401), it is
a valid, unexpired token of ours (401) that was not revoked by logout (401); the wallet's tier (from chain,
cached) grants the scope (403); the wallet accepted the current terms if the scope needs them (403); and the
request fits the tier's rate limit and daily quota at the endpoint's cost (429 with Retry-After).

Routers use `GatedRoute`, which admits the caller before FastAPI reads and parses the body: an unauthenticated
request with a malformed body is 401 (not 422), and an authenticated one's 422 is audited with its wallet.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterator
from typing import Annotated, Any

from eth_account.signers.local import LocalAccount
from fastapi import Depends, FastAPI, Request, Response, Security
from fastapi import routing as fastapi_routing
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from backend.api.core.access import Caller, scopes_of
from backend.api.core.config import ACCOUNT_SCOPES, ALL_SCOPES, REVIEW_SCOPES
from backend.api.core.errors import ApiError, Forbidden, Unauthorized
from backend.api.core.observe import AUDIT_KEY
from backend.api.inference import ModelCache
from backend.api.services import ApiServices, Part
from backend.chain.access_registry import AccessRegistry
from backend.chain.client import ChainClient
from backend.chain.training_market import TrainingMarket
from backend.errors import ConfigError
from backend.storage import ContentStore
from rag.orchestrator import Orchestrator

__all__ = [
    "AccessRegistryDep",
    "ChainDep",
    "GatedRoute",
    "MarketDep",
    "ModelsDep",
    "RagDep",
    "RelayerDep",
    "ServicesDep",
    "StoreDep",
    "caller_refund",
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


ServicesDep = Annotated[ApiServices, Depends(get_services)]
Bearer = Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)]


def _part(name: str) -> Callable[[ApiServices], Coroutine[Any, Any, Any]]:
    async def dependency(services: ServicesDep) -> Any:
        part: Part[Any] = getattr(services, name)
        # Built already: no I/O, stay on the loop. Lazy: its first build may read the chain or load a model.
        return part.get() if part.ready else await run_in_threadpool(part.get)

    dependency.__name__ = f"get_{name}"
    return dependency


async def get_access_registry(chain: Annotated[ChainClient, Depends(_part("chain"))]) -> AccessRegistry:
    return AccessRegistry(chain)


ChainDep = Annotated[ChainClient, Depends(_part("chain"))]
RelayerDep = Annotated[LocalAccount, Depends(_part("relayer"))]
StoreDep = Annotated[ContentStore, Depends(_part("store"))]
ModelsDep = Annotated[ModelCache, Depends(_part("models"))]
MarketDep = Annotated[TrainingMarket, Depends(_part("market"))]
RagDep = Annotated[Orchestrator, Depends(_part("rag"))]
AccessRegistryDep = Annotated[AccessRegistry, Depends(get_access_registry)]


async def public(request: Request) -> None:
    """Declares a route open to anyone (still audited and metered)."""
    request.state.audit = {"decision": "public"}


public.access_marker = "public"  # type: ignore[attr-defined]


def require_scope(scope: str, *, cost: str = "default") -> Any:
    """A dependency that admits the request (returning the `Caller`) or raises 401/403/429; see module doc."""
    if scope not in ALL_SCOPES:
        raise ConfigError(f"unknown scope {scope!r}")
    needs_terms = scope not in ACCOUNT_SCOPES and scope not in REVIEW_SCOPES

    async def admit(
        request: Request, services: ApiServices, credentials: HTTPAuthorizationCredentials | None
    ) -> Caller:
        admitted = getattr(request.state, "caller", None)
        if admitted is not None:  # GatedRoute admitted it before the body was read
            return admitted
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
        request.state.caller = caller
        return caller

    async def gate(request: Request, services: ServicesDep, credentials: Bearer) -> Caller:
        return await admit(request, services, credentials)

    async def admit_early(request: Request) -> None:
        await admit(request, request.app.state.services, await _bearer(request))

    gate.access_marker = scope  # type: ignore[attr-defined]
    gate.admit_early = admit_early  # type: ignore[attr-defined]
    gate.__name__ = f"require_{scope.replace(':', '_')}"
    return Depends(gate)


class GatedRoute(APIRoute):
    """A route whose access gate runs before FastAPI reads the body (authenticate first, then validate)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        calls: list[Any] = [d.call for d in _walk(self.dependant)]
        early = next((call.admit_early for call in calls if hasattr(call, "admit_early")), None)
        if early is None:
            return handler

        async def gated(request: Request) -> Response:
            await early(request)
            try:
                response = await handler(request)
            except Exception as exc:
                if not isinstance(exc, ApiError) or exc.status >= 500:
                    _refund(request)  # the service failed the caller: the request costs nothing
                raise
            if response.status_code >= 500:
                _refund(request)
            return response

        return gated


def _refund(request: Request) -> None:
    caller: Caller | None = getattr(request.state, "caller", None)
    if caller is not None:
        caller_refund(request.app.state.services, caller)()


def _walk(dependant: Dependant) -> Iterator[Dependant]:
    for dep in dependant.dependencies:
        yield dep
        yield from _walk(dep)


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
            "accept the current terms first: GET /v1/terms/acceptance gives the EIP-712 payload to sign, "
            "POST /v1/terms/accept sends the signature",
            kind="terms-not-accepted",
        )
    cost = services.api.cost(cost_name)
    if not services.quotas.try_local(claims.wallet, cost):
        await run_in_threadpool(services.quotas.consume, claims.wallet, policy, cost)
    info["cost"] = cost
    return Caller(claims.wallet, grant, policy, scopes, claims.jti, claims.expires_at, cost, info)


def caller_refund(services: ApiServices, caller: Caller) -> Callable[[], None]:
    """What gives `caller` back its charge when the service refuses or fails after admission (503 busy, a 5xx)."""

    def refund() -> None:
        if caller.audit.get("cost"):  # once: the audit entry's cost is zero after a refund
            services.quotas.refund(caller.wallet, caller.cost)
            caller.audit["cost"] = 0

    return refund


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
