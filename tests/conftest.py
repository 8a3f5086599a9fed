"""Test-wide set-up: the offline toolchain on PATH, no hub downloads, deterministic torch."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# The same environment `make` exports, so `pytest` run by hand behaves like `make test`.
os.environ.setdefault("SOLCX_BINARY_PATH", str(ROOT / ".solcx"))
os.environ["PATH"] = os.pathsep.join([str(ROOT / "node_modules" / ".bin"), os.environ.get("PATH", "")])
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


# -- the session's chain: one anvil for the web3-level tests and, through Ape, for tests/contracts ----------------

import pytest  # noqa: E402

# What ape-foundry would pass to an anvil it started itself: no fees (the contract tests compare balances to the
# wei) and step tracing (Ape's revert messages).
ANVIL_TEST_ARGS = ("--block-base-fee-per-gas", "0", "--gas-price", "0", "--steps-tracing")


@pytest.fixture(scope="session")
def anvil_node():
    """The session's one anvil, on a free port: the web3-level tests use it directly, the contract tests through
    Ape (tests/contracts/conftest.py attaches to it)."""
    from backend.chain.anvil import start_anvil

    node = start_anvil(attach=False, extra_args=ANVIL_TEST_ARGS)
    yield node
    node.stop()


@pytest.fixture(scope="session")
def postgres():
    """A private PostgreSQL server for the session (see tests/postgres.py); skipped if none is installed."""
    from postgres import PostgresServer, find_postgres_bin

    bindir = find_postgres_bin()
    if bindir is None:
        pytest.skip(
            "PostgreSQL is not installed (apt-get install postgresql): the PostgreSQL runs are skipped"
        )
    server = PostgresServer(bindir).start()
    yield server
    server.stop()


def pytest_generate_tests(metafunc):
    # Modules marked `both_databases` (the ones whose behaviour lives in the database: quotas, sessions, the audit
    # log, applications, restarts, the feedback queue) run every test on SQLite and on PostgreSQL, the documented
    # deployment; the rest run on SQLite, through the same code.
    if "database_url" in metafunc.fixturenames:
        both = metafunc.definition.get_closest_marker("both_databases") is not None
        metafunc.parametrize("database_url", ["sqlite", "postgresql"] if both else ["sqlite"], indirect=True)


@pytest.fixture
def database_url(request, tmp_path) -> str:
    """SQLite in the test's folder, or a fresh database on the session's PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'trustmarket.db'}"
    return request.getfixturevalue("postgres").new_database()


@pytest.fixture(scope="session")
def compiled_artifacts():
    """The compiled contracts, compiling first if a source changed (through Ape, as `make install` does)."""
    import ape

    from backend.chain.artifacts import Artifacts

    ape.project.load_contracts()
    return Artifacts.load(ROOT / ".build" / "__local__.json")


@pytest.fixture(scope="session")
def dev_accounts():
    from backend.chain.keys import dev_account

    return [dev_account(i, 31337) for i in range(20)]


@pytest.fixture(scope="session")
def deployed(anvil_node, compiled_artifacts, dev_accounts):
    """Every production contract deployed once per session; tests isolate through `chain_snapshot`."""
    from backend.chain.client import ChainClient
    from backend.chain.deploy import deploy_contracts

    client = ChainClient(anvil_node.url, compiled_artifacts)
    return deploy_contracts(client, dev_accounts[0], network="ethereum:local:foundry")


@pytest.fixture
def chain_client(anvil_node, compiled_artifacts, deployed):
    """A client over the session's deployments, with the chain rolled back after the test."""
    from backend.chain.client import ChainClient

    client = ChainClient(anvil_node.url, compiled_artifacts, deployed, expected_chain_id=31337)
    snapshot = client.w3.provider.make_request("evm_snapshot", [])["result"]
    yield client
    client.w3.provider.make_request("evm_revert", [snapshot])


@pytest.fixture
def deployed_cli_env(tmp_path, chain_client, compiled_artifacts):
    """Environment for CLI runs against the session's deployments, with a fresh home and store."""
    deployments = tmp_path / "deployments"
    chain_client.deployments.save(deployments / "local.json")
    return {
        "TRUSTMARKET_HOME": str(tmp_path / "home"),
        "TRUSTMARKET_CHAIN_URL": chain_client.url,
        "TRUSTMARKET_DEPLOYMENTS_DIR": str(deployments),
        "TRUSTMARKET_ARTIFACTS_PATH": str(compiled_artifacts.path),
        "TRUSTMARKET_STORE_PATH": str(tmp_path / "store"),
    }


# -- the Ray engine: one local instance per session at most, never a remote one -------------------------------


@pytest.fixture(scope="session")
def ray_cluster():
    """A private Ray instance on this machine (2 CPUs) for the whole session, stopped at the end; never one
    that is already running, whatever RAY_ADDRESS says."""
    from aggregator.ray_engine import RayEngine

    engine = RayEngine(num_cpus=2)
    yield engine
    engine.close()


@pytest.fixture
def ray_engine(ray_cluster):
    """The Ray engine on the session's instance."""
    return ray_cluster
