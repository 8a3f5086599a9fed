"""The explorer's pages against a chain holding the demo's rounds: every number shown is the chain's (through
the facade) or the report's (from the store, by the CID and sha256 the chain holds)."""

from __future__ import annotations

import asyncio
import json
import re

import pytest
from explorer_helpers import data, rows, text, visible_keys

from backend.api.explorer.routes import block_stream
from backend.chain.keys import dev_account
from backend.chain.reads import pinned_reads
from backend.storage import fetch_verified

pytestmark = [pytest.mark.chain, pytest.mark.slow]


def _report(ledger, project, round_):
    rd = ledger.market.round(project, round_)
    return json.loads(fetch_verified(ledger.store, rd.report_cid, rd.report_sha256))


def test_the_projects_page_lists_every_project_with_the_chains_figures(client, market, showcase):
    page = client.get("/").text
    listed = rows(page, "data-project")
    assert set(listed) == {str(showcase.demo_project), str(showcase.running_project)}
    for pid, row in listed.items():
        info = market.project(int(pid))
        weis = [int(w) for w in re.findall(r'data-wei="(\d+)"', row)]
        assert weis == [info.pool, info.escrow]
        assert data(row, "rounds") == str(info.rounds)
    assert "digits_mlp" in text(page) and "trimmed mean" in text(page)  # the demo runs the default rule


def test_a_project_page_adds_up_to_the_chain(client, market, ledger, showcase):
    pid = showcase.demo_project
    page = client.get(f"/projects/{pid}").text
    info = market.project(pid)
    finalized = market.client.events("TrainingMarket", "RoundFinalized", filters={"projectId": pid})
    allocated = sum(int(e["args"]["allocated"]) for e in finalized)
    claimed = market.client.events("TrainingMarket", "Claimed", filters={"projectId": pid})

    def wei(element_id):
        match = re.search(rf'id="{element_id}"[^>]*>\s*<span class="wei" data-wei="(\d+)"', page)
        return int(match.group(1))

    assert wei("pool") == info.pool and wei("allocated") == allocated and wei("escrow") == info.escrow
    assert wei("paid") == sum(int(e["args"]["amount"]) for e in claimed)
    for r, row in rows(page, "data-round").items():
        report = _report(ledger, pid, int(r))
        assert float(data(row, "metric")) == report["metrics"]["accuracy_after"]
        assert int(data(row, "flagged")) == len(report["flagged"]) == market.round(pid, int(r)).flagged_count
    attested = rows(page, "data-attested-round")
    assert sorted(int(r) for r in attested) == showcase.attested_rounds
    assert all(market.is_round_attested(pid, r) for r in showcase.attested_rounds)
    trainers = rows(page, "data-trainer")
    assert len(trainers) == info.trainer_count
    for address, row in trainers.items():
        record = market.trainer(pid, address)
        assert int(data(row, "reward")) == record.reward and int(data(row, "flags")) == record.flags
    charts = [json.loads(c) for c in re.findall(r'class="chart-data">(.*?)</script>', page, re.S)]
    accuracy = next(c for c in charts if c["name"] == "accuracy-loss")["series"][0]["values"]
    assert accuracy[1:] == [_report(ledger, pid, r)["metrics"]["accuracy_after"] for r in range(info.rounds)]
    assert "Nothing left to claim" in text(page)


def test_a_running_project_says_what_the_owner_may_still_do_with_countdowns(client, market, showcase):
    pid = showcase.running_project
    page = client.get(f"/projects/{pid}").text
    seen = text(page)
    assert (
        "Wait for round 1" in seen
        and "2 of 2 committed updates revealed; the reveal window closes in" in seen
    )
    assert "Challenge round 0 if it does not recompute" in seen
    assert "Cancel if the aggregator stalls" in seen
    window_end = market.round(pid, 0).finalized_at + market.project(pid).challenge_window
    now = market.client.timestamp()
    remaining = [int(x) for x in re.findall(r'data-remaining="(-?\d+)"', page)]
    assert any(abs(window_end - now - r) <= 5 for r in remaining)  # the challenge window's countdown
    assert "No round of this project is attested yet" in seen


