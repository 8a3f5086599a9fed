"""Access applications: submit, review, decide (applied on chain), revoke; every decision logged."""

from __future__ import annotations

import pytest
from api_helpers import wallet

pytestmark = [pytest.mark.chain, pytest.mark.both_databases]

USE_CASE = "Benchmarking federated models for a hospital consortium."


@pytest.fixture
def grantor(api):
    """dev account 0 deployed the registry, so it holds GRANTOR_ROLE."""
    return api.login(api.admin)


def _apply(api, headers, tier=1):
    return api.client.post(
        "/v1/access/applications", headers=headers, json={"requested_tier": tier, "use_case": USE_CASE}
    )


def test_submit_review_approve_grants_on_chain(api, grantor):
    user = wallet("applicant")
    headers = api.login(user)
    created = _apply(api, headers, tier=2)
    assert created.status_code == 201, created.text
    app_id = created.json()["id"]
    assert created.json()["status"] == "submitted"
    assert [a["id"] for a in api.client.get("/v1/access/applications", headers=headers).json()] == [app_id]

    queue = api.client.get("/v1/access/review/applications", headers=grantor, params={"status": "submitted"})
    assert [a["id"] for a in queue.json()] == [app_id]
    review = api.client.post(
        f"/v1/access/review/applications/{app_id}/review",
        headers=grantor,
        json={"note": "checking references"},
    )
    assert review.json()["status"] == "under_review"
    decision = api.client.post(
        f"/v1/access/review/applications/{app_id}/decision",
        headers=grantor,
        json={"approve": True, "valid_days": 30, "note": "ok"},
    )
    assert decision.status_code == 200, decision.text
    assert decision.json()["tier"] == 2
    assert decision.json()["tx_hash"].startswith("0x")
    grant = api.registry.access_of(user.address)
    assert grant.tier == 2
    assert grant.expires_at == decision.json()["expires_at"]
    # The applicant sees the new tier at once (the API dropped its cache entry).
    me = api.client.get("/v1/me", headers=headers).json()
    assert (me["tier"], me["tier_name"]) == (2, "trainer")
    assert api.client.get(f"/v1/access/applications/{app_id}", headers=headers).json()["status"] == "approved"
    log = api.client.get(
        "/v1/access/review/decisions", headers=grantor, params={"wallet": user.address}
    ).json()
    assert [d["action"] for d in log] == ["approve", "review"]
    assert {d["reviewer"] for d in log} == {api.admin.address}
    # Decided once, decided for good.
    again = api.client.post(
        f"/v1/access/review/applications/{app_id}/decision", headers=grantor, json={"approve": False}
    )
    assert again.status_code == 409
    assert again.json()["type"] == "/problems/already-decided"


def test_reject_changes_nothing_on_chain(api, grantor):
    user = wallet("rejected")
    app_id = _apply(api, api.login(user)).json()["id"]
    reply = api.client.post(
        f"/v1/access/review/applications/{app_id}/decision",
        headers=grantor,
        json={"approve": False, "note": "no"},
    )
    assert reply.status_code == 200
    assert reply.json()["action"] == "reject"
    assert reply.json()["tx_hash"] is None
    assert api.registry.access_of(user.address).tier == 0


def test_revocation_is_applied_and_logged(api, grantor):
    user, headers = api.member("to-revoke", tier=1)
    assert api.client.get("/v1/rag/sources", headers=headers).status_code == 200
    reply = api.client.post(
        "/v1/access/review/revocations", headers=grantor, json={"wallet": user.address, "note": "abuse"}
    )
    assert reply.status_code == 201, reply.text
    assert api.registry.access_of(user.address).tier == 0
    assert api.client.get("/v1/rag/sources", headers=headers).status_code == 403
    # Revoking again: the contract refuses (no grant), the API says so.
    again = api.client.post(
        "/v1/access/review/revocations", headers=grantor, json={"wallet": user.address, "note": "abuse"}
    )
    assert again.status_code == 409
    assert again.json()["error"] == "NoGrant"


def test_others_applications_are_invisible(api):
    owner, other = api.login(wallet("owner")), api.login(wallet("snoop"))
    app_id = _apply(api, owner).json()["id"]
    assert api.client.get(f"/v1/access/applications/{app_id}", headers=other).status_code == 404
    assert api.client.get("/v1/access/applications/999", headers=owner).status_code == 404
    assert api.client.get("/v1/access/applications", headers=other).json() == []


def test_grantor_cannot_decide_own_application(api, grantor):
    app_id = _apply(api, grantor).json()["id"]
    reply = api.client.post(
        f"/v1/access/review/applications/{app_id}/decision", headers=grantor, json={"approve": True}
    )
    assert reply.status_code == 403
    assert reply.json()["type"] == "/problems/self-review"


def test_application_failures(api, grantor):
    headers = api.login(wallet("eager"))
    assert _apply(api, headers, tier=9).status_code == 400
    short = api.client.post(
        "/v1/access/applications", headers=headers, json={"requested_tier": 1, "use_case": "pls"}
    )
    assert short.status_code == 422
    for _ in range(3):
        assert _apply(api, headers).status_code == 201
    too_many = _apply(api, headers)
    assert too_many.status_code == 409
    assert too_many.json()["type"] == "/problems/too-many-open"
    missing = api.client.post(
        "/v1/access/review/applications/999/review", headers=grantor, json={"note": "x"}
    )
    assert missing.status_code == 404


def test_approving_a_tier_above_the_registry_maximum_is_refused(api, grantor, api_settings):
    # The API's table may define more tiers than the contract allows; the chain is the authority.
    user = wallet("greedy")
    app_id = _apply(api, api.login(user), tier=3).json()["id"]
    reply = api.client.post(
        f"/v1/access/review/applications/{app_id}/decision",
        headers=grantor,
        json={"approve": True, "tier": 200},
    )
    assert reply.status_code == 400
    assert reply.json()["type"] == "/problems/unknown-tier"
    assert api.registry.access_of(user.address).tier == 0
