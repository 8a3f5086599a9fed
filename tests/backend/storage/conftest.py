"""Shared fixtures of the storage tests: Kubo's CID vectors, generated content, stores and a fake Kubo node."""

from __future__ import annotations

import hashlib
import json
import socket
from pathlib import Path

import pytest
from fake_kubo import FakeKubo

from backend.storage import LocalStore
from backend.storage.kubo import KuboStore

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "kubo_cids.json"


def generated(seed: str, size: int) -> bytes:
    """Content as the fixture's "generator" field says: shake_256(seed) of `size` bytes (empty for 0)."""
    return hashlib.shake_256(seed.encode()).digest(size) if size else b""


def kubo_vectors() -> list[dict]:
    return json.loads(FIXTURE.read_text())["vectors"]


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "store")


@pytest.fixture
def fake_kubo(tmp_path: Path):
    node = FakeKubo(tmp_path / "kubo-store")
    yield node
    node.close()


@pytest.fixture
def kubo(fake_kubo: FakeKubo):
    with KuboStore(fake_kubo.url, timeout=10) as client:
        yield client


@pytest.fixture
def dead_url() -> str:
    """A loopback URL where nothing listens (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"
