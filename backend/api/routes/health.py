"""Liveness, readiness (chain and store reachable) and Prometheus metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from backend.api.core.errors import problem_response, problem_responses
from backend.api.deps import GatedRoute, ServicesDep, public
from backend.api.services import Missing

__all__ = ["router"]

# The CID of zero bytes (UnixFS, CIDv0): a cheap question every store can answer.
_EMPTY_FILE_CID = "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH"

router = APIRouter(route_class=GatedRoute, tags=["health"], dependencies=[Depends(public)])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process answers."""
    return {"status": "ok"}


@router.get("/readyz", responses=problem_responses(503))
def readyz(services: ServicesDep) -> Any:
    """Ready when the chain answers with the configured contracts and the content store is reachable."""
    checks: dict[str, str] = {}
    try:
        services.chain.get().check()
        checks["chain"] = "ok"
    except Exception as exc:  # any failure means not ready; the reason is the answer
        checks["chain"] = str(exc)
    store = services.store.peek()
    if store is None or isinstance(store, Missing):
        checks["store"] = store.reason if isinstance(store, Missing) else "not configured"
    else:
        try:
            store.has(_EMPTY_FILE_CID)  # any answer will do: it proves the store can be read
            checks["store"] = "ok"
        except Exception as exc:
            checks["store"] = str(exc)
    if all(v == "ok" for v in checks.values()):
        return JSONResponse({"status": "ready", "checks": checks})
    failing = ", ".join(f"{k}: {v}" for k, v in checks.items() if v != "ok")
    return problem_response(503, "not-ready", "Not ready", failing, instance="/readyz", checks=checks)


@router.get("/metrics", response_class=Response, responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}})
def metrics(services: ServicesDep) -> Response:
    """Prometheus exposition of the API's request, latency, decision and quota series."""
    return Response(generate_latest(services.metrics.registry), media_type=CONTENT_TYPE_LATEST)
