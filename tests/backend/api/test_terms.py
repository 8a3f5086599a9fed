"""Terms: read them, sign the EIP-712 payload the API hands out, and have the acceptance relayed on chain."""

from __future__ import annotations

import pytest
from api_helpers import TERMS, wallet
from eth_account import Account

pytestmark = pytest.mark.chain


def _sign(account, payload) -> str:
    return Account.sign_typed_data(account.key, full_message=payload).signature.to_0x_hex()


def test_terms_before_and_after_publication(api):
    assert api.client.get("/v1/terms").json()["published"] is False
    api.publish_terms()
    body = api.client.get("/v1/terms").json()
    assert body["published"] is True
    assert body["version"] == 1
    assert body["terms_hash"] == "0x" + TERMS.hex()
    assert body["uri"] == "ipfs://terms"
    assert body["registry"] == api.registry.address


def test_accept_through_the_api(api):
    user = wallet("terms-api")
    api.grant(user, 1)
    headers = api.login(user)
    api.publish_terms()
    assert api.client.get("/v1/rag/sources", headers=headers).status_code == 403
    payload = api.client.get("/v1/terms/acceptance", headers=headers).json()
    assert payload["primaryType"] == "AcceptTerms"
    assert payload["message"]["account"] == user.address
    body = {
        "terms_hash": payload["message"]["termsHash"],
        "deadline": payload["message"]["deadline"],
        "signature": _sign(user, payload),
    }
    reply = api.client.post("/v1/terms/accept", headers=headers, json=body)
    assert reply.status_code == 200, reply.text
    assert reply.json()["accepted"] is True
    assert api.registry.access_of(user.address).accepted_current_terms is True
    # The cache entry was dropped, so access follows at once.
    assert api.client.get("/v1/rag/sources", headers=headers).status_code == 200
    # Replaying the same signature fails on chain (the nonce moved on).
    replay = api.client.post("/v1/terms/accept", headers=headers, json=body)
    assert replay.status_code == 400
    assert replay.json()["type"] == "/problems/invalid-signature"


def test_acceptance_signed_by_someone_else_is_refused(api):
    user, forger = wallet("terms-victim"), wallet("terms-forger")
    headers = api.login(user)
    api.publish_terms()
    payload = api.client.get("/v1/terms/acceptance", headers=headers).json()
    body = {
        "terms_hash": payload["message"]["termsHash"],
        "deadline": payload["message"]["deadline"],
        "signature": _sign(forger, payload),
    }
    reply = api.client.post("/v1/terms/accept", headers=headers, json=body)
    assert reply.status_code == 400
    assert reply.json()["type"] == "/problems/invalid-signature"
    assert api.registry.access_of(user.address).accepted_current_terms is False


def test_stale_terms_and_expired_deadline(api):
    user = wallet("terms-stale")
    headers = api.login(user)
    api.publish_terms()
    now = api.registry.client.timestamp()
    stale = api.registry.acceptance_typed_data(user.address, b"\x07" * 32, now + 600)
    reply = api.client.post(
        "/v1/terms/accept",
        headers=headers,
        json={"terms_hash": "0x" + "07" * 32, "deadline": now + 600, "signature": _sign(user, stale)},
    )
    assert reply.status_code == 409
    assert reply.json()["type"] == "/problems/not-current-terms"
    expired = api.client.get("/v1/terms/acceptance", headers=headers, params={"deadline": now - 10}).json()
    reply = api.client.post(
        "/v1/terms/accept",
        headers=headers,
        json={"terms_hash": "0x" + TERMS.hex(), "deadline": now - 10, "signature": _sign(user, expired)},
    )
    assert reply.status_code == 400
    assert reply.json()["type"] == "/problems/signature-expired"


def test_no_terms_published_is_409(api):
    headers = api.login(wallet("terms-none"))
    reply = api.client.get("/v1/terms/acceptance", headers=headers)
    assert reply.status_code == 409
    assert reply.json()["type"] == "/problems/no-terms"


def test_malformed_acceptance_is_422(api):
    headers = api.login(wallet("terms-malformed"))
    reply = api.client.post("/v1/terms/accept", headers=headers, json={"terms_hash": "0x12", "deadline": -1})
    assert reply.status_code == 422
    assert {tuple(e["loc"]) for e in reply.json()["errors"]} == {
        ("body", "terms_hash"),
        ("body", "deadline"),
        ("body", "signature"),
    }
