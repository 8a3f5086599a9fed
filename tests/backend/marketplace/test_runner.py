"""The round runner against a real anvil with the deployed TrainingMarket and a LocalStore in tmp_path.

Every trainer here really registers, commits to its update, and once the commits close stores and reveals it on
chain; the runner reads the reveals from the contract's events, and every assertion about the result reads it
back from the chain or the store.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from marketplace_helpers import (
    MODEL,
    Marketplace,
    advance_time,
    assert_nothing_posted,
    bad_submission,
    open_marketplace,
    round_result,
)

from aggregator.models import model_spec
from backend.chain.anvil import mine_at
from backend.chain.training_market import ProjectStatus
from backend.marketplace.errors import MarketplaceError, RoundNotReady
from backend.marketplace.runner import RoundRunner
from backend.storage import LocalStore, fetch_verified, sha256_hex
from backend.storage.codec import ModelSpec, decode_state, encode_state

pytestmark = pytest.mark.chain


@pytest.fixture
def marketplace(chain_client, dev_accounts, tmp_path) -> Marketplace:
    return open_marketplace(chain_client, dev_accounts, tmp_path)


# -- a round that goes well ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "rule_params", "n_trainers"), [("fedavg", {}, 5), ("multi_krum", {"f": 1}, 6)]
)
def test_finalizes_and_posts_model_and_report_matching_the_chain(marketplace, rule, rule_params, n_trainers):
    m = marketplace
    project = m.create(rule=rule, rule_params=rule_params, n_trainers=n_trainers)
    m.submit_honest(project)
    submitted = {s.trainer: s for s in m.market.submissions(project.id, 0)}
    assert len(submitted) == n_trainers

    done = m.runner().finalize(project.id, 0)

    info, posted = m.market.project(project.id), m.market.round(project.id, 0)
    assert (info.status, info.current_round) == (ProjectStatus.COMPLETED, 1)
    assert posted.finalized_at > 0
    assert (posted.model_cid, posted.model_sha256) == (done.model.cid, done.model.sha256)
    assert (posted.report_cid, posted.report_sha256) == (done.report.cid, done.report.sha256)
    assert posted.result_digest == m.market.result_digest_of(project.id, 0, round_result(done))

    # Model and report are stored under the posted CIDs and hash to the posted sha256.
    model_bytes = fetch_verified(m.store, posted.model_cid, posted.model_sha256)
    report_bytes = fetch_verified(m.store, posted.report_cid, posted.report_sha256)
    assert (model_bytes, report_bytes) == (done.outcome.model_bytes, done.outcome.report_bytes)
    tensors, _ = decode_state(model_bytes, ModelSpec(model_spec(MODEL)))
    assert all(torch.equal(tensors[k], done.outcome.global_state[k]) for k in tensors)

    report = json.loads(report_bytes)
    context = report["context"]
    # Inputs: each submission's CID and sha256 as the chain recorded them, and the model the round started from.
    assert context["submissions"] == {t: {"cid": s.cid, "sha256": s.sha256} for t, s in submitted.items()}
    assert context["global_model"] == project.published.initial_model.model_dump()
    assert (context["project"], context["chain_id"], context["market"]) == (
        project.id,
        31337,
        m.market.address,
    )
    assert report["rule"]["name"] == rule
    assert {k: report["rule"]["params"][k] for k in rule_params} == rule_params
    # Flags with reasons and scores, per trainer.
    assert set(report["trainers"]) == set(submitted)
    for trainer, entry in report["trainers"].items():
        assert entry["score"] == done.outcome.scores[trainer]
        assert entry["status"] == ("flagged" if trainer in done.outcome.flagged else "scored")
        assert [f["reason"] for f in entry["flags"]] == [
            f.reason for f in done.outcome.flags if f.trainer == trainer
        ]
    assert report["flagged"] == done.outcome.flagged
    # Metrics, hyper-parameters (this round's and the next round's) and library versions.
    assert set(report["metrics"]) == {"accuracy_before", "accuracy_after", "loss_before", "loss_after"}
    assert all(math.isfinite(v) for v in report["metrics"].values())
    assert report["metrics"]["loss_after"] < report["metrics"]["loss_before"]
    assert report["hyperparams"]["next"]["client_lr"] < report["hyperparams"]["used"]["client_lr"]
    assert {"python", "torch", "numpy", "safetensors", "trustmarket"} <= set(context["versions"])
    assert context["versions"]["torch"] == torch.__version__

    # The chain recorded the runner's fixed-point scores and flags; scored trainers got a share of the pool.
    scores, flagged = m.posted(project, 0)
    assert scores == done.outcome.scores_fixed
    assert set(flagged) == set(done.outcome.flagged)
    assert sum(scores.values()) > 0
    for trainer in project.trainers:
        _, is_flagged, share = m.submission(project, 0, trainer)
        assert is_flagged == (trainer.address in done.outcome.flagged)
        assert (share > 0) == (scores[trainer.address] > 0)


def test_a_poisoned_update_is_flagged_as_an_outlier_and_scores_zero(marketplace):
    m = marketplace
    project = m.create(rule="multi_krum", rule_params={"f": 1}, n_trainers=6)
    m.submit_honest(project, list(project.trainers[:5]), close=False)
    attacker = project.trainers[5]
    model = m.model(project)
    poisoned = {k: -20.0 * v for k, v in m.honest_delta(project, 5, model).items()}  # sign flip, scaled
    m.submit_bytes(project, attacker, encode_state(poisoned, m.metadata(project, trainer=attacker)))
    m.close(project)

    done = m.runner().finalize(project.id, 0)

    assert done.outcome.flagged == [attacker.address]
    reasons = {f.reason for f in done.outcome.flags if f.trainer == attacker.address}
    assert reasons and "invalid" not in reasons
    scores, flagged = m.posted(project, 0)
    assert flagged == [attacker.address] and scores[attacker.address] == 0
    assert m.submission(project, 0, attacker)[1:] == (True, 0)
    report = json.loads(fetch_verified(m.store, done.report.cid, done.report.sha256))
    assert report["trainers"][attacker.address]["status"] == "flagged"
    assert {f["reason"] for f in report["trainers"][attacker.address]["flags"]} == reasons


# -- determinism -----------------------------------------------------------------------------------------------


def test_computing_a_round_twice_gives_identical_bytes_and_digest(marketplace, tmp_path):
    m = marketplace
    project = m.create(rule="multi_krum", rule_params={"f": 1}, n_trainers=6)
    m.submit_honest(project, list(project.trainers[:5]), close=False)
    bad_submission(m, project, project.trainers[5], "nan")
    m.close(project)
    copy = tmp_path / "copy"
    shutil.copytree(tmp_path / "store", copy)

    _, first = m.runner().compute(project.id, 0)
    _, again = RoundRunner(m.market, LocalStore(copy)).compute(project.id, 0)  # other store path, no key
    done = m.runner().finalize(project.id, 0)

    for outcome in (again, done.outcome):
        assert outcome.model_bytes == first.model_bytes
        assert outcome.report_bytes == first.report_bytes
        assert outcome.result_digest == first.result_digest
        assert outcome.scores_fixed == first.scores_fixed and outcome.flagged == first.flagged
    assert m.market.round(project.id, 0).report_sha256 == sha256_hex(first.report_bytes)


_RECOMPUTE = """
import json, sys
import torch
from backend.chain.artifacts import Artifacts
from backend.chain.client import ChainClient
from backend.chain.training_market import TrainingMarket
from backend.marketplace.runner import RoundRunner
from backend.storage import LocalStore
url, artifacts, market, store, project = sys.argv[1:]
torch.set_num_threads(1)  # another thread count than the test process's
runner = RoundRunner(TrainingMarket(ChainClient(url, Artifacts.load(artifacts)), market), LocalStore(store))
_, outcome = runner.compute(int(project), 0)
print(json.dumps([outcome.model_sha256, outcome.report_sha256, outcome.result_digest]))
"""


@pytest.mark.slow
def test_another_process_recomputes_the_same_bytes_and_digest(marketplace, tmp_path):
    m = marketplace
    project = m.create(rule="multi_krum", rule_params={"f": 1}, n_trainers=6)
    m.submit_honest(project)
    done = m.runner().finalize(project.id, 0)
    root = Path(__file__).resolve().parents[3]
    artifacts = root / ".build" / "__local__.json"
    args = [m.client.url, str(artifacts), m.market.address, str(tmp_path / "store"), str(project.id)]
    out = subprocess.run(
        [sys.executable, "-c", _RECOMPUTE, *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
        cwd=root,
    )
    model_sha, report_sha, digest = json.loads(out.stdout.strip().splitlines()[-1])
    assert (model_sha, report_sha) == (done.model.sha256, done.report.sha256)
    assert digest == done.outcome.result_digest


# -- keys and rounds -------------------------------------------------------------------------------------------


def test_finalize_refuses_a_key_that_is_not_the_projects_aggregator(marketplace):
    m = marketplace
    project = m.create(n_trainers=5)
    m.submit_honest(project)
    pins = m.store.pins()

    with pytest.raises(MarketplaceError, match=f"{m.outsider.address} is not the aggregator of project"):
        m.runner(m.outsider).finalize(project.id, 0)
    with pytest.raises(MarketplaceError, match="needs the aggregator's key"):
        RoundRunner(m.market, m.store).finalize(project.id, 0)

    assert_nothing_posted(m, project, pins)


def test_finalize_refuses_a_round_that_is_not_the_open_one(marketplace):
    m = marketplace
    project = m.create(n_trainers=5, rounds=2)
    m.submit_honest(project)
    runner = m.runner()
    with pytest.raises(RoundNotReady, match="round 1 is not the open round"):
        runner.finalize(project.id, 1)
    runner.finalize(project.id, 0)
    with pytest.raises(RoundNotReady, match="round 0 is not the open round"):
        runner.finalize(project.id, 0)
    with pytest.raises(RoundNotReady, match="round 2 is not the open round"):
        runner.finalize(project.id, 2)


def test_a_round_finalized_a_second_after_its_gas_estimate_gets_enough_gas(marketplace):
    m = marketplace
    project = m.create(n_trainers=5, rounds=2)
    m.submit_honest(project)
    runner = m.runner()
    runner.finalize(project.id, 0)
    finalized_at = m.client.timestamp()
    rpc = m.client.w3.provider.make_request
    m.submit_honest(project)  # round 1
    # Gas is estimated on the block of the last reveal; the transaction itself is mined a second later.
    revealed_at = m.client.timestamp()
    rpc("anvil_setBlockTimestampInterval", [0])
    try:
        rpc("evm_setNextBlockTimestamp", [revealed_at + 1])
        done = runner.finalize(project.id, 1)
    finally:
        rpc("anvil_removeBlockTimestampInterval", [])  # node configuration: a snapshot revert keeps it
    assert m.market.round(project.id, 1).finalized_at == revealed_at + 1 > finalized_at
    assert m.market.round(project.id, 1).report_sha256 == done.report.sha256


def test_ready_follows_commits_reveals_the_windows_and_the_deadline(marketplace):
    m = marketplace
    project = m.create(n_trainers=5, round_duration=60, reveal_window=60, aggregation_window=60)
    runner = m.runner()
    m.submit_honest(project, list(project.trainers[:4]), close=False)
    assert runner.ready(project.id) is None  # commits still open
    with pytest.raises(RoundNotReady, match="takes commitments until"):
        runner.finalize(project.id, 0)
    m.close(project, reveal=list(project.trainers[:3]))
    pins = m.store.pins()
    assert runner.ready(project.id) is None  # one committer has not revealed and the reveal window is open
    with pytest.raises(
        RoundNotReady, match="3 of 4 committed updates are revealed and the reveal window is open"
    ):
        runner.finalize(project.id, 0)
    mine_at(m.client, m.market.project(project.id).reveal_end + 1)
    assert (
        runner.ready(project.id) == 0
    )  # the reveal window is over: the unrevealed commitment missed the round
    advance_time(m.client, 61)
    assert runner.ready(project.id) is None  # past the aggregator's deadline: only cancel remains
    with pytest.raises(
        RoundNotReady, match=r"deadline \(\d+\) has passed; the project can only be cancelled"
    ):
        runner.finalize(project.id, 0)
    assert_nothing_posted(m, project, pins)


# -- watch -----------------------------------------------------------------------------------------------------


def test_watch_finalizes_rounds_as_they_become_ready_and_stops_when_the_project_ends(marketplace):
    m = marketplace
    project = m.create(n_trainers=5, rounds=3, round_duration=60)
    m.submit_honest(project)  # round 0: everyone reveals, so it is ready once commits close
    finalized = []

    def next_round(done) -> None:
        finalized.append(done)
        if done.round == 0:  # round 1: one trainer never reveals; the round is ready once reveals are over
            m.submit_honest(project, close=False)
            m.close(project, reveal=list(project.trainers[:4]))
            mine_at(m.client, m.market.project(project.id).reveal_end + 1)
        elif done.round == 1:
            m.submit_honest(project)

    deadline = time.monotonic() + 120  # the guard: the test can never hang
    m.runner().watch(
        [project.id], poll=0.05, until=lambda: time.monotonic() > deadline, on_finalized=next_round
    )

    assert time.monotonic() <= deadline, "watch returned because the project ended, not through the guard"
    assert [d.round for d in finalized] == [0, 1, 2]
    assert m.market.project(project.id).status is ProjectStatus.COMPLETED
    assert [len(m.posted(project, r)[0]) for r in range(3)] == [5, 4, 5]
    for done in finalized:
        assert m.market.round(project.id, done.round).report_sha256 == done.report.sha256


def test_watch_stops_at_its_guard_while_no_round_is_ready(marketplace):
    m = marketplace
    project = m.create(n_trainers=5)
    m.submit_honest(project, list(project.trainers[:2]), close=False)  # commits still open
    polls = []
    m.runner().watch([project.id], poll=0.01, until=lambda: polls.append(1) or len(polls) > 3)
    assert len(polls) == 4
    assert m.market.project(project.id).current_round == 0


def test_watch_gives_up_on_a_project_whose_deadline_passed(marketplace):
    m = marketplace
    project = m.create(n_trainers=5, round_duration=60, reveal_window=60, aggregation_window=60)
    m.submit_honest(project, list(project.trainers[:4]))
    mine_at(m.client, m.market.project(project.id).aggregation_deadline + 1)
    pins = m.store.pins()
    guard = []
    m.runner().watch([project.id], poll=0.01, until=lambda: guard.append(1) or len(guard) > 50)
    assert len(guard) < 50, "watch returned by itself instead of waiting for a round nobody can finalize"
    assert_nothing_posted(m, project, pins)


def test_watch_moves_on_from_a_round_with_too_few_updates_to_the_other_projects(marketplace):
    m = marketplace
    stuck = m.create(n_trainers=6, rule="multi_krum", rule_params={"f": 1}, round_duration=60)
    m.submit_honest(
        stuck, list(stuck.trainers[:2])
    )  # Krum with f=1 needs 5: this round can never be aggregated
    healthy = m.create(n_trainers=5)
    m.submit_honest(healthy)  # every committer revealed: the stuck round is ready, so watch tries it
    finalized = []
    guard = []
    m.runner().watch(
        [stuck.id, healthy.id],
        poll=0.01,
        until=lambda: guard.append(1) or len(guard) > 100,
        on_finalized=finalized.append,
    )
    assert len(guard) < 100, "watch should end once the healthy project is done and the stuck one given up"
    assert [(d.project_id, d.round) for d in finalized] == [(healthy.id, 0)]
    assert m.market.project(stuck.id).current_round == 0
