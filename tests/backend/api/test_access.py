"""Structured access: tiers from chain (cached for a TTL), scopes, terms, rate limits and daily quotas."""

from __future__ import annotations

import time

import pytest
from api_helpers import wallet
from fastapi.testclient import TestClient

from backend.api import create_app
from backend.api.core.quotas import QuotaBook
from backend.api.services import Missing, build_services
from backend.chain.anvil import advance_clock

pytestmark = [pytest.mark.chain, pytest.mark.both_databases]

SOURCES = "/v1/rag/sources"


def test_tier_zero_lacks_tier_scopes(api):
    _, headers = api.member("nobody", tier=0, terms=False)
    reply = api.client.get(SOURCES, headers=headers)
    assert reply.status_code == 403
    assert reply.json()["type"] == "/problems/insufficient-scope"
    assert reply.json()["required_scope"] == "rag:sources"


def test_tier_without_review_scope_is_403(api):
    _, headers = api.member("explorer")
    reply = api.client.get("/v1/access/review/applications", headers=headers)
    assert reply.status_code == 403
    assert reply.json()["type"] == "/problems/insufficient-scope"


def test_granted_tier_with_terms_is_admitted(api):
    _user, headers = api.member("reader", tier=1)
    reply = api.client.get(SOURCES, headers=headers)
    assert reply.status_code == 200, reply.text
    assert reply.json() == []
    me = api.client.get("/v1/me", headers=headers).json()
    assert (me["tier"], me["tier_name"], me["terms_accepted"]) == (1, "explorer", True)
    assert "rag:sources" in me["scopes"]
    assert me["usage"]["units_today"] == 1  # the sources call; /me itself is free


def test_terms_not_accepted_is_403(api):
    _user, headers = api.member("no-terms", tier=1, terms=False)
    api.publish_terms()
    reply = api.client.get(SOURCES, headers=headers)
    assert reply.status_code == 403
    assert reply.json()["type"] == "/problems/terms-not-accepted"


def test_new_terms_require_a_new_acceptance(api):
    _user, headers = api.member("re-accept", tier=1)
    assert api.client.get(SOURCES, headers=headers).status_code == 200
    api.registry.publish_terms(api.admin, b"\x02" * 32, "ipfs://terms-2")
    api.clock.advance(31)  # past the tier cache's TTL
    reply = api.client.get(SOURCES, headers=headers)
    assert reply.status_code == 403
    assert reply.json()["type"] == "/problems/terms-not-accepted"


def test_revocation_on_chain_applies_within_the_ttl(api):
    user, headers = api.member("revoked", tier=1)
    assert api.client.get(SOURCES, headers=headers).status_code == 200
    # Revoked on chain by someone else (not through this API, so no invalidation here).
    api.registry.revoke(api.admin, user.address, b"\x00" * 32)
    api.clock.advance(api.services.api.tier_cache_ttl_s - 1)
    assert api.client.get(SOURCES, headers=headers).status_code == 200  # still cached: the documented window
    api.clock.advance(2)
    reply = api.client.get(SOURCES, headers=headers)
    assert reply.status_code == 403
    assert reply.json()["type"] == "/problems/insufficient-scope"


def test_expired_grant_stops_working(api, chain_client):
    user, headers = api.member("short-grant", tier=1)
    api.grant(user, 1, seconds=100)
    assert api.client.get(SOURCES, headers=headers).status_code == 200
    advance_clock(chain_client, 200)
    api.clock.advance(31)
    assert api.client.get(SOURCES, headers=headers).status_code == 403


def test_rate_limit_is_429_with_retry_after(api, monkeypatch):
    _user, headers = api.member("hasty", tier=1)
    # Minutes are calendar windows: on a slow machine the requests below may straddle one, so hold the quota
    # book's wall clock still (Retry-After is then counted from this instant).
    now = time.time()
    monkeypatch.setattr(api.services.quotas, "_clock", lambda: now)
    limit = api.services.api.tiers[1].requests_per_minute
    codes = [api.client.get("/v1/me", headers=headers).status_code for _ in range(limit + 2)]
    assert codes[:limit] == [200] * limit
    assert codes[limit:] == [429, 429]
    reply = api.client.get("/v1/me", headers=headers)
    assert reply.json()["type"] == "/problems/rate-limited"
    assert 1 <= int(reply.headers["retry-after"]) <= 60
    # Another wallet is not affected.
    _, other = api.member("patient", tier=1)
    assert api.client.get("/v1/me", headers=other).status_code == 200


def test_daily_quota_is_429_and_survives_a_restart(
    api, settings, api_settings, chain_client, dev_accounts, clock
):
    user, headers = api.member("spender", tier=1)
    policy = api.services.api.tiers[1]
    # Spend all but one of the day's units in one expensive call.
    QuotaBook(api.services.engine).consume(user.address, policy, policy.daily_units - 1)
    assert api.client.get(SOURCES, headers=headers).status_code == 200  # the last unit
    reply = api.client.get(SOURCES, headers=headers)
    assert reply.status_code == 429
    assert reply.json()["type"] == "/problems/quota-exceeded"
    assert 1 <= int(reply.headers["retry-after"]) <= 86_400
    # Free endpoints still work; a refused request cost nothing.
    assert api.client.get("/v1/me", headers=headers).json()["usage"]["units_today"] == policy.daily_units
    # A new process over the same database remembers the spending.
    services = build_services(
        settings, api_settings, chain=chain_client, relayer=dev_accounts[0], monotonic=clock
    )
    with TestClient(create_app(settings, services=services), raise_server_exceptions=False) as client:
        again = client.get(SOURCES, headers=headers)
    services.close()
    assert again.status_code == 429


def test_chain_down_is_503_problem(settings, api_settings, dev_accounts):
    services = build_services(settings, api_settings, chain=Missing("chain", "no node at 127.0.0.1:9"))
    with TestClient(create_app(settings, services=services), raise_server_exceptions=False) as client:
        token, _ = services.tokens.issue(wallet("offline").address, 31337)
        reply = client.get("/v1/me", headers={"Authorization": f"Bearer {token}"})
        assert reply.status_code == 503
        assert reply.headers["content-type"] == "application/problem+json"
        assert reply.json()["type"] == "/problems/chain-unavailable"
        assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").status_code == 503
    services.close()
