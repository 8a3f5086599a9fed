"""Parts that are down or missing: each answers a clear problem, and the rest of the API keeps working."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy.orm import sessionmaker

from backend.api.core.audit import AuditLog, AuditRecord
from backend.api.services import Missing
from backend.db import make_engine

pytestmark = pytest.mark.chain


def test_store_down_is_503_for_uploads_only(api):
    _, headers = api.member("store-down", tier=2)
    api.services.store.set(Missing("store", "the Kubo node at 127.0.0.1:5001 is down"))
    reply = api.client.post("/v1/uploads", headers=headers, content=b"irrelevant")
    assert reply.status_code == 503
    assert reply.json()["type"] == "/problems/store-unavailable"
    assert "127.0.0.1:5001" in reply.json()["detail"]
    assert api.client.get("/v1/me", headers=headers).status_code == 200


def test_no_relayer_is_503_for_relayed_writes(api, settings, api_settings, chain_client, clock):
    from fastapi.testclient import TestClient

    from backend.api import create_app
    from backend.api.services import build_services

    _, headers = api.member("no-relayer", tier=1)
    services = build_services(settings, api_settings, chain=chain_client, monotonic=clock)  # no relayer given
    assert isinstance(services.relayer.peek(), Missing)
    with TestClient(create_app(settings, services=services), raise_server_exceptions=False) as client:
        payload = client.get("/v1/terms/acceptance", headers=headers).json()
        body = {
            "terms_hash": payload["message"]["termsHash"],
            "deadline": payload["message"]["deadline"],
            "signature": "0x" + "11" * 65,
        }
        reply = client.post("/v1/terms/accept", headers=headers, json=body)
        assert reply.status_code == 503
        assert reply.json()["type"] == "/problems/relayer-unavailable"
        assert "TRUSTMARKET_API_RELAYER_KEYSTORE" in reply.json()["detail"]
    services.close()


def test_audit_writer_survives_a_database_failure(tmp_path, caplog):
    # A database without the audit table: every write fails, loudly, and the writer keeps going.
    engine = make_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    audit = AuditLog(sessionmaker(engine), flush_interval_s=0.01)
    entry = AuditRecord(0.0, None, "GET", "/v1/me", None, "deny", "unauthenticated", 0, 401, None)
    with caplog.at_level(logging.ERROR, logger="trustmarket.api.audit"):
        audit.record(entry)
        audit.flush()
        audit.record(entry)
        audit.flush()
    assert audit.failures == 2
    assert "could not write 1 entries" in caplog.text
    audit.close()
    engine.dispose()
