"""The app's frame: problem+json everywhere, body caps, the audit log, metrics, fail-closed route declarations."""

from __future__ import annotations

import pytest
from api_helpers import wallet
from fastapi import APIRouter, Depends, FastAPI
from sqlalchemy import select

from backend.api import ApiSettings
from backend.api.core.tables import AuditEntry
from backend.api.deps import check_routes_declared, public, require_scope
from backend.api.services import Missing
from backend.errors import ConfigError

pytestmark = [pytest.mark.chain, pytest.mark.both_databases]


def test_unknown_route_and_method_are_problems(api):
    missing = api.client.get("/v1/nothing-here")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    wrong = api.client.delete("/v1/me")
    assert wrong.status_code == 405
    assert wrong.json()["status"] == 405
    # A path served by two routes names both methods.
    both = api.client.put("/v1/access/applications")
    assert both.headers["allow"] == "GET, POST"


def test_unparseable_body_is_422_problem(api):
    reply = api.client.post(
        "/v1/auth/login", content=b"\x7f\xff\xfe", headers={"Content-Type": "application/json"}
    )
    assert reply.status_code == 422
    assert reply.headers["content-type"] == "application/problem+json"
    assert reply.json()["type"] == "/problems/validation-error"


def test_oversized_body_is_413_before_reading(api):
    body = b"x" * (api.services.api.max_body_bytes + 1)
    reply = api.client.post("/v1/auth/login", content=body, headers={"Content-Type": "application/json"})
    assert reply.status_code == 413
    assert reply.headers["content-type"] == "application/problem+json"
    assert reply.json()["type"] == "/problems/payload-too-large"


def test_oversized_chunked_body_is_413(api):
    limit = api.services.api.max_body_bytes

    def chunks():
        for _ in range(limit // 4096 + 2):
            yield b"x" * 4096

    reply = api.client.post("/v1/auth/login", content=chunks(), headers={"Content-Type": "application/json"})
    assert reply.status_code == 413


def test_every_request_is_audited(api):
    user, headers = api.member("audited", tier=1)
    api.client.get("/v1/rag/sources", headers=headers)
    api.client.get("/v1/access/review/applications", headers=headers)
    api.client.get("/v1/me")
    api.client.get("/healthz")  # probes are not audited
    api.services.audit.flush()
    with api.services.sessions() as session:
        rows = session.scalars(select(AuditEntry).order_by(AuditEntry.id)).all()
    seen = [(r.path, r.wallet, r.scope, r.decision, r.reason, r.cost, r.status) for r in rows]
    assert ("/v1/rag/sources", user.address, "rag:sources", "allow", None, 1, 200) in seen
    assert (
        "/v1/access/review/applications",
        user.address,
        "access:review",
        "deny",
        "insufficient-scope",
        0,
        403,
    ) in seen
    assert ("/v1/me", None, "account:read", "deny", "unauthenticated", 0, 401) in seen
    assert ("/v1/auth/login", user.address, None, "login", None, 0, 200) in seen
    assert not [r for r in rows if r.path == "/healthz"]


def test_metrics_count_requests_and_decisions(api):
    _, headers = api.member("metered", tier=1)
    api.client.get("/v1/rag/sources", headers=headers)
    text = api.client.get("/metrics").text
    assert 'trustmarket_api_requests_total{method="GET",route="/v1/rag/sources",status="200"} 1.0' in text
    assert 'trustmarket_api_access_decisions_total{decision="allow",scope="rag:sources"} 1.0' in text
    assert 'trustmarket_api_units_total{scope="rag:sources"} 1.0' in text


def test_readyz_reports_each_part(api):
    reply = api.client.get("/readyz")
    assert reply.status_code == 200
    assert reply.json() == {"status": "ready", "checks": {"chain": "ok", "store": "ok"}}
    api.services.store.set(Missing("store", "the Kubo node at 127.0.0.1:5001 is down"))
    down = api.client.get("/readyz")
    assert down.status_code == 503
    assert down.headers["content-type"] == "application/problem+json"
    assert down.json()["checks"] == {
        "chain": "ok",
        "store": "the Kubo node at 127.0.0.1:5001 is down",
    }


def test_routes_without_declared_access_fail_closed():
    app = FastAPI()
    open_router = APIRouter()

    @open_router.get("/forgotten")
    def forgotten() -> dict:
        return {}

    app.include_router(open_router)
    with pytest.raises(ConfigError, match="/forgotten"):
        check_routes_declared(app)


def test_declared_routes_are_listed(api):
    declared = check_routes_declared(api.client.app)
    assert declared["GET /v1/rag/sources"] == ["rag:sources"]
    assert declared["POST /v1/auth/nonce"] == ["public"]
    assert all(markers for markers in declared.values())
    app = FastAPI()
    app.get("/ok", dependencies=[Depends(public)])(lambda: {})
    app.get("/scoped", dependencies=[require_scope("rag:query")])(lambda: {})
    assert set(check_routes_declared(app)) == {"GET /ok", "GET /scoped"}


def test_unknown_scope_is_a_config_error():
    with pytest.raises(ConfigError):
        require_scope("everything:please")


def test_secrets_are_required_outside_development():
    with pytest.raises(ConfigError, match="required"):
        ApiSettings(environment="production").signing_secret()
    with pytest.raises(ConfigError, match="32 bytes"):
        ApiSettings(jwt_secret="short").signing_secret()
    assert len(ApiSettings().signing_secret()) == 32


def test_tier_table_must_be_complete():
    with pytest.raises(ValueError):
        ApiSettings(tiers={1: {"name": "x", "requests_per_minute": 1, "daily_units": 1}})
    with pytest.raises(ValueError):
        ApiSettings(tiers={0: {"name": "x", "scopes": ["root"], "requests_per_minute": 1, "daily_units": 1}})


def test_tokens_of_a_wallet_without_a_grant_still_reach_account_routes(api):
    headers = api.login(wallet("plain"))
    assert api.client.get("/v1/me", headers=headers).status_code == 200
    assert api.client.get("/v1/access/applications", headers=headers).status_code == 200
