"""The FastAPI application: structured access to trustmarket's capabilities (see docs/api.md).

`create_app(settings)` builds everything from settings; tests pass their own services
(`create_app(settings, services=build_services(settings, api, chain=..., relayer=...))`).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI
from starlette.concurrency import run_in_threadpool

from backend.api.core.config import ApiSettings
from backend.api.core.errors import ApiError, install_error_handlers
from backend.api.core.observe import RequestObserver
from backend.api.deps import check_routes_declared
from backend.api.explorer import install as install_explorer
from backend.api.routes import applications, auth, health, me, predict, projects, rag, terms, uploads
from backend.api.services import ApiServices, build_services, keep_out_of_collections
from backend.settings import Settings, get_settings
from rag.feedback import FeedbackQueue, FlushTimer
from rag.orchestrator import Orchestrator

__all__ = ["ROUTERS", "create_app"]

log = logging.getLogger("trustmarket.api")

# Every router the app serves, registered explicitly (in this order: OpenAPI lists them so).
ROUTERS: tuple[APIRouter, ...] = (
    health.router,
    auth.router,
    me.router,
    terms.router,
    applications.router,
    projects.router,
    predict.router,
    uploads.router,
    rag.router,
)

_DESCRIPTION = """
Structured access to trustmarket: sign in with Ethereum, hold a tier granted on chain, accept the terms, and use
capabilities at arm's length under rate limits and daily quotas. Trained models are queried, never handed out.
Errors are `application/problem+json` (RFC 9457).
"""


def create_app(
    settings: Settings | None = None, api: ApiSettings | None = None, *, services: ApiServices | None = None
) -> FastAPI:
    """The API over `services` (built from `settings` and `api` if not given)."""
    settings = settings or get_settings()
    services = services or build_services(settings, api)

    def feedback_queue() -> FeedbackQueue | None:
        try:
            return services.feedback.get()
        except ApiError:  # no chain yet: the timer asks again on its next tick
            return None

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # dRAG feedback goes on chain from this thread, never from a request; one worker at a time (a lease).
        timer = FlushTimer(feedback_queue, services.api.feedback_flush_s).start()
        keep_out_of_collections()  # the app as built: it lives as long as the server
        try:
            yield
        finally:
            # The server has drained its requests by now (uvicorn waits for them before the lifespan ends).
            await run_in_threadpool(timer.stop)
            # Unspent quota blocks go back, so a restart charges nobody for what they did not use.
            await run_in_threadpool(services.quotas.release)
            await run_in_threadpool(services.audit.flush)  # the last requests' rows are written
            rag = services.rag.peek()
            if isinstance(rag, Orchestrator):
                await rag.aclose()  # its connections to the nodes, opened on this loop
                rag.close()  # its compute process ends with the server
            await run_in_threadpool(app.state.explorer.close)  # the background verifier stops

    app = FastAPI(
        title="trustmarket API",
        version="1",
        description=_DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # served below from the installed package: FastAPI's default loads Swagger UI from a CDN
        redoc_url=None,
        openapi_tags=[
            {"name": "auth", "description": "Sign-In with Ethereum (EIP-4361) and session tokens"},
            {"name": "me", "description": "Your tier, scopes, limits and usage"},
            {"name": "terms", "description": "Terms of use, accepted by EIP-712 signature on chain"},
            {"name": "access", "description": "Applications for a tier, reviews and decisions"},
            {"name": "trainers", "description": "Upload updates, projects and rounds, gasless submissions"},
            {"name": "models", "description": "Query trained models (never download them)"},
            {"name": "rag", "description": "Reliability-weighted retrieval over registered sources"},
            {"name": "health", "description": "Liveness, readiness, metrics"},
        ],
    )
    app.state.services = services
    install_error_handlers(app)
    for router in ROUTERS:
        app.include_router(router)
    install_explorer(app, services)  # the web explorer at / and below (docs/explorer.md)
    _serve_docs(app)
    app.add_middleware(
        RequestObserver,
        metrics=services.metrics,
        audit=services.audit,
        max_body_bytes=services.api.max_body_bytes,
    )
    check_routes_declared(app)
    return app


def _serve_docs(app: FastAPI) -> None:
    """Swagger UI at /docs from the installed `swagger-ui-bundle-v2` package, so the page works offline."""
    from fastapi.openapi.docs import get_swagger_ui_html
    from starlette.requests import Request
    from starlette.responses import HTMLResponse
    from starlette.staticfiles import StaticFiles
    from swagger_ui_bundle import swagger_ui_path

    app.mount("/docs/assets", StaticFiles(directory=swagger_ui_path), name="swagger-ui")

    async def docs(request: Request) -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title}: docs",
            swagger_js_url="/docs/assets/swagger-ui-bundle.js",
            swagger_css_url="/docs/assets/swagger-ui.css",
            swagger_favicon_url="/docs/assets/favicon-32x32.png",
        )

    app.add_route("/docs", docs, include_in_schema=False)
