"""Uploading updates: safetensors only, capped by tier, stored under the CID the store computes."""

from __future__ import annotations

import hashlib

import pytest
import torch

from backend.storage import fetch_verified
from backend.storage.codec import encode_state

pytestmark = pytest.mark.chain


def _update(rows: int = 4) -> bytes:
    return encode_state({"w": torch.arange(rows * 3, dtype=torch.float32).reshape(rows, 3)}, {"round": "0"})


def test_trainer_uploads_and_gets_cid_and_sha256(api):
    _, headers = api.member("uploader", tier=2)
    data = _update()
    reply = api.client.post("/v1/uploads", headers=headers, content=data)
    assert reply.status_code == 201, reply.text
    body = reply.json()
    assert body["sha256"] == hashlib.sha256(data).hexdigest()
    assert body["size"] == len(data)
    assert body["tensors"] == 1
    assert fetch_verified(api.services.store.get(), body["cid"], body["sha256"]) == data


def test_explorer_tier_cannot_upload(api):
    _, headers = api.member("reader-no-upload", tier=1)
    reply = api.client.post("/v1/uploads", headers=headers, content=_update())
    assert reply.status_code == 403
    assert reply.json()["type"] == "/problems/insufficient-scope"


def test_not_safetensors_is_422(api):
    _, headers = api.member("pickler", tier=2)
    import pickle

    for payload in (pickle.dumps({"w": [1.0, 2.0]}), b"\x00" * 64, b"not a model at all"):
        reply = api.client.post("/v1/uploads", headers=headers, content=payload)
        assert reply.status_code == 422
        assert reply.json()["type"] == "/problems/invalid-safetensors"


def test_non_finite_update_is_422(api):
    _, headers = api.member("nan-uploader", tier=2)
    data = bytearray(encode_state({"w": torch.tensor([1.0, 2.0])}, {}))
    # Overwrite the last float with NaN in place (the tensor data ends the file).
    data[-4:] = torch.tensor([float("nan")]).numpy().tobytes()
    reply = api.client.post("/v1/uploads", headers=headers, content=bytes(data))
    assert reply.status_code == 422
    assert reply.json()["type"] == "/problems/invalid-safetensors"


def test_empty_upload_is_400(api):
    _, headers = api.member("empty-uploader", tier=2)
    reply = api.client.post("/v1/uploads", headers=headers, content=b"")
    assert reply.status_code == 400


def test_upload_over_the_service_cap_is_413(api):
    _, headers = api.member("big-uploader", tier=2)
    # The service-wide cap (64 KiB in these tests) is below the tier's 16 MiB: it trips first.
    reply = api.client.post(
        "/v1/uploads", headers=headers, content=b"x" * (api.services.api.max_body_bytes + 1)
    )
    assert reply.status_code == 413


def test_tier_cap_applies_below_the_service_cap(
    api, settings, api_settings, chain_client, dev_accounts, clock
):
    from fastapi.testclient import TestClient

    from backend.api import create_app
    from backend.api.services import build_services

    tiers = dict(api_settings.tiers)
    tiers[2] = tiers[2].model_copy(update={"max_upload_bytes": 100})
    small = api_settings.model_copy(update={"tiers": tiers})
    user, _ = api.member("capped", tier=2)
    services = build_services(settings, small, chain=chain_client, relayer=dev_accounts[0], monotonic=clock)
    with TestClient(create_app(settings, services=services), raise_server_exceptions=False) as client:
        token, _ = services.tokens.issue(user.address, 31337)
        reply = client.post("/v1/uploads", headers={"Authorization": f"Bearer {token}"}, content=_update(16))
        assert reply.status_code == 413
        assert "at most 100 bytes" in reply.json()["detail"]
    services.close()
