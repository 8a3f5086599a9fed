"""A smaller `make demo` in CI: the marketplace on anvil with attackers, end to end."""

from __future__ import annotations

import json

import pytest

from backend.marketplace.demo import DemoConfig, run_demo

ROLES = {"honest", "sign_flip", "label_flip", "free_rider", "sybil"}


@pytest.mark.slow
def test_demo_pays_honest_trainers_and_empties_the_escrow(tmp_path, compiled_artifacts):
    report = run_demo(tmp_path, DemoConfig(rounds=2))
    assert json.loads((tmp_path / "report.json").read_text()) == report

    pool = int(report["pool_wei"])
    trainers = report["trainers"]
    assert {t["role"] for t in trainers} == ROLES and len(trainers) == 10
    for t in trainers:
        assert set(t) >= {
            "address",
            "role",
            "score",
            "reward_wei",
            "stake_returned_wei",
            "slashed_wei",
            "flagged_rounds",
            "rejected_rounds",
            "shard_size",
            "label_coverage",
        }
        assert all(
            isinstance(t[k], str) and t[k].isdigit()
            for k in ("reward_wei", "stake_returned_wei", "slashed_wei")
        )
    honest = sum(int(t["reward_wei"]) for t in trainers if t["role"] == "honest")
    bad = sum(int(t["reward_wei"]) for t in trainers if t["role"] != "honest")
    assert honest >= 0.9 * pool and bad <= 0.05 * pool
    # Every attacker is flagged or left out by a defense at least once, or earns nothing; no honest trainer is
    # ever flagged, and each honest share is reported beside the trainer's data.
    for t in trainers:
        if t["role"] != "honest":
            assert t["flagged_rounds"] or t["rejected_rounds"] or int(t["reward_wei"]) <= 0.01 * pool
        else:
            assert not t["flagged_rounds"] and t["shard_size"] > 0 and 1 <= t["label_coverage"] <= 10

    assert [r["round"] for r in report["rounds"]] == [0, 1]
    assert report["rounds"][-1]["accuracy"] > report["rounds"][0]["accuracy"] > 0.5
    assert all(v["match"] for v in report["verified"])
    assert report["contract_balance_wei"] == "0"
