"""Every error the API answers is problem+json (RFC 9457): a type, a title, the status and a detail.

Route code raises `ApiError` subclasses (or lets the other packages' exceptions through: they are mapped here
by class), so no handler ever writes a response body by hand.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi import routing as fastapi_routing
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException as StarletteHTTPException

from backend.errors import TrustmarketError
from rag.errors import RagError

__all__ = [
    "PROBLEM_JSON",
    "ApiError",
    "BadRequest",
    "Conflict",
    "Forbidden",
    "NotFound",
    "PayloadTooLarge",
    "Problem",
    "ServiceUnavailable",
    "TooManyRequests",
    "Unauthorized",
    "Unprocessable",
    "install_error_handlers",
    "problem_response",
    "problem_responses",
]

PROBLEM_JSON = "application/problem+json"
log = logging.getLogger("trustmarket.api")


class ApiError(Exception):
    """An error with its HTTP status; `kind` names the problem type (documented in docs/api.md)."""

    status: int = 400
    kind: str = "bad-request"
    title: str = "Bad request"

    def __init__(
        self, detail: str, *, kind: str | None = None, headers: dict[str, str] | None = None, **extra
    ):
        super().__init__(detail)
        self.detail = detail
        if kind is not None:
            self.kind = kind
        self.headers = headers or {}
        self.extra = extra


class BadRequest(ApiError):
    status, kind, title = 400, "bad-request", "Bad request"


class Unauthorized(ApiError):
    status, kind, title = 401, "unauthenticated", "Not authenticated"

    def __init__(self, detail: str, *, kind: str | None = None, **extra):
        super().__init__(
            detail, kind=kind, headers={"WWW-Authenticate": 'Bearer realm="trustmarket"'}, **extra
        )


class Forbidden(ApiError):
    status, kind, title = 403, "forbidden", "Forbidden"


class NotFound(ApiError):
    status, kind, title = 404, "not-found", "Not found"


class Conflict(ApiError):
    status, kind, title = 409, "conflict", "Conflict"


class PayloadTooLarge(ApiError):
    status, kind, title = 413, "payload-too-large", "Payload too large"


class Unprocessable(ApiError):
    status, kind, title = 422, "unprocessable", "Unprocessable input"


class TooManyRequests(ApiError):
    status, kind, title = 429, "rate-limited", "Too many requests"

    def __init__(self, detail: str, *, retry_after: int, kind: str | None = None, **extra):
        super().__init__(
            detail,
            kind=kind,
            headers={"Retry-After": str(max(1, retry_after))},
            retry_after=retry_after,
            **extra,
        )


class ServiceUnavailable(ApiError):
    status, kind, title = 503, "unavailable", "Service unavailable"


def problem_response(
    status: int,
    kind: str,
    title: str,
    detail: str,
    *,
    instance: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body: dict[str, Any] = {"type": f"/problems/{kind}", "title": title, "status": status, "detail": detail}
    if instance:
        body["instance"] = instance
    body.update({k: v for k, v in extra.items() if v is not None})
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_JSON)


# Other packages' exceptions, by class name anywhere in the MRO (no import of those packages needed here).
_MAPPED: dict[str, tuple[int, str, str]] = {
    "ChainUnavailable": (503, "chain-unavailable", "The chain is unreachable"),
    "WrongChain": (503, "chain-misconfigured", "The chain is not the configured one"),
    "NotDeployed": (503, "chain-misconfigured", "A contract is not deployed"),
    "ArtifactsMissing": (503, "chain-misconfigured", "Contracts are not compiled"),
    "TransactionFailed": (502, "transaction-failed", "The transaction failed"),
    "UnknownProject": (404, "unknown-project", "No such project"),
    "ContractRevert": (409, "contract-revert", "The contract refused"),
    "ChainError": (502, "chain-error", "Chain error"),
    "StoreUnavailable": (503, "store-unavailable", "The content store is unreachable"),
    "ContentNotFound": (404, "content-not-found", "Content not found"),
    "IntegrityError": (502, "integrity-error", "Stored content failed verification"),
    "ConfigError": (503, "misconfigured", "The service is misconfigured"),
    "CodecError": (422, "invalid-safetensors", "Not an acceptable safetensors file"),
    "StoreFullError": (507, "store-full", "The content store is full"),
    "SourceUnavailable": (503, "source-unavailable", "A data source is unreachable"),
    "GeneratorError": (502, "generator-error", "The answer generator failed"),
}


def _mapped(exc: TrustmarketError | RagError) -> tuple[int, str, str]:
    for cls in type(exc).__mro__:
        if cls.__name__ in _MAPPED:
            return _MAPPED[cls.__name__]
    return 400, "bad-request", "Bad request"


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error as problem+json, including FastAPI's own 404/405/422 and unexpected failures."""

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return problem_response(
            exc.status,
            exc.kind,
            exc.title,
            exc.detail,
            instance=request.url.path,
            headers=exc.headers,
            **exc.extra,
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
            for e in exc.errors()
        ]
        return problem_response(
            422, "validation-error", "Invalid request", _first_error(errors),
            instance=request.url.path, errors=errors,
        )  # fmt: skip

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400:
            # Our code raises ApiError only, so a bare 400 is the framework failing to parse the body (bad JSON,
            # bytes that are not UTF-8): a malformed body, answered like every other schema failure.
            return problem_response(
                422, "validation-error", "Invalid request", f"the body cannot be parsed: {exc.detail}",
                instance=request.url.path, errors=[{"loc": ["body"], "msg": str(exc.detail), "type": "parse"}],
            )  # fmt: skip
        title = {404: "Not found", 405: "Method not allowed"}.get(exc.status_code, "HTTP error")
        kind = title.lower().replace(" ", "-") if exc.status_code in (404, 405) else "http-error"
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 405:
            # Starlette names only the first route that matched the path; a path served by several routes
            # (GET and POST on one collection) must list every method.
            headers["Allow"] = ", ".join(sorted(_allowed_methods(request.app, request.url.path)))
        return problem_response(
            exc.status_code, kind, title, str(exc.detail), instance=request.url.path, headers=headers
        )

    @app.exception_handler(TrustmarketError)
    @app.exception_handler(RagError)
    async def _domain(request: Request, exc: TrustmarketError | RagError) -> JSONResponse:
        status, kind, title = _mapped(exc)
        extra = {}
        if hasattr(exc, "error_name"):
            extra["error"] = exc.error_name
        return problem_response(status, kind, title, str(exc), instance=request.url.path, **extra)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem_response(
            500, "internal-error", "Internal error", "an unexpected error occurred", instance=request.url.path
        )