def test_a_round_page_shows_every_trainer_as_the_chain_and_the_report_do(client, market, ledger, showcase):
    pid = showcase.demo_project
    for r in range(market.project(pid).rounds):
        page = client.get(f"/projects/{pid}/rounds/{r}").text
        report = _report(ledger, pid, r)
        scored = market.client.events("TrainingMarket", "RoundScored", filters={"projectId": pid, "round": r})
        posted = dict(zip(scored[0]["args"]["trainers"], scored[0]["args"]["scores"], strict=True))
        listed = rows(page, "data-trainer")
        assert set(listed) == set(report["trainers"]) == set(posted)
        for address, row in listed.items():
            entry = report["trainers"][address]
            assert int(data(row, "share")) == market.submission_entry(pid, r, address).share
            assert (
                float(data(row, "score")) == entry["score"]
                and int(data(row, "score-fixed")) == posted[address]
            )
            assert float(data(row, "weight")) == entry["aggregation_weight"]
            assert data(row, "status") == entry["status"]
            if entry["flags"]:
                assert "none" not in text(row.split('class="flags"')[1].split("</td>")[0])
        assert not visible_keys(page), visible_keys(page)
        assert page.count("Why did") == len(listed)
        assert "the contract credits floor(pool x" in text(page)
        expected = "attested by the committee" if r in showcase.attested_rounds else "window closed: final"
        assert expected in text(page)


def test_every_flag_of_the_demo_reads_as_a_sentence(client, ledger, showcase):
    pid = showcase.demo_project
    reasons = set()
    for r in range(3):
        page = text(client.get(f"/projects/{pid}/rounds/{r}").text)
        for entry in _report(ledger, pid, r)["trainers"].values():
            reasons |= {f["reason"] for f in entry["flags"]}
        assert "x the median" in page or "nearly identical" in page
    assert "free_rider" in reasons  # the demo's attackers are caught, and named in words


def test_an_open_rounds_submitters_are_listed_before_anything_is_credited(client, showcase):
    page = client.get(f"/projects/{showcase.running_project}/rounds/1").text
    listed = rows(page, "data-trainer")
    assert len(listed) == 2 and all(data(row, "status") == "revealed" for row in listed.values())
    assert "The round is not finalized yet: nothing has been credited." in text(page)


def test_a_trainer_page_spans_projects(client, market, showcase):
    address = market.client.w3.eth.account.from_key(b"\x00" * 31 + b"\x01").address  # not a trainer
    assert "has not registered in any project" in text(client.get(f"/trainers/{address}").text)
    trainer = showcase.demo_report["trainers"][0]["address"]  # an honest demo trainer, also in project 2
    page = client.get(f"/trainers/{trainer}").text
    sections = re.findall(r'<section class="trainer-project" data-project="(\d+)"', page)
    assert sections == [str(showcase.running_project), str(showcase.demo_project)]
    for pid in map(int, sections):
        record = market.trainer(pid, trainer)
        chunk = page.split(f'data-project="{pid}"')[1]
        assert int(data(chunk, "stake")) == record.stake and int(data(chunk, "reward")) == record.reward
    demo = page.split(f'data-project="{showcase.demo_project}"')[1]
    shares = {r: data(row, "share") for r, row in rows(demo, "data-round").items()}
    assert {int(r): int(s) for r, s in shares.items()} == {
        r: market.submission_entry(showcase.demo_project, r, trainer).share for r in range(3)
    }
    assert client.get("/trainers?address=" + trainer, follow_redirects=False).status_code == 303


