"""`trustmarket simulate`: a small federation locally and on Ray (the same figures), and bad set-ups refused."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from backend.cli import app
from backend.cli.simulate import attacker_counts

SMALL = ["simulate", "--trainers", "12", "--attackers", "0.25", "--rounds", "2", "--epochs", "1", "--json"]


def run(*args, env=None):
    result = CliRunner().invoke(app, list(args), env=env or {})
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.slow
def test_a_small_federation_locally_and_on_ray(ray_engine, tmp_path):
    env = {"TRUSTMARKET_HOME": str(tmp_path)}
    code, out, err = run(*SMALL, "--pool", "3", env=env)
    assert code == 0, err
    local = json.loads(out)
    assert local["attackers"] == {"sign_flip": 1, "label_flip": 1, "gaussian_noise": 1}
    assert [r["round"] for r in local["rounds"]] == [0, 1] and 0.0 <= local["test_accuracy"] <= 1.0
    paid = sum(int(v["paid_wei"]) for v in local["roles"].values()) + int(local["owner_refund_wei"])
    assert paid == 3 * 10**18 and local["roles"]["honest"]["trainers"] == 9

    code, out, err = run(*SMALL, "--pool", "3", "--engine", "ray", env=env)
    assert code == 0, err
    on_ray = json.loads(out)
    assert on_ray.pop("engine") == "ray" and local.pop("engine") == "local"
    assert on_ray == local  # virtual trainers as Ray tasks: the very same rounds and payouts


def test_attackers_are_spread_over_the_attacks_in_turn():
    assert attacker_counts(7, ["sign_flip", "sybil", "scale"]) == {"sign_flip": 3, "sybil": 2, "scale": 2}
    assert attacker_counts(0, ["sign_flip"]) == {}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--attack", "teleport"], "unknown attack(s) teleport"),
        (["--attack", "honest"], "unknown attack(s) honest"),
        (["--attackers", "1.5"], "--attackers"),
        (["--trainers", "0"], "--trainers"),
        (["--rule", "mean-ish"], "unknown aggregation rule"),
        (["--contribution", "banzhaf"], "contribution method"),
    ],
)
def test_bad_set_ups_are_refused_in_one_line(args, message):
    code, _, err = run("simulate", "--trainers", "6", "--rounds", "1", "--epochs", "1", *args)
    assert code == 2 and message in err