def _first_error(errors: list[dict[str, Any]]) -> str:
    """One line naming the first field at fault (`body.inputs.0.3: Input should be a finite number`)."""
    if not errors:
        return "the request does not match the schema"
    first = errors[0]
    where = ".".join(str(part) for part in first["loc"]) or "request"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {first['msg']}{more}".replace("\n", " ")


class Problem(BaseModel):
    """RFC 9457 problem details (extensions such as `errors` or `retry_after` may follow)."""

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None


_DESCRIPTIONS = {
    400: "Bad request",
    401: "Missing, invalid, expired or revoked session token",
    403: "The tier lacks the scope, or the current terms are not accepted",
    404: "Not found",
    409: "Conflict with the current state (or the contract refused)",
    413: "Input larger than the tier or the service allows",
    422: "The request does not match the schema",
    429: "Rate limit or daily quota reached (see Retry-After)",
    502: "The chain or the store failed",
    503: "A part this route needs is unavailable",
}


_PROBLEM_SCHEMA = Problem.model_json_schema()


def _allowed_methods(app: FastAPI, path: str) -> set[str]:
    contexts = getattr(fastapi_routing, "iter_route_contexts", None)
    routes = contexts(app.routes) if contexts is not None else app.routes
    allowed: set[str] = set()
    for route in routes:
        regex, methods = getattr(route, "path_regex", None), getattr(route, "methods", None)
        if regex is not None and methods and regex.match(path):
            allowed |= set(methods)
    return allowed


def problem_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the problem+json answers a route may give."""
    return {
        code: {
            "description": _DESCRIPTIONS.get(code, "Error"),
            "content": {PROBLEM_JSON: {"schema": _PROBLEM_SCHEMA}},
        }
        for code in codes
    }
