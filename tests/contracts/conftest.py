"""Contract tests through Ape: one anvil per test session on a free port, a snapshot per test."""

from __future__ import annotations

import socket

import pytest


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def ape_chain():
    """Ape connected to a private anvil (ape-foundry starts it and stops it)."""
    import ape

    port = _free_port()
    with ape.networks.parse_network_choice(
        "ethereum:local:foundry", provider_settings={"host": f"http://127.0.0.1:{port}"}
    ) as provider:
        yield provider


@pytest.fixture(scope="session")
def project(ape_chain):
    import ape

    return ape.project


@pytest.fixture(scope="session")
def accounts(ape_chain):
    import ape

    return ape.accounts.test_accounts


@pytest.fixture(scope="session")
def chain(ape_chain):
    import ape

    return ape.chain


@pytest.fixture(autouse=True)
def _isolate(chain):
    """Every test starts from the same chain state and leaves none behind."""
    snapshot = chain.snapshot()
    yield
    chain.restore(snapshot)
