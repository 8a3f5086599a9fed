"""The API across restarts and floods: quota blocks handed back when the app stops, bulkheads that refuse
(and refund) instead of queueing without bound, and authentication before the body is parsed."""

from __future__ import annotations

import asyncio

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text

from backend.api import create_app
from backend.api.core.bulkhead import Bulkhead
from backend.api.core.errors import ServiceUnavailable
from backend.api.core.tables import AuditEntry
from backend.api.services import build_services

pytestmark = [pytest.mark.chain, pytest.mark.both_databases]


def _units_charged(services, wallet: str) -> int:
    with services.engine.connect() as conn:
        return int(
            conn.execute(
                text("SELECT used FROM api_usage WHERE wallet = :w AND \"window\" = 'day'"), {"w": wallet}
            ).scalar()
            or 0
        )


def test_stopping_the_app_hands_unspent_quota_blocks_back(api, settings, api_settings, chain_client, clock):
    user, _ = api.member("restarted", tier=2)  # 20,000 units a day: a worker reserves blocks of 400
    services = build_services(settings, api_settings, chain=chain_client, monotonic=clock)
    with TestClient(create_app(settings, services=services)) as client:
        headers = api.login(user)
        for _ in range(3):
            assert client.get("/v1/projects", headers=headers).status_code == 200
        assert _units_charged(services, user.address) == 400  # one block reserved, 3 units spent
    # The lifespan ended (as on SIGTERM): only what was spent stays charged.
    assert _units_charged(services, user.address) == 3
    services.close()


def test_a_full_bulkhead_answers_503_busy_and_charges_nothing(api):
    user, headers = api.member("flooder", tier=1)
    before = api.client.get("/v1/me", headers=headers).json()["usage"]["units_today"]
    head = api.services.bulkheads["rag"]
    head.in_progress, head.queue = head.limit, 0  # every slot taken, no room to wait
    try:
        reply = api.client.post(
            "/v1/rag/query", headers=headers, json={"question": "Who was the Norse leader?"}
        )
    finally:
        head.in_progress = 0
    assert reply.status_code == 503
    assert reply.json()["type"] == "/problems/busy" and reply.headers["retry-after"] == "1"
    assert api.client.get("/v1/me", headers=headers).json()["usage"]["units_today"] == before
    api.services.audit.flush()
    with api.services.sessions() as session:
        row = session.scalars(select(AuditEntry).where(AuditEntry.path == "/v1/rag/query")).one()
    assert (row.wallet, row.status, row.reason, row.cost) == (user.address, 503, None, 0)


def test_a_request_the_service_fails_costs_nothing(api):
    from backend.api.services import Missing

    _, headers = api.member("unlucky", tier=1)
    api.services.rag.set(Missing("rag", "no source nodes in this test"))
    before = api.client.get("/v1/me", headers=headers).json()["usage"]["units_today"]
    reply = api.client.post("/v1/rag/query", headers=headers, json={"question": "Who was the Norse leader?"})
    assert reply.status_code == 503 and reply.json()["type"] == "/problems/rag-unavailable"
    assert api.client.get("/v1/me", headers=headers).json()["usage"]["units_today"] == before


def test_authentication_comes_before_the_body_is_parsed(api):
    user, headers = api.member("malformed", tier=1)
    body, json_type = b'{"question": "unterminated', {"Content-Type": "application/json"}
    anonymous = api.client.post("/v1/rag/query", content=body, headers=json_type)
    assert anonymous.status_code == 401
    assert anonymous.json()["type"] == "/problems/unauthenticated"
    signed_in = api.client.post("/v1/rag/query", content=body, headers={**json_type, **headers})
    assert signed_in.status_code == 422
    assert signed_in.json()["type"] == "/problems/validation-error"
    api.services.audit.flush()
    with api.services.sessions() as session:
        rows = session.scalars(select(AuditEntry).where(AuditEntry.path == "/v1/rag/query")).all()
    seen = [(r.wallet, r.scope, r.decision, r.status) for r in rows]
    assert seen == [(None, "rag:query", "deny", 401), (user.address, "rag:query", "allow", 422)]


def test_bulkhead_hands_slots_over_in_order_and_survives_cancellation():
    async def scenario() -> list[str]:
        head = Bulkhead("test", limit=1, queue=2)
        order: list[str] = []

        async def use(name: str, hold: float) -> None:
            async with head.slot():
                order.append(name)
                await asyncio.sleep(hold)

        first = asyncio.create_task(use("first", 0.05))
        await asyncio.sleep(0)
        cancelled = asyncio.create_task(use("cancelled", 0))
        second = asyncio.create_task(use("second", 0))
        await asyncio.sleep(0)
        with pytest.raises(ServiceUnavailable, match="1 test requests are in progress and 2 waiting"):
            async with head.slot():
                pass
        cancelled.cancel()
        await asyncio.gather(first, second, return_exceptions=True)
        assert (head.in_progress, head.waiting, head.refused) == (0, 0, 1)
        return order

    assert asyncio.run(scenario()) == ["first", "second"]


def test_sigterm_drains_requests_in_flight_then_hands_quota_back(
    api, settings, api_settings, chain_client, clock
):
    """What `trustmarket api serve` does on SIGTERM, on a real uvicorn server: the request in flight finishes,
    new connections are refused, and the lifespan then hands the unspent quota block back."""
    import signal
    import socket
    import threading

    import httpx
    import uvicorn
    from fastapi import Depends

    from backend.api.deps import public
    from backend.api.serving import uvicorn_options

    user, _ = api.member("drained", tier=2)
    headers = api.login(user)  # same database and JWT secret as the server below: the token is good there
    services = build_services(settings, api_settings, chain=chain_client, monotonic=clock)
    app = create_app(settings, services=services)
    entered = threading.Event()

    @app.get("/test/slow", dependencies=[Depends(public)])
    async def slow() -> dict:
        entered.set()
        await asyncio.sleep(0.5)
        return {"finished": True}

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    base = f"http://127.0.0.1:{listener.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(app, **uvicorn_options(api_settings, log_level="warning")))
    serving = threading.Thread(target=server.run, kwargs={"sockets": [listener]})
    serving.start()
    try:
        while not server.started:
            assert serving.is_alive(), "the server did not start"
            serving.join(0.02)
        for _ in range(3):
            assert httpx.get(f"{base}/v1/projects", headers=headers, timeout=30).status_code == 200
        assert _units_charged(services, user.address) == 400
        answers: list[httpx.Response] = []
        in_flight = threading.Thread(
            target=lambda: answers.append(httpx.get(f"{base}/test/slow", timeout=30))
        )
        in_flight.start()
        assert entered.wait(30)
        server.handle_exit(signal.SIGTERM, None)  # what uvicorn's SIGTERM handler calls
        in_flight.join(30)
        serving.join(30)
    finally:
        server.should_exit = True
        serving.join(30)
        listener.close()
    assert answers and answers[0].status_code == 200 and answers[0].json() == {"finished": True}
    assert not serving.is_alive()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{base}/healthz", timeout=2)
    assert _units_charged(services, user.address) == 3
    services.close()
