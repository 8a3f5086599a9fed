"""From values to scores: noise is paid by weight, real differences are kept, harm earns nothing."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from aggregator.contribution import Estimate, Player
from aggregator.errors import AggregatorError
from aggregator.shares import confidence_words, round_scores


def players(weights, groups=()):
    out = []
    for k, w in enumerate(weights):
        size = groups[k] if k < len(groups) else 1
        members = tuple(f"t{k}-{j}" for j in range(size))
        out.append(Player(members, torch.tensor([w], dtype=torch.float64)))
    return out


def submitters(ps, extra=("flagged",)):
    return [m for p in ps for m in p.members] + list(extra)


def test_values_within_their_noise_are_paid_by_weight():
    ps = players([1.0] * 10)
    rng = np.random.default_rng(0)
    values = 0.1 + rng.normal(0, 0.01, 10)  # spread no larger than the stated errors
    estimate = Estimate(values, np.full(10, 0.02), gain=1.0)
    result = round_scores(ps, submitters(ps), estimate, basis="gtg_shapley")
    shares = np.array([result.scores[p.members[0]] for p in ps])
    assert shares.std() / shares.mean() < 0.05
    raw = np.clip(values, 0, None) / np.clip(values, 0, None).sum()
    assert raw.std() / raw.mean() > shares.std() / shares.mean()
    assert result.scores["flagged"] == 0.0 and math.fsum(result.scores.values()) == pytest.approx(1.0)
    assert all("sure" in result.confidence[p.members[0]] for p in ps)


def test_real_differences_are_kept_and_significant_harm_earns_nothing():
    ps = players([1.0, 1.0, 1.0, 1.0])
    estimate = Estimate(np.array([0.6, 0.3, 0.15, -0.2]), np.full(4, 0.005), gain=0.85)
    result = round_scores(ps, submitters(ps), estimate, basis="gtg_shapley")
    s = [result.scores[p.members[0]] for p in ps]
    assert s[0] > s[1] > s[2] > 0 and s[3] == 0.0
    assert s[0] == pytest.approx(0.6 / 1.05, rel=0.01)
    low, high = result.intervals[ps[0].members[0]]
    assert low <= s[0] <= high and high - low < 0.05
    assert result.confidence[ps[0].members[0]].startswith("sure")
    assert result.confidence[ps[3].members[0]] == "sure it earned nothing"


def test_a_group_splits_one_players_score():
    ps = players([1.0, 1.0, 1.0], groups=(1, 1, 3))
    estimate = Estimate(np.array([0.1, 0.1, 0.1]), np.full(3, 0.001), gain=0.3)
    result = round_scores(ps, submitters(ps, ()), estimate, basis="gtg_shapley")
    group = ps[2].members
    assert [result.scores[m] for m in group] == pytest.approx([1 / 9] * 3)
    assert result.scores[ps[0].members[0]] == pytest.approx(1 / 3)


def test_a_round_that_moved_nothing_or_helped_nobody_is_paid_by_weight():
    ps = players([3.0, 1.0])
    flat = round_scores(
        ps, submitters(ps), Estimate(np.zeros(2), np.zeros(2), gain=1e-9), basis="gtg_shapley"
    )
    assert flat.basis == "weights" and flat.scores[ps[0].members[0]] == pytest.approx(0.75)
    harmful = round_scores(
        ps,
        submitters(ps),
        Estimate(np.array([-0.2, -0.1]), np.full(2, 0.001), gain=-0.3),
        basis="gtg_shapley",
    )
    assert harmful.basis == "weights"
    unvalued = round_scores(ps, submitters(ps), None, basis="similarity")
    assert unvalued.basis == "weights" and "weight" in unvalued.confidence[ps[1].members[0]]


def test_without_shrinkage_scores_follow_the_raw_values():
    ps = players([1.0, 1.0])
    estimate = Estimate(np.array([0.3, 0.1]), np.full(2, 0.5), gain=0.4)
    raw = round_scores(ps, submitters(ps), estimate, basis="gtg_shapley", shrinkage=False)
    assert raw.scores[ps[0].members[0]] == pytest.approx(0.75)
    shrunk = round_scores(ps, submitters(ps), estimate, basis="gtg_shapley")
    assert shrunk.scores[ps[0].members[0]] == pytest.approx(0.5)


def test_confidence_words():
    assert confidence_words(0.1, 0.09, 0.11).startswith("sure")
    assert confidence_words(0.1, 0.06, 0.14).startswith("fairly sure")
    assert confidence_words(0.1, 0.0, 0.3).startswith("unsure")
    assert confidence_words(0.0, 0.0, 0.01).startswith("unsure")


def test_bad_calls_are_refused():
    ps = players([1.0])
    with pytest.raises(AggregatorError):
        round_scores([], ["a"], None, basis="gtg_shapley")
    with pytest.raises(AggregatorError):
        round_scores(ps + ps, submitters(ps), None, basis="gtg_shapley")
    with pytest.raises(AggregatorError):
        round_scores(ps, ["someone-else"], None, basis="gtg_shapley")
    with pytest.raises(AggregatorError):
        round_scores(players([0.0]), ["t0-0"], None, basis="gtg_shapley")
