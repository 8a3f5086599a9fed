"""Federations larger than the data (shards drawn per trainer), virtual trainers trained on any engine, and what
the contract would pay out of a simulation."""

from __future__ import annotations

import pytest
import torch

from aggregator.data import load_digits_data, sampled_shards
from aggregator.errors import AggregatorError
from aggregator.models import initial_state
from aggregator.report import SCORE_UNIT
from aggregator.simulation import SimulationResult, role_updates, simulate, trainer_address


def test_sampled_shards_are_deterministic_skewed_and_may_outnumber_the_data():
    train = load_digits_data(0).train
    shards = sampled_shards(train, 2000, 30, alpha=0.1, seed=3)
    assert len(shards) == 2000 and all(len(s) == 30 for s in shards)
    again = sampled_shards(train, 2000, 30, alpha=0.1, seed=3)
    assert all(torch.equal(a.y, b.y) and torch.equal(a.X, b.X) for a, b in zip(shards, again, strict=True))
    # alpha = 0.1: most shards hold few labels; a shard never repeats a sample while its labels last.
    assert sum(len(torch.unique(s.y)) <= 3 for s in shards) > 1000
    assert all(len(torch.unique(s.X, dim=0)) == 30 for s in shards[:50])
    assert not torch.equal(sampled_shards(train, 5, 30, seed=4)[0].y, shards[0].y)
    for bad in ({"k": 0}, {"samples": 0}, {"alpha": 0.0}):
        with pytest.raises(AggregatorError):
            sampled_shards(train, **{"k": 5, "samples": 10, "alpha": 0.5, **bad})


def test_a_federation_bigger_than_the_data_runs_with_drawn_shards():
    result = simulate(150, {"sign_flip": 10}, rounds=1, rule="median", epochs=1, seed=1)
    assert len(result.roles) == 160 and len(result.outcomes) == 1
    assert sum(result.outcomes[0].scores_fixed.values()) == SCORE_UNIT


def test_payouts_follow_the_contracts_rule():
    result = simulate(5, {"free_rider": 1}, rounds=2, epochs=1, seed=0)
    pool = 10**18 + 7  # the remainder rides on the last round
    paid, refund = result.payouts(pool)
    assert sum(paid.values()) + refund == pool
    rider = next(t for t, r in result.roles.items() if r == "free_rider")
    assert paid[rider] == 0
    first = result.outcomes[0].scores_fixed
    last = result.outcomes[1].scores_fixed
    for trainer in result.roles:
        expected = (pool // 2) * first[trainer] // SCORE_UNIT + (pool // 2 + 1) * last[trainer] // SCORE_UNIT
        assert paid[trainer] == expected
    assert 0 <= refund < len(result.roles) * 2  # only rounding dust goes back to the owner
    assert SimulationResult(result.roles, [], 0.0, {}).payouts(5) == (
        dict.fromkeys(sorted(result.roles), 0),
        0,
    )


@pytest.mark.slow
def test_virtual_trainers_on_ray_upload_the_local_engines_updates(ray_engine):
    data = load_digits_data(0)
    shards = sampled_shards(data.train, 6, 30, seed=0)
    roles = {trainer_address(r, i): r for i, r in enumerate(["honest"] * 3 + ["sign_flip", "sybil", "sybil"])}
    shard_of = dict(zip(sorted(roles), shards, strict=True))
    state = initial_state("digits_mlp", 0)
    train = {"epochs": 1, "lr": 0.05, "batch_size": 16}
    seen = []
    local = role_updates(roles, shard_of, "digits_mlp", state, train, round_seed=5)
    remote = role_updates(
        roles, shard_of, "digits_mlp", state, train, round_seed=5, engine=ray_engine,
        on_trained=lambda done, total: seen.append((done, total)),
    )  # fmt: skip
    assert list(local) == list(remote)
    assert all(torch.equal(local[t][k], remote[t][k]) for t in local for k in local[t])
    assert seen[-1] == (5, 5)  # five trainings: the Sybils share one
