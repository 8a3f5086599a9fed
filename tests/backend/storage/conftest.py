"""Shared fixtures of the storage tests: stores, a fake Kubo node and a URL where nothing listens."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from fake_kubo import FakeKubo

from backend.storage import LocalStore
from backend.storage.kubo import KuboStore


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
