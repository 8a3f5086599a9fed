"""Sign-In with Ethereum and session tokens: every way a login or a token can be wrong."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import jwt
import pytest
from api_helpers import CHAIN_ID, DOMAIN, sign_text, siwe_message, wallet

pytestmark = [pytest.mark.chain, pytest.mark.both_databases]


def _login(api, message, signature):
    return api.client.post("/v1/auth/login", json={"message": message, "signature": signature})


def test_nonce_names_domain_and_chain(api):
    body = api.client.post("/v1/auth/nonce").json()
    assert body["domain"] == DOMAIN
    assert body["chain_id"] == CHAIN_ID
    assert len(body["nonce"]) >= 8
    assert body["expires_at"] > time.time()
    assert api.client.post("/v1/auth/nonce").json()["nonce"] != body["nonce"]


def test_login_opens_a_session(api):
    user = wallet("login")
    headers = api.login(user)
    me = api.client.get("/v1/me", headers=headers)
    assert me.status_code == 200
    assert me.json()["address"] == user.address
    assert me.json()["tier"] == 0
    assert "rag:query" not in me.json()["scopes"]


def test_no_token_is_401(api):
    reply = api.client.get("/v1/me")
    assert reply.status_code == 401
    assert reply.headers["content-type"] == "application/problem+json"
    assert reply.headers["www-authenticate"].startswith("Bearer")
    assert reply.json()["type"] == "/problems/unauthenticated"


@pytest.mark.parametrize("header", ["Basic dXNlcjpwYXNz", "Bearer not-a-jwt", "Bearer "])
def test_bad_authorization_header_is_401(api, header):
    reply = api.client.get("/v1/me", headers={"Authorization": header})
    assert reply.status_code == 401


def test_replayed_nonce_is_refused(api):
    user = wallet("replay")
    message = siwe_message(user.address, api.nonce())
    signature = sign_text(user, message)
    assert _login(api, message, signature).status_code == 200
    again = _login(api, message, signature)
    assert again.status_code == 401
    assert again.json()["type"] == "/problems/siwe-nonce"


def test_unknown_nonce_is_refused(api):
    user = wallet("unknown-nonce")
    message = siwe_message(user.address, "neverissued123")
    reply = _login(api, message, sign_text(user, message))
    assert reply.status_code == 401
    assert reply.json()["type"] == "/problems/siwe-nonce"


def test_expired_nonce_is_refused(api):
    user = wallet("old-nonce")
    issued = api.services.siwe.issue_nonce(CHAIN_ID, now=time.time() - 3600)
    message = siwe_message(user.address, issued.nonce)
    reply = _login(api, message, sign_text(user, message))
    assert reply.status_code == 401
    assert reply.json()["type"] == "/problems/siwe-nonce"


def test_forged_signature_is_refused_and_does_not_burn_the_nonce(api):
    user, forger = wallet("victim"), wallet("forger")
    message = siwe_message(user.address, api.nonce())
    forged = _login(api, message, sign_text(forger, message))
    assert forged.status_code == 401
    assert forged.json()["type"] == "/problems/siwe-signature"
    # A signature over another message does not transfer either.
    other = siwe_message(user.address, api.nonce())
    assert _login(api, message, sign_text(user, other)).status_code == 401
    # The rightful owner can still use the nonce.
    assert _login(api, message, sign_text(user, message)).status_code == 200


def test_garbage_signature_bytes_are_refused(api):
    user = wallet("garbage")
    message = siwe_message(user.address, api.nonce())
    reply = _login(api, message, "0x" + "ff" * 65)
    assert reply.status_code == 401


@pytest.mark.parametrize(
    ("kwargs", "kind"),
    [
        ({"domain": "evil.example"}, "siwe-domain"),
        ({"chain_id": 1}, "siwe-chain"),
        ({"expiration": datetime.now(tz=UTC) - timedelta(minutes=1)}, "siwe-expired"),
        ({"issued_at": datetime.now(tz=UTC) + timedelta(hours=1)}, "siwe-time"),
        ({"issued_at": datetime.now(tz=UTC) - timedelta(hours=1)}, "siwe-time"),  # older than the 5 min skew
    ],
)
def test_message_for_another_context_is_refused(api, kwargs, kind):
    user = wallet("context")
    message = siwe_message(user.address, api.nonce(), **kwargs)
    reply = _login(api, message, sign_text(user, message))
    assert reply.status_code == 401
    assert reply.json()["type"] == f"/problems/{kind}"


def test_malformed_siwe_message_is_400(api):
    user = wallet("malformed")
    reply = _login(api, "hello, please let me in", sign_text(user, "hello, please let me in"))
    assert reply.status_code == 400
    assert reply.json()["type"] == "/problems/siwe-malformed"


def test_malformed_login_body_is_422_problem(api):
    reply = api.client.post("/v1/auth/login", json={"message": "x", "signature": "0x1234"})
    assert reply.status_code == 422
    assert reply.headers["content-type"] == "application/problem+json"
    assert reply.json()["errors"][0]["loc"] == ["body", "signature"]
    not_json = api.client.post(
        "/v1/auth/login", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert not_json.status_code == 422
    assert not_json.headers["content-type"] == "application/problem+json"


def test_expired_token_is_401(api):
    user = wallet("expired-token")
    token, _ = api.services.tokens.issue(
        user.address, CHAIN_ID, now=time.time() - 2 * api.services.tokens.ttl_s
    )
    reply = api.client.get("/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert reply.status_code == 401
    assert reply.json()["type"] == "/problems/token-expired"


def test_token_signed_elsewhere_or_unsigned_is_401(api):
    user = wallet("foreign-token")
    now = int(time.time())
    claims = {
        "sub": user.address, "jti": "x", "iat": now, "exp": now + 600,
        "iss": "trustmarket", "aud": "trustmarket-api", "chain_id": CHAIN_ID,
    }  # fmt: skip
    foreign = jwt.encode(claims, "another secret that is also long enough!!", algorithm="HS256")
    unsigned = jwt.encode(claims, None, algorithm="none")
    for token in (foreign, unsigned):
        reply = api.client.get("/v1/me", headers={"Authorization": f"Bearer {token}"})
        assert reply.status_code == 401
        assert reply.json()["type"] == "/problems/invalid-token"


def test_logout_revokes_the_token(api):
    headers = api.login(wallet("logout"))
    assert api.client.get("/v1/me", headers=headers).status_code == 200
    assert api.client.post("/v1/auth/logout", headers=headers).status_code == 204
    reply = api.client.get("/v1/me", headers=headers)
    assert reply.status_code == 401
    assert reply.json()["type"] == "/problems/token-revoked"
    assert api.client.post("/v1/auth/logout", headers=headers).status_code == 401
    # Other sessions of the same wallet are untouched.
    assert api.client.get("/v1/me", headers=api.login(wallet("logout"))).status_code == 200
