"""What the explorer does when a part is missing or broken: a chain that is down, a store that is empty,
corrupted or unreachable, a deployment without a SourceRegistry. Every page says what is wrong in one line and
shows what it still can; nothing raises."""

from __future__ import annotations

import pytest
from explorer_helpers import explorer_client, rows, text

from backend.chain.deployments import Deployments

pytestmark = [pytest.mark.chain, pytest.mark.slow]


def test_a_chain_that_is_down_is_a_503_page_and_a_503_head(showcase_settings):
    dead = showcase_settings.model_copy(update={"chain_url": "http://127.0.0.1:9"})
    with explorer_client(dead) as client:
        for path in ("/", "/projects/1", "/projects/1/rounds/0", "/sources"):
            response = client.get(path)
            assert response.status_code == 503, path
            assert "text/html" in response.headers["content-type"]
            assert "127.0.0.1:9" in text(response.text)
        assert client.get("/explorer/head").status_code == 503
        assert client.get("/projects/1/rounds/0/report.json").status_code == 503


def test_an_empty_store_leaves_the_chains_figures_and_says_the_report_is_missing(
    showcase, showcase_settings, tmp_path, market
):
    empty = showcase_settings.model_copy(update={"store_path": tmp_path / "empty-store"})
    with explorer_client(empty) as client:
        pid = showcase.demo_project
        page = client.get(f"/projects/{pid}/rounds/0").text
        assert "Report: not in the content store" in text(page)
        shares = {a: row for a, row in rows(page, "data-trainer").items()}
        assert len(shares) == market.project(pid).trainer_count  # from the chain's events alone
        project = text(client.get(f"/projects/{pid}").text)
        assert "manifest" in project and "not in the content store" in project
        response = client.get(f"/projects/{pid}/rounds/0/report.json")
        assert response.status_code == 502 and "not in the content store" in response.json()["error"]
        update = text(
            client.get(f"/projects/{pid}/rounds/0/updates/{market.submissions(pid, 0)[0].trainer}").text
        )
        assert "missing" in update


def test_a_corrupted_report_is_named_as_such(showcase, corrupted_store_settings):
    with explorer_client(corrupted_store_settings) as client:
        page = text(client.get(f"/projects/{showcase.demo_project}/rounds/1").text)
        assert "corrupted" in page or "do not match the sha256" in page


def test_a_store_that_is_down_is_said_on_the_page(showcase, showcase_settings):
    down = showcase_settings.model_copy(update={"store": "kubo", "kubo_url": "http://127.0.0.1:9"})
    with explorer_client(down) as client:
        response = client.get(f"/projects/{showcase.demo_project}/rounds/0")
        assert response.status_code == 200
        assert "the content store is unreachable" in text(response.text)


def test_a_deployment_without_a_source_registry_says_so(showcase, showcase_settings, tmp_path):
    deployments = Deployments(
        network=showcase.deployments.network,
        chain_id=showcase.deployments.chain_id,
        contracts={k: v for k, v in showcase.deployments.contracts.items() if k != "SourceRegistry"},
    )
    deployments.save(tmp_path / "deployments" / "local.json")
    settings = showcase_settings.model_copy(update={"deployments_dir": tmp_path / "deployments"})
    with explorer_client(settings) as client:
        assert "This deployment has no SourceRegistry" in text(client.get("/sources").text)
        assert client.get("/sources/1").status_code == 404
        assert client.get("/").status_code == 200


def test_a_node_missing_the_registrys_early_events_shows_the_contracts_record_and_says_so(client, showcase):
    """A node that pruned the registry's early logs (here: an index started after the first batches): the replay
    cannot end at the contract's record, so the page keeps the contract's figure and says the history is short."""
    from backend.api.explorer.sources import SourcesLedger

    parts = client.app.state.explorer.parts()
    registry, ledger = parts.sources.registry, parts.ledger
    [third] = [e for e in registry.feedback_batches() if e.batch == 3]
    late = SourcesLedger(registry, third.block, ledger.block_time, ledger.head)
    reliable = late.source(showcase.source_ids[0])
    assert reliable is not None and not reliable.consistent
    assert (
        reliable.reliability == registry.reliabilities()[showcase.source_ids[0]]
    )  # the truth, not the replay
    parts.sources, kept = late, parts.sources
    try:
        page = text(client.get(f"/sources/{showcase.source_ids[0]}").text)
    finally:
        parts.sources = kept
    assert "does not give the reliability the contract holds now" in page