def test_the_sources_pages_show_the_contracts_records_and_replay_them_exactly(client, showcase):
    sources = client.app.state.explorer.parts().sources
    registry = sources.registry
    page = client.get("/sources").text
    listed = rows(page, "data-source")
    now = registry.reliabilities()
    assert set(listed) == {str(i) for i in showcase.source_ids}
    for sid, row in listed.items():
        info, truth = registry.source(int(sid)), now[int(sid)]
        assert float(data(row, "mean")) == truth.mean
        assert float(data(row, "observations")) == truth.observations
        assert data(row, "budget") == f"{truth.budget_positive},{truth.budget_negative}"
        assert int(data(row, "wei")) == info.bond
    assert data(page, "batches") == str(registry.batches())
    [(epoch, evaluator, _salt, _set)] = registry.revealed_canaries()
    canaries = rows(page, "data-canaries")
    assert list(canaries) == [str(epoch)] and registry.canaries(evaluator, epoch).revealed
    assert (
        "in block" in text(canaries[str(epoch)])
        and f"/sources/{showcase.source_ids[1]}" in canaries[str(epoch)]
    )
    assert data(page, "epoch-now") == str(registry.current_epoch())
    reliable, corpus_changed, leaver, heir = showcase.source_ids
    # The epoch's batch spent part of source 1's budget (2 of 10 positive) and of source 4's (1 negative).
    assert data(listed[str(reliable)], "budget") == "8000,10000"
    assert data(listed[str(heir)], "budget") == "10000,9000"

    # Every history ends where the contract's record is: the replay follows inheritance, resets and forgetting.
    for sid in showcase.source_ids:
        detail = client.get(f"/sources/{sid}").text
        changes = rows(detail, "data-change")
        assert float(data(list(changes.values())[-1], "mean")) == now[sid].mean, sid
        assert "does not give the reliability the contract holds" not in detail

    detail = client.get(f"/sources/{reliable}").text
    kinds = [data(c, "kind") for c in rows(detail, "data-change").values()]
    assert kinds == ["registered"] + ["feedback"] * 8  # source 1 was in every batch
    assert (
        float(data(detail, "forgotten")) > 0
    )  # 40 observations kept: the last batches pushed older ones out
    assert (now[reliable].alpha + now[reliable].beta) == sources.rules.max_evidence

    detail = client.get(f"/sources/{corpus_changed}").text
    assert "new corpus" in [data(c, "kind") for c in rows(detail, "data-change").values()]
    slashes = rows(detail, "data-slash")
    [slash] = registry.slashes()
    assert list(slashes) == [str(slash.epoch)]
    assert int(data(slashes[str(slash.epoch)], "wei")) == slash.amount > 0
    assert registry.source(corpus_changed).bond == 2 * sources.rules.min_bond - slash.amount

    detail = client.get(f"/sources/{heir}").text
    first = next(iter(rows(detail, "data-change").values()))
    assert data(first, "kind") == "inherited" and f"/sources/{leaver}" in first
    assert "withdrawn" in text(client.get(f"/sources/{leaver}").text)
    assert f"/sources/{heir}" in client.get(f"/sources/{leaver}").text


def test_an_update_page_describes_the_update_without_serving_it(client, market, showcase):
    pid = showcase.demo_project
    sub = market.submissions(pid, 1)[0]
    response = client.get(f"/projects/{pid}/rounds/1/updates/{sub.trainer}")
    page = text(response.text)
    assert sub.cid in page and sub.sha256 in page and "verified" in page
    assert page.count("yes") >= 3 and "0.weight" in page  # bound to project, round and base model
    assert b"__metadata__" not in response.content  # a description, not the safetensors bytes


def test_the_report_json_is_the_stored_report_checked_against_the_chain(client, market, ledger, showcase):
    pid = showcase.demo_project
    response = client.get(f"/projects/{pid}/rounds/0/report.json")
    assert response.status_code == 200 and response.json() == _report(ledger, pid, 0)
    assert response.headers["x-content-sha256"] == market.round(pid, 0).report_sha256
    assert client.get(f"/projects/{showcase.running_project}/rounds/1/report.json").status_code == 404


@pytest.mark.parametrize(
    "path, words",
    [
        ("/projects/99", "no project 99"),
        ("/projects/abc", "a project id must be a whole number"),
        ("/projects/1/rounds/7", "project 1 has rounds 0..2, not 7"),
        ("/trainers/0x123", "is not an address"),
        ("/trainers?address=nope", "is not an address"),
        ("/sources/42", "no source 42"),
        ("/projects/1/rounds/0/updates/0x0000000000000000000000000000000000000001", "submitted no update"),
    ],
)
def test_unknown_things_are_a_404_page_that_says_what(client, path, words):
    response = client.get(path)
    assert response.status_code == 404 and "text/html" in response.headers["content-type"]
    assert words in text(response.text)


