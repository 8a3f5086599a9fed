"""Contribution valuation: exactness on games with known values, budgets, fallbacks, and real digits deltas."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from aggregator.contribution import (
    ContributionConfig,
    SubsetUtility,
    contribution_scores,
    gtg_shapley,
    leave_one_out,
    similarity_scores,
)
from aggregator.errors import AggregatorError
from aggregator.evaluation import builtin_evaluator

WORTH = np.array([0.5, 0.2, 0.0, -0.1])


def additive(subset):
    return float(WORTH[list(subset)].sum())


def exact_shapley(utility, n):
    values = np.zeros(n)
    for order in itertools.permutations(range(n)):
        prefix = []
        for p in order:
            before = utility(prefix)
            prefix.append(p)
            values[p] += utility(prefix) - before
    return values / math.factorial(n)


def glove_game(subset):
    """Superadditive: players 0 and 1 are worth something only together."""
    s = set(subset)
    return 1.0 if {0, 1} <= s else 0.0 + 0.1 * (2 in s)


def test_leave_one_out_and_shapley_are_exact_on_an_additive_game():
    assert np.allclose(leave_one_out(additive, 4), WORTH)
    values, info = gtg_shapley(additive, 4, max_permutations=50, truncation=0.0)
    assert np.allclose(values, WORTH)
    assert info["permutations"] <= 50 and not info["truncated_round"]


def test_shapley_estimate_approaches_the_exact_value_and_respects_the_budget():
    exact = exact_shapley(glove_game, 3)
    values, info = gtg_shapley(glove_game, 3, max_permutations=600, truncation=0.0, convergence=0.0)
    assert info["permutations"] == 600
    assert np.allclose(values, exact, atol=0.05)
    _, small = gtg_shapley(glove_game, 3, max_permutations=4)
    assert small["permutations"] == 4


def test_shapley_is_deterministic_for_a_seed_and_varies_with_it():
    a, _ = gtg_shapley(glove_game, 3, max_permutations=7, seed=1, convergence=0.0)
    b, _ = gtg_shapley(glove_game, 3, max_permutations=7, seed=1, convergence=0.0)
    assert np.array_equal(a, b)
    c, _ = gtg_shapley(glove_game, 3, max_permutations=7, seed=2, convergence=0.0)
    assert not np.array_equal(a, c)


def test_a_round_that_changes_nothing_is_truncated():
    values, info = gtg_shapley(lambda s: 0.3, 5)
    assert info["truncated_round"] and not values.any()


def test_similarity_is_the_clipped_cosine():
    deltas = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, 0.0]])
    got = similarity_scores(deltas, torch.tensor([1.0, 1.0]))
    assert np.allclose(got, [2**-0.5, 2**-0.5, 0.0, 0.0])
    with pytest.raises(AggregatorError):
        similarity_scores(deltas, torch.ones(3))


@pytest.fixture
def evaluate(digits_round):
    return builtin_evaluator("digits_mlp", digits_round.data.validation.X, digits_round.data.validation.y)


@pytest.fixture
def deltas(digits_round):
    return torch.cat([digits_round.honest[:4], digits_round.label_flipped[None]])


@pytest.fixture
def utility(digits_round, evaluate, deltas):
    return SubsetUtility(evaluate, digits_round.global_flat, deltas)


@pytest.mark.parametrize("method", ["gtg_shapley", "leave_one_out", "similarity"])
def test_scores_cover_every_submitter_sum_to_one_and_honest_lead(utility, method):
    players = ["h0", "h1", "h2", "h3", "flipper"]
    submitters = [*players, "flagged-1", "invalid-2"]
    config = ContributionConfig(method=method, max_permutations=30)
    result = contribution_scores(
        players,
        submitters,
        utility=utility,
        aggregate=utility.matrix.read(0, utility.matrix.d)[:4].mean(0),
        config=config,
    )
    assert list(result.scores) == sorted(submitters)
    assert math.fsum(result.scores.values()) == pytest.approx(1.0, abs=1e-12)
    assert result.scores["flagged-1"] == result.scores["invalid-2"] == 0.0
    assert all(v >= 0 for v in result.scores.values())
    assert min(result.scores[h] for h in players[:4]) > result.scores["flipper"]
    if method != "similarity":
        assert result.scores["flipper"] == 0.0 and result.values["flipper"] < 0
    assert result.basis == method


def test_accuracy_utility_works_too(utility, evaluate, deltas):
    acc = SubsetUtility(evaluate, utility.global_flat, deltas, "accuracy")
    assert 0.0 <= acc([]) <= 1.0 and acc([0, 1, 2, 3]) > acc([])
    assert acc.calls == 2 and acc([3, 2, 1, 0]) == acc([0, 1, 2, 3]) and acc.calls == 2
    # "metric" is the task's own: accuracy for classification.
    metric = SubsetUtility(evaluate, utility.global_flat, deltas, "metric")
    assert metric([0, 1]) == acc([0, 1])


def test_a_subset_model_is_the_global_model_plus_the_float64_mean_of_its_deltas(utility, evaluate, deltas):
    expected = (utility.global_flat.double() + deltas[[0, 2, 3]].double().sum(0) / 3).float()
    assert utility([3, 0, 2]) == -evaluate.evaluate(expected)["loss"]
    # Growing a permutation's prefix one row at a time values the same models.
    walked, _ = utility.walk([2, 0, 3, 1, 4], full=utility(range(5)), empty=utility([]), cutoff=0.0)
    for j, value in enumerate(walked, start=1):
        assert value == pytest.approx(utility([2, 0, 3, 1, 4][:j]), abs=1e-6)
    total = utility.row_sum()
    assert utility.full_value(total) == utility(range(5))
    assert utility.without(1, total) == pytest.approx(utility([0, 2, 3, 4]), abs=1e-6)


def test_fallbacks_when_the_valuation_gives_nothing(utility, evaluate, deltas):
    players = ["h0", "h1", "h2", "h3", "flipper"]
    stuck = SubsetUtility(evaluate, utility.global_flat, deltas * 0.0)
    agg = deltas[:4].mean(0)
    result = contribution_scores(players, players, utility=stuck, aggregate=agg)
    assert result.basis == "uniform_fallback"  # zero deltas: no gain and no direction
    assert all(v == pytest.approx(0.2) for v in result.scores.values())
    flat = SubsetUtility(evaluate, utility.global_flat, deltas * 1e-9)
    result = contribution_scores(players, players, utility=flat, aggregate=agg)
    assert result.basis == "similarity_fallback" and result.scores["flipper"] < result.scores["h0"]


def test_bad_calls_are_refused(utility, evaluate, deltas):
    agg = deltas.mean(0)
    with pytest.raises(AggregatorError):
        contribution_scores(["a", "b"], ["a", "b"], utility=utility, aggregate=agg)
    with pytest.raises(AggregatorError):
        contribution_scores(list("abcde"), list("abcd"), utility=utility, aggregate=agg)
    with pytest.raises(AggregatorError):
        SubsetUtility(evaluate, utility.global_flat, deltas[:, :-1])
    with pytest.raises(AggregatorError):
        SubsetUtility(evaluate, utility.global_flat, deltas, "f1")
    for bad in ({"method": "banzhaf"}, {"utility": "f1"}, {"max_permutations": 0}, {"truncation": -1.0}):
        with pytest.raises(AggregatorError):
            ContributionConfig(**bad)
