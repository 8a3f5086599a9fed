"""One ASGI middleware around every request: the body-size cap (413), Prometheus metrics, the audit row, and the
chain block its reads are pinned to (`backend.chain.reads`).

It is plain ASGI (no BaseHTTPMiddleware) so it adds no task or stream copy per request. Routes' access decisions
reach it through `scope["state"]["audit"]`, which `require_scope` and `public` fill in.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backend.api.core.audit import AuditLog, AuditRecord
from backend.api.core.errors import problem_response
from backend.chain.reads import pinned_reads

__all__ = ["AUDIT_KEY", "ApiMetrics", "RequestObserver"]

AUDIT_KEY = "audit"
# Probes and scrapes are neither audited nor timed: they would drown the log and the histograms.
_QUIET = frozenset({"/healthz", "/readyz", "/metrics"})


class ApiMetrics:
    """The API's Prometheus series, in a registry of its own (one per app, so tests never collide)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "trustmarket_api_requests_total", "Requests by route and status", ["method", "route", "status"],
            registry=self.registry,
        )  # fmt: skip
        self.latency = Histogram(
            "trustmarket_api_request_seconds", "Request latency by route", ["method", "route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
            registry=self.registry,
        )  # fmt: skip
        self.decisions = Counter(
            "trustmarket_api_access_decisions_total", "Access decisions by scope and outcome", ["scope", "decision"],
            registry=self.registry,
        )  # fmt: skip
        self.units = Counter(
            "trustmarket_api_units_total", "Quota units charged by scope", ["scope"], registry=self.registry
        )


class RequestObserver:
    def __init__(self, app: ASGIApp, *, metrics: ApiMetrics, audit: AuditLog, max_body_bytes: int):
        self.app = app
        self.metrics = metrics
        self.audit = audit
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        declared = _content_length(scope)
        if declared is not None and declared > self.max_body_bytes:
            response = problem_response(
                413, "payload-too-large", "Payload too large",
                f"the body is {declared} bytes; this service accepts at most {self.max_body_bytes}",
                instance=path,
            )  # fmt: skip
            await response(scope, receive, send)
            self._account(scope, path, 413, 0.0)
            return

        status = 500
        if declared is None and scope["method"] not in ("GET", "HEAD", "OPTIONS", "DELETE"):
            # A chunked body carries no length to refuse up front: read it (up to the cap) before the app does.
            body = await _read_capped(receive, self.max_body_bytes)
            if body is None:
                response = problem_response(
                    413, "payload-too-large", "Payload too large",
                    f"the body exceeds the {self.max_body_bytes} bytes this service accepts", instance=path,
                )  # fmt: skip
                await response(scope, receive, send)
                self._account(scope, path, 413, 0.0)
                return
            receive = _replay(body, receive)

        async def observed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        started = time.perf_counter()
        try:
            with pinned_reads():  # every chain read of this request at one block, cached by it
                await self.app(scope, receive, observed_send)
        finally:
            self._account(scope, path, status, time.perf_counter() - started)

    def _account(self, scope: Scope, path: str, status: int, elapsed: float) -> None:
        if path in _QUIET:
            return
        route = scope.get("route")
        template = getattr(route, "path", None) or "unmatched"
        method = scope["method"]
        self.metrics.requests.labels(method, template, str(status)).inc()
        self.metrics.latency.labels(method, template).observe(elapsed)
        info: dict[str, Any] = scope.get("state", {}).get(AUDIT_KEY) or {}
        decision = info.get("decision", "unrouted")
        self.metrics.decisions.labels(info.get("scope") or "-", decision).inc()
        if info.get("cost"):
            self.metrics.units.labels(info.get("scope") or "-").inc(info["cost"])
        self.audit.record(
            AuditRecord(
                at=time.time(),
                wallet=info.get("wallet"),
                method=method,
                path=path[:512],
                scope=info.get("scope"),
                decision=decision,
                reason=(info.get("reason") or None) and str(info["reason"])[:256],
                cost=int(info.get("cost") or 0),
                status=status,
                tier=info.get("tier"),
            )
        )


async def _read_capped(receive: Receive, limit: int) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break  # the client went away; the app will see an empty body
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # later reads wait for the disconnect, as Starlette expects

    return replay


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
