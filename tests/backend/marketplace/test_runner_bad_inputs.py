"""Bad input to the round runner, against a real anvil with the deployed TrainingMarket and a LocalStore: a bad
update flags its trainer with the reason and scores 0 while the round finalizes; too few usable updates, or a
store that is down, raise and post nothing.
"""

from __future__ import annotations

import json
import socket

import pytest
from marketplace_helpers import (
    Marketplace,
    assert_nothing_posted,
    bad_submission,
    open_marketplace,
)

from aggregator.errors import InsufficientUpdates
from backend.chain.training_market import ProjectStatus
from backend.marketplace.manifest import ContentRef
from backend.marketplace.runner import RoundRunner
from backend.storage import KuboStore, LocalStore, StoreUnavailable, fetch_verified

pytestmark = pytest.mark.chain


@pytest.fixture
def marketplace(chain_client, dev_accounts, tmp_path) -> Marketplace:
    return open_marketplace(chain_client, dev_accounts, tmp_path)


# -- bad input: the trainer is flagged with the reason and scores 0; the round still finalizes ------------------


BAD_INPUTS = {
    "wrong_shape": "has shape",
    "wrong_dtype": "has dtype float64, expected float32",
    "missing_tensor": "missing tensor",
    "nan": "non-finite",
    "inf": "non-finite",
    "garbage": "not a safetensors file",
    "unreachable_cid": "ContentNotFound",
    "invalid_cid": "unusable CID: not a valid CID",
    "hash_mismatch": "IntegrityError",
    "other_round": "round='1', expected '0'",
    "other_project": "project=",
    "other_base_model": "base_model_cid=",
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_update_is_flagged_with_its_reason_scores_zero_and_the_round_finalizes(marketplace, case):
    m = marketplace
    project = m.create(rule="fedavg", n_trainers=6)
    honest, bad = list(project.trainers[:5]), project.trainers[5]
    m.submit_honest(project, honest, close=False)
    bad_submission(m, project, bad, case)
    m.close(project)

    done = m.runner().finalize(project.id, 0)

    flags = [f for f in done.outcome.flags if f.trainer == bad.address]
    assert [f.reason for f in flags] == ["invalid"]
    assert BAD_INPUTS[case] in flags[0].detail["error"]
    assert done.outcome.flagged == [bad.address], "only the bad trainer is flagged"
    # On chain: the round is final, the bad trainer is flagged with score 0 and no share, the others are paid.
    assert m.market.project(project.id).status is ProjectStatus.COMPLETED
    scores, flagged = m.posted(project, 0)
    assert flagged == [bad.address] and scores[bad.address] == 0
    assert m.submission(project, 0, bad) == (True, True, 0)
    assert m.market.trainer(project.id, bad.address).flags == 1
    assert sum(m.submission(project, 0, t)[2] for t in honest) > 0
    report = json.loads(fetch_verified(m.store, done.report.cid, done.report.sha256))
    entry = report["trainers"][bad.address]
    assert entry["status"] == "flagged" and entry["score"] == 0.0 and entry["update_sha256"] is None
    assert BAD_INPUTS[case] in entry["flags"][0]["detail"]["error"]


def test_resubmitting_last_rounds_update_is_a_replay_flagged_in_the_new_round(marketplace):
    m = marketplace
    project = m.create(rule="fedavg", n_trainers=5, rounds=2)
    m.submit_honest(project)
    runner = m.runner()
    runner.finalize(project.id, 0)
    lazy = project.trainers[4]
    old = next(s for s in m.market.submissions(project.id, 0) if s.trainer == lazy.address)
    m.submit_honest(project, list(project.trainers[:4]), close=False)
    m.commit_ref(project, lazy, ContentRef(cid=old.cid, sha256=old.sha256))  # the very bytes paid in round 0
    m.close(project)

    done = runner.finalize(project.id, 1)

    assert done.outcome.flagged == [lazy.address]
    assert "round='0', expected '1'" in done.outcome.flags[0].detail["error"]
    assert m.submission(project, 1, lazy) == (True, True, 0)
    assert m.submission(project, 0, lazy)[1] is False  # its round-0 standing is untouched


def test_a_copied_update_flags_only_its_copier(marketplace):
    """F-2 of #12: the copier reveals the author's very bytes (handed over off chain: on chain nothing identifies
    an update before the commits close). The update names its author, so the runner refuses it as the copier's
    (`copied_update`) and the author is scored, not flagged as the copier's Sybil twin."""
    m = marketplace
    project = m.create(rule="fedavg", n_trainers=6)
    honest, copier = list(project.trainers[:5]), project.trainers[5]
    author = honest[0]
    m.submit_honest(project, honest, close=False)
    authors = m.pending[(project.id, 0)][author.address][1]
    m.commit_ref(project, copier, authors)
    m.close(project)

    done = m.runner().finalize(project.id, 0)

    assert done.outcome.flagged == [copier.address]
    flags = [f for f in done.outcome.flags if f.trainer == copier.address]
    assert [f.reason for f in flags] == ["copied_update"]
    assert author.address.lower() in flags[0].detail["error"]
    scores, flagged = m.posted(project, 0)
    assert flagged == [copier.address] and scores[copier.address] == 0 and scores[author.address] > 0
    assert m.submission(project, 0, author)[1] is False


# -- too few valid updates, a store that is down: an error and nothing posted ---------------------------------


def test_too_few_valid_updates_for_the_rule_raises_and_posts_nothing(marketplace):
    m = marketplace
    project = m.create(rule="multi_krum", rule_params={"f": 1}, n_trainers=5)  # Krum: n >= 2f + 3 = 5
    m.submit_honest(project, list(project.trainers[:4]), close=False)
    bad_submission(m, project, project.trainers[4], "garbage")
    m.close(project)
    pins = m.store.pins()

    with pytest.raises(InsufficientUpdates, match="needs 5 usable updates, got 4 of 5") as caught:
        m.runner().finalize(project.id, 0)

    assert (caught.value.have, caught.value.need) == (4, 5)
    assert_nothing_posted(m, project, pins)


def test_a_round_without_submissions_raises_and_posts_nothing(marketplace):
    m = marketplace
    project = m.create(rule="fedavg", n_trainers=5, round_duration=60)
    m.close(project)  # commits closed with none, the validation shard revealed
    runner = m.runner()
    assert runner.ready(project.id) == 0  # nobody committed, so nobody is left to reveal: the round is due
    pins = m.store.pins()

    with pytest.raises(InsufficientUpdates, match="got 0 of 0"):
        runner.finalize(project.id, 0)

    assert_nothing_posted(m, project, pins)


def _dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed on exit: nothing listens there


def test_a_kubo_node_that_is_down_stops_the_round(marketplace):
    m = marketplace
    project = m.create(n_trainers=5)
    m.submit_honest(project)
    pins = m.store.pins()
    runner = RoundRunner(m.market, KuboStore(f"http://127.0.0.1:{_dead_port()}", timeout=2.0), m.aggregator)

    with pytest.raises(StoreUnavailable, match="unreachable"):
        runner.finalize(project.id, 0)

    assert_nothing_posted(m, project, pins)


class _StoreDownFor(LocalStore):
    """A LocalStore whose reads of some CIDs fail as if the node serving them were down."""

    def __init__(self, root, down: set[str]):
        super().__init__(root)
        self.down = down

    def get(self, cid: str) -> bytes:
        if cid in self.down:
            raise StoreUnavailable(f"store timed out reading {cid}")
        return super().get(cid)

    def get_to(self, cid: str, path) -> None:  # the runner streams updates into files
        if cid in self.down:
            raise StoreUnavailable(f"store timed out reading {cid}")
        super().get_to(cid, path)


def test_a_store_outage_while_reading_updates_stops_the_round_instead_of_flagging(marketplace, tmp_path):
    m = marketplace
    project = m.create(n_trainers=5)
    m.submit_honest(project)
    victim = m.market.submissions(project.id, 0)[2]
    pins = m.store.pins()
    store = _StoreDownFor(tmp_path / "store", {victim.cid})  # the same directory as m.store

    with pytest.raises(StoreUnavailable, match=victim.cid):
        RoundRunner(m.market, store, m.aggregator).finalize(project.id, 0)

    assert_nothing_posted(m, project, pins)
    store.down.clear()  # once the store is back, the very same round finalizes with nobody flagged
    assert RoundRunner(m.market, store, m.aggregator).finalize(project.id, 0).outcome.flagged == []
