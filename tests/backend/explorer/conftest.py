"""One showcase chain per session for every explorer test (the demo's rounds, a running project, sources), and
apps over it: the real one, and ones whose chain or store is missing, empty, corrupted or down."""

from __future__ import annotations

import shutil

import pytest
from explorer_helpers import explorer_client


@pytest.fixture(scope="session")
def showcase(tmp_path_factory, compiled_artifacts):
    from backend.api.explorer.showcase import build_showcase
    from backend.chain.anvil import start_anvil

    node = start_anvil(attach=False)
    try:
        yield build_showcase(tmp_path_factory.mktemp("showcase"), chain_url=node.url)
    finally:
        node.stop()


@pytest.fixture(scope="session")
def showcase_settings(showcase, tmp_path_factory):
    return showcase.settings(tmp_path_factory.mktemp("explorer-home"))


@pytest.fixture(scope="session")
def client(showcase_settings):
    with explorer_client(showcase_settings) as c:
        yield c


@pytest.fixture(scope="session")
def ledger(client):
    return client.app.state.explorer.parts().ledger


@pytest.fixture(scope="session")
def market(ledger):
    return ledger.market


@pytest.fixture
def corrupted_store_settings(showcase, showcase_settings, tmp_path):
    """A copy of the showcase's store in which every block of every round report has one byte flipped."""
    copy = tmp_path / "store"
    shutil.copytree(showcase.store_path, copy)
    flipped = 0
    for block in (copy / "blocks").rglob("*"):
        if block.is_file() and b'"outlier_config"' in (data := block.read_bytes()):
            at = data.index(b'"outlier_config"')
            block.write_bytes(data[:at] + b"X" + data[at + 1 :])
            flipped += 1
    assert flipped
    return showcase_settings.model_copy(update={"store_path": copy})
