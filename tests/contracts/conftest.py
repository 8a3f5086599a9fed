"""Contract tests through Ape, on the session's one anvil (tests/conftest.py `anvil_node`), a snapshot per test;
the roles, market and project every TrainingMarket test starts from."""

from __future__ import annotations

import pytest
from market_helpers import NO_COMMITTEE, NO_FORWARDER, create


@pytest.fixture(scope="session")
def ape_chain(anvil_node):
    """Ape connected to the session's anvil: ape-foundry finds a node serving its host and attaches to it, so the
    web3-level tests and these share one chain (each rolls back what it did)."""
    import ape

    with ape.networks.parse_network_choice(
        "ethereum:local:foundry", provider_settings={"host": anvil_node.url}
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


# -- the TrainingMarket tests' cast and starting point ---------------------------------------------------------


@pytest.fixture
def owner(accounts):
    return accounts[0]


@pytest.fixture
def aggregator(accounts):
    return accounts[1]


@pytest.fixture
def arbiter(accounts):
    return accounts[2]


@pytest.fixture
def trainers(accounts):
    return [accounts[i] for i in range(3, 8)]


@pytest.fixture
def outsider(accounts):
    return accounts[19]


@pytest.fixture
def market(project, owner):
    """A market without a verifier committee (the committee tests deploy their own)."""
    return owner.deploy(project.TrainingMarket, NO_COMMITTEE, NO_FORWARDER)


@pytest.fixture
def pid(market, owner, aggregator, arbiter) -> int:
    return create(market, owner, aggregator, arbiter)