def test_every_finalized_round_is_recomputed_and_matches(client, ledger, showcase):
    parts = client.app.state.explorer.parts()
    client.get(f"/projects/{showcase.demo_project}")
    client.get(f"/projects/{showcase.running_project}")
    assert parts.verifications.wait(timeout=300)
    page = client.get(f"/projects/{showcase.demo_project}/rounds/2").text
    assert "recomputed bit for bit" in text(page)
    assert set(parts.verifications.snapshot().values()) == {"match"}


def test_the_stream_announces_the_head_and_each_new_block(client, market, ledger, monkeypatch):
    explorer = client.app.state.explorer
    explorer.settings = explorer.settings.model_copy(update={"stream_poll_s": 0.05, "stream_max_s": 30})

    async def collect():
        seen = []
        calls = 0

        async def gone():
            return len(seen) >= 2

        async for message in block_stream(explorer, gone):
            calls += 1
            if message.startswith("event: block"):
                seen.append(json.loads(message.split("data: ")[1]))
                if len(seen) == 1:
                    market.client.w3.provider.make_request("evm_mine", [])
        return seen

    with pinned_reads():  # as inside the request that opened the stream: each poll must pin afresh
        first, second = asyncio.run(collect())
    assert second["number"] == first["number"] + 1
    head = client.get("/explorer/head").json()
    assert head["number"] >= second["number"]

    # However many pages are open, their streams ask the node for the head once per poll interval.
    explorer.settings = explorer.settings.model_copy(update={"stream_poll_s": 60})
    asked, real = [], ledger.client.pinned_head
    monkeypatch.setattr(ledger.client, "pinned_head", lambda: asked.append(1) or real())
    explorer._stream_head = None
    assert explorer.stream_head() == explorer.stream_head() == explorer.stream_head()
    assert len(asked) == 1
    explorer.settings = explorer.settings.model_copy(update={"stream_poll_s": 0.05})


def test_a_new_block_rereads_what_time_changes_and_an_event_or_a_reset_the_rest(
    client, ledger, market, showcase, monkeypatch
):
    """Storage views are kept across blocks until the market emits an event; a chain that went back (anvil's
    revert) is indexed again, so nothing of the abandoned branch stays on the page."""
    pid, w3 = showcase.running_project, market.client.w3
    reads = {"trainer": 0, "round": 0}
    for name in reads:
        real = getattr(market, name)

        def counted(*args, _real=real, _name=name):
            reads[_name] += 1
            return _real(*args)

        monkeypatch.setattr(market, name, counted)
    listed = set(rows(client.get(f"/projects/{pid}").text, "data-trainer"))
    w3.provider.make_request("evm_mine", [])
    reads.update(trainer=0, round=0)
    logs = []
    real_logs = market.client.contracts_events
    monkeypatch.setattr(
        market.client, "contracts_events", lambda c, **k: logs.append(sorted(c.values())) or real_logs(c, **k)
    )
    assert set(rows(client.get(f"/projects/{pid}").text, "data-trainer")) == listed
    assert reads == {"trainer": 0, "round": 0}  # a new block, no event: nothing in storage changed
    assert logs == [
        ["SourceRegistry", "TrainingMarket", "VerifierCommittee"]
    ]  # one eth_getLogs for all three
    version = ledger.events.version
    ledger.events.sync(ledger.events.synced - 1)  # a request pinned to an older block than others saw
    assert ledger.events.version == version  # is no reset: the node's newest block is still ahead
    assert ledger.events.version_at(0) == (version[0], 0)

    snapshot = w3.provider.make_request("evm_snapshot", [])["result"]
    newcomer = dev_account(12, market.client.chain_id)
    try:
        market.register(newcomer, pid, market.project(pid).min_stake)
        after = set(rows(client.get(f"/projects/{pid}").text, "data-trainer"))
        assert after == listed | {newcomer.address}
        assert reads["trainer"] == len(after)  # the event made every record of the project fresh
    finally:
        w3.provider.make_request("evm_revert", [snapshot])
    assert set(rows(client.get(f"/projects/{pid}").text, "data-trainer")) == listed
