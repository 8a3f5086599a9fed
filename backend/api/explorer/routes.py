"""The explorer's pages: server-rendered HTML at `/` and below, open to anyone (everything shown is on chain or
in round reports that anyone verifying a round reads), plus the live stream of new blocks.

Weights are never served: a round links to its report (JSON, verified against the chain's sha256) and to a page
about each update (its CID, sha256, tensors and metadata), not to the update's bytes. Data behind a scope stays
behind `/v1/`.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from backend.api.core.errors import ApiError
from backend.api.deps import public
from backend.api.explorer import series, words
from backend.api.explorer.explain import explain_round, rule_words
from backend.api.explorer.ledger import UnknownEntity
from backend.api.explorer.owner import owner_actions
from backend.api.explorer.service import TEMPLATES_DIR, Explorer
from backend.api.explorer.trainers import trainer_view
from backend.api.explorer.updates import describe_update
from backend.chain.errors import ChainError
from backend.errors import TrustmarketError

__all__ = ["router", "templates"]

router = APIRouter(include_in_schema=False, dependencies=[Depends(public)])
templates = Jinja2Templates(directory=str(TEMPLATES_DIR))
for _name in (
    "ether",
    "number",
    "percent",
    "timestamp",
    "duration",
    "address_short",
    "reason_title",
    "metric_title",
):
    templates.env.filters[_name] = getattr(words, _name)
templates.env.filters["rule_words"] = rule_words
templates.env.filters["defenses"] = words.defense_words
templates.env.filters["hex"] = lambda b: b.hex() if isinstance(b, bytes | bytearray) else str(b)

_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")


def explorer(request: Request) -> Explorer:
    return request.app.state.explorer


class PageError(Exception):
    def __init__(self, status: int, title: str, detail: str):
        super().__init__(detail)
        self.status, self.title, self.detail = status, title, detail


def _page(request: Request, template: str, build: Callable[[], dict[str, Any]]) -> Response:
    """Render `template` with what `build()` returns; every failure becomes an HTML page with its status."""
    ex = explorer(request)
    try:
        context = build()
        head = ex.parts().ledger.head()
        status = 200
    except PageError as exc:
        context, head, status = {"title": exc.title, "detail": exc.detail}, None, exc.status
        template = "error.html"
    except UnknownEntity as exc:
        context, head, status = {"title": "Not found", "detail": str(exc)}, None, 404
        template = "error.html"
    except ApiError as exc:  # a part the API could not build (no chain configured, store missing)
        context, head, status = {"title": "Unavailable", "detail": exc.detail}, None, exc.status
        template = "error.html"
    except (ChainError, TrustmarketError) as exc:
        detail = f"the chain could not be read: {exc}"
        context, head, status = {"title": "Chain unavailable", "detail": detail}, None, 503
        template = "error.html"
    context.update(head=head, charts=ex.charts_available, path=request.url.path)
    return templates.TemplateResponse(request, template, context, status_code=status)


def _int(value: str, what: str) -> int:
    if not value.isdigit() or len(value) > 20:
        raise PageError(404, "Not found", f"{what} must be a whole number, not {value!r}")
    return int(value)


def _address(value: str) -> str:
    if not _ADDRESS.match(value):
        raise PageError(404, "Not found", f"{value!r} is not an address (0x and 40 hex digits)")
    from web3 import Web3

    return Web3.to_checksum_address(value)


@router.get("/", response_class=HTMLResponse)
def projects_page(request: Request) -> Response:
    def build() -> dict[str, Any]:
        ledger = explorer(request).parts().ledger
        return {"projects": [ledger.project(i) for i in reversed(ledger.project_ids())]}

    return _page(request, "projects.html", build)


@router.get("/projects/{project_id}", response_class=HTMLResponse)
def project_page(request: Request, project_id: str) -> Response:
    def build() -> dict[str, Any]:
        parts = explorer(request).parts()
        view = parts.ledger.project(_int(project_id, "a project id"))
        now = parts.ledger.head().timestamp
        return {
            "view": view,
            "now": now,
            "verdicts": _verdicts(parts, view),
            "actions": owner_actions(view, now),
            "chart_list": [
                series.accuracy_loss(view),
                series.pool_paid(view),
                series.cumulative_shares(view),
            ],
        }

    return _page(request, "project.html", build)


def _verdicts(parts, view) -> dict[int, Any]:
    return {
        r.round: parts.verifications.verdict(r.project_id, r.round, r.info.result_digest)
        for r in view.rounds
        if r.finalized and r.info is not None
    }


@router.get("/projects/{project_id}/rounds/{round_index}", response_class=HTMLResponse)
def round_page(request: Request, project_id: str, round_index: str) -> Response:
    def build() -> dict[str, Any]:
        parts = explorer(request).parts()
        ledger = parts.ledger
        view = ledger.project(_int(project_id, "a project id"))
        row = ledger.round_row(view.info.project_id, _int(round_index, "a round"))
        verdict = _verdicts(parts, view).get(row.round)
        return {
            "view": view,
            "row": row,
            "now": ledger.head().timestamp,
            "trainers": explain_round(ledger, view, row),
            "verdict": verdict,
        }

    return _page(request, "round.html", build)


@router.get("/projects/{project_id}/rounds/{round_index}/report.json")
def report_json(request: Request, project_id: str, round_index: str) -> Response:
    """The round report as stored, served only if its bytes match the sha256 on chain."""
    try:
        ledger = explorer(request).parts().ledger
        row = ledger.round_row(_int(project_id, "a project id"), _int(round_index, "a round"))
    except (PageError, UnknownEntity) as exc:
        return JSONResponse({"error": str(exc)}, status_code=404)
    except (ChainError, TrustmarketError, ApiError) as exc:
        return JSONResponse({"error": f"the chain could not be read: {exc}"}, status_code=503)
    if row.info is None:
        return JSONResponse({"error": f"round {row.round} is not finalized: it has no report yet"}, 404)
    fetched = ledger.content.json(row.info.report_cid, row.info.report_sha256)
    if not fetched.ok:
        return JSONResponse({"error": f"report {row.info.report_cid}: {fetched.error}"}, status_code=502)
    return JSONResponse(fetched.document, headers={"X-Content-SHA256": row.info.report_sha256})


@router.get("/projects/{project_id}/rounds/{round_index}/updates/{address}", response_class=HTMLResponse)
def update_page(request: Request, project_id: str, round_index: str, address: str) -> Response:
    def build() -> dict[str, Any]:
        ledger = explorer(request).parts().ledger
        view = ledger.project(_int(project_id, "a project id"))
        row = ledger.round_row(view.info.project_id, _int(round_index, "a round"))
        trainer = _address(address)
        submission = ledger.submissions(view.info.project_id, row.round).get(trainer)
        if submission is None:
            raise UnknownEntity(f"{trainer} submitted no update to round {row.round} of project {project_id}")
        return {
            "view": view,
            "row": row,
            "trainer": trainer,
            "submission": submission,
            "update": describe_update(ledger, view, row, submission),
        }

    return _page(request, "update.html", build)


@router.get("/trainers", response_class=HTMLResponse)
def trainer_lookup(request: Request, address: str = "") -> Response:
    """The header's look-up form: straight to the trainer's page, or a page that says what is wrong."""
    value = address.strip()

    def build() -> dict[str, Any]:
        _address(value)  # raises the page's error for anything but an address
        return {}

    if _ADDRESS.match(value):
        return RedirectResponse(f"/trainers/{value}", status_code=303)
    return _page(request, "error.html", build)


@router.get("/trainers/{address}", response_class=HTMLResponse)
def trainer_page(request: Request, address: str) -> Response:
    def build() -> dict[str, Any]:
        ledger = explorer(request).parts().ledger
        return {"trainer": trainer_view(ledger, _address(address))}

    return _page(request, "trainer.html", build)


@router.get("/sources", response_class=HTMLResponse)
def sources_page(request: Request) -> Response:
    def build() -> dict[str, Any]:
        sources = explorer(request).parts().sources
        found = sources.sources() if sources else []
        return {
            "registry": sources.registry.address if sources else None,
            "sources": found,
            "rules": sources.rules if found and sources else None,
            "epoch": sources.current_epoch() if found and sources else None,
            "batches": sources.batches() if found and sources else 0,
            "canaries": sources.canaries() if found and sources else [],
            "chart_list": [series.reliability_over_time(found)] if found else [],
        }

    return _page(request, "sources.html", build)


@router.get("/sources/{source_id}", response_class=HTMLResponse)
def source_page(request: Request, source_id: str) -> Response:
    def build() -> dict[str, Any]:
        sources = explorer(request).parts().sources
        if sources is None:
            raise PageError(404, "Not found", "this deployment has no SourceRegistry")
        found = sources.source(_int(source_id, "a source id"))
        if found is None:
            raise UnknownEntity(f"no source {source_id} (sources are 1..{len(sources.sources())})")
        return {
            "source": found,
            "rules": sources.rules,
            "epoch": sources.current_epoch(),
            "now": explorer(request).parts().ledger.head().timestamp,
            "chart_list": [series.reliability_over_time([found])],
        }

    return _page(request, "source.html", build)


@router.get("/explorer/head")
def head(request: Request) -> Response:
    """The newest block the explorer sees (pages poll this where server-sent events are not available)."""
    try:
        h = explorer(request).parts().ledger.head()
    except (ChainError, TrustmarketError, ApiError) as exc:
        return JSONResponse({"error": str(exc)}, status_code=503)
    return JSONResponse({"number": h.number, "timestamp": h.timestamp})


async def block_stream(ex: Explorer, is_disconnected: Callable[[], Any]) -> AsyncIterator[str]:
    """Server-sent events: `block` whenever the head moves (and once at the start), a comment as a
    heartbeat, until the client goes or `stream_max_s` passes (the browser then reconnects)."""
    settings = ex.settings
    yield f"retry: {int(settings.stream_poll_s * 2000)}\n\n"
    last: int | None = None
    ends = time.monotonic() + settings.stream_max_s
    beat = time.monotonic()
    while time.monotonic() < ends and not await is_disconnected():
        try:
            h = await run_in_threadpool(ex.stream_head)
        except (ChainError, TrustmarketError, ApiError) as exc:
            yield f"event: unavailable\ndata: {json.dumps({'error': str(exc)})}\n\n"
        else:
            if h.number != last:
                last = h.number
                yield f"event: block\ndata: {json.dumps({'number': h.number, 'timestamp': h.timestamp})}\n\n"
        if time.monotonic() - beat > 15:
            beat = time.monotonic()
            yield ": still here\n\n"
        await asyncio.sleep(settings.stream_poll_s)


@router.get("/explorer/events")
async def events(request: Request) -> Response:
    return StreamingResponse(
        block_stream(explorer(request), request.is_disconnected),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
