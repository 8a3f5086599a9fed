"""The API against a real anvil with the compiled contracts deployed, SQLite in a temporary folder or a database
of its own on a private PostgreSQL server (every test runs on both), and wallets that sign locally (eth-account
keys): nothing is mocked."""

from __future__ import annotations

import pytest
from api_helpers import CHAIN_ID, DOMAIN, Api, FakeClock
from fastapi.testclient import TestClient

from backend.api import ApiSettings, create_app
from backend.api.core.config import DEFAULT_TIERS, TierPolicy
from backend.api.services import build_services
from backend.chain.access_registry import AccessRegistry
from backend.settings import Settings

# The contracts the API composes (the forwarder first: the market trusts it). Deploying only these keeps the API's
# tests independent of contracts it does not use (and of their constructor parameters).
API_CONTRACTS = ("TrustmarketForwarder", "TrainingMarket", "AccessRegistry", "SourceRegistry")


@pytest.fixture(scope="session")
def deployed(anvil_node, compiled_artifacts, dev_accounts):
    from backend.chain.client import ChainClient
    from backend.chain.deploy import deploy_contracts

    client = ChainClient(anvil_node.url, compiled_artifacts)
    return deploy_contracts(client, dev_accounts[0], network="ethereum:local:foundry", names=API_CONTRACTS)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def api_settings() -> ApiSettings:
    tiers = dict(DEFAULT_TIERS)
    # Small limits, so the tests reach them in a few calls.
    tiers[1] = TierPolicy(
        name="explorer",
        scopes=DEFAULT_TIERS[1].scopes,
        requests_per_minute=8,
        daily_units=40,
        max_predict_rows=4,
        max_query_chars=200,
        max_text_chars=40,
    )
    return ApiSettings(
        jwt_secret="a test secret that is long enough for HS256 use",
        siwe_domain=DOMAIN,
        tier_cache_ttl_s=30,
        tiers=tiers,
        max_body_bytes=64 * 1024,
        audit_flush_s=0.05,
    )


@pytest.fixture
def settings(tmp_path, database_url) -> Settings:
    # Every API test runs on SQLite and on PostgreSQL (the documented deployment): see `database_url`.
    return Settings(home=tmp_path, chain_id=CHAIN_ID, database_url=database_url)


@pytest.fixture
def api(settings, api_settings, chain_client, dev_accounts, clock):
    services = build_services(
        settings, api_settings, chain=chain_client, relayer=dev_accounts[0], monotonic=clock
    )
    app = create_app(settings, services=services)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield Api(client, services, AccessRegistry(chain_client), dev_accounts[0], clock)
    services.close()
