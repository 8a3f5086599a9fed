"""Contribution valuation: exactness on games with known values, confidence, budgets, and real digits pieces."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from aggregator.contribution import (
    ContributionConfig,
    PieceUtility,
    Player,
    gtg_shapley,
    leave_one_out,
    players_from,
    similarity_scores,
)
from aggregator.errors import AggregatorError
from aggregator.evaluation import builtin_evaluator

# Per-example worth of four players on five examples: an additive game with a known spread.
WORTH = torch.tensor(
    [
        [0.5, 0.6, 0.4, 0.5, 0.5],
        [0.2, 0.1, 0.3, 0.2, 0.2],
        [0.0, 0.0, 0.0, 0.0, 0.0],
        [-0.1, -0.2, 0.0, -0.1, -0.1],
    ],
    dtype=torch.float64,
)


def additive(subset):
    return WORTH[list(subset)].sum(dim=0) if subset else torch.zeros(5, dtype=torch.float64)


def glove_game(subset):
    """Superadditive: players 0 and 1 are worth something only together."""
    s = set(subset)
    value = (1.0 if {0, 1} <= s else 0.0) + 0.1 * (2 in s)
    return torch.full((4,), value, dtype=torch.float64)


def exact_shapley(utility, n):
    values = np.zeros(n)
    for order in itertools.permutations(range(n)):
        prefix = []
        for p in order:
            before = float(utility(prefix).mean())
            prefix.append(p)
            values[p] += float(utility(prefix).mean()) - before
    return values / math.factorial(n)


def test_shapley_and_leave_one_out_are_exact_on_an_additive_game_with_its_sample_error():
    estimate = gtg_shapley(additive, 4, max_permutations=12, truncation=0.0)
    assert np.allclose(estimate.values, WORTH.mean(dim=1).numpy())
    # Every permutation gives the same marginals: no Monte Carlo error, only the examples' spread.
    assert np.allclose(estimate.details["monte_carlo_stderr"], 0.0)
    assert np.allclose(estimate.stderr, (WORTH.std(dim=1) / math.sqrt(5)).numpy())
    assert estimate.gain == pytest.approx(float(WORTH.sum(0).mean()))
    loo = leave_one_out(additive, 4)
    assert np.allclose(loo.values, WORTH.mean(dim=1).numpy()) and np.allclose(loo.stderr, estimate.stderr)


def test_shapley_approaches_the_exact_value_within_its_interval_and_respects_the_budget():
    exact = exact_shapley(glove_game, 3)
    estimate = gtg_shapley(glove_game, 3, max_permutations=600, min_permutations=600, truncation=0.0)
    assert estimate.details["permutations"] == 600
    assert np.all(np.abs(estimate.values - exact) <= 4 * estimate.stderr + 1e-12)
    assert np.allclose(estimate.values, exact, atol=0.05)
    small = gtg_shapley(glove_game, 3, max_permutations=4)
    assert small.details["permutations"] <= 4


def test_shapley_stops_once_the_permutations_cannot_make_values_surer():
    estimate = gtg_shapley(additive, 4, max_permutations=100, truncation=0.0)
    assert estimate.details["permutations"] == 4 and estimate.details["converged"]  # one lead each


def test_shapley_is_deterministic_for_a_seed_and_varies_with_it():
    a = gtg_shapley(glove_game, 3, max_permutations=7, min_permutations=7, seed=1)
    b = gtg_shapley(glove_game, 3, max_permutations=7, min_permutations=7, seed=1)
    assert np.array_equal(a.values, b.values)
    c = gtg_shapley(glove_game, 3, max_permutations=7, min_permutations=7, seed=2)
    assert not np.array_equal(a.values, c.values)


def test_a_round_that_changes_nothing_is_truncated():
    estimate = gtg_shapley(lambda s: torch.full((3,), 0.3, dtype=torch.float64), 5)
    assert estimate.details["truncated_round"] and not estimate.values.any()


def test_similarity_is_the_clipped_cosine():
    deltas = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, 0.0]])
    got = similarity_scores(deltas, torch.tensor([1.0, 1.0]))
    assert np.allclose(got, [2**-0.5, 2**-0.5, 0.0, 0.0])
    with pytest.raises(AggregatorError):
        similarity_scores(deltas, torch.ones(3))


def test_players_merge_groups_and_skip_updates_without_weight():
    influence = torch.tensor([0.2, 0.0, 0.1, 0.1, 0.3], dtype=torch.float64)
    players = players_from(["a", "b", "c", "d", "e"], influence, groups=[(2, 3)])
    assert [p.members for p in players] == [("a",), ("e",), ("c", "d")]
    assert [p.weight for p in players] == pytest.approx([0.2, 0.3, 0.2])
    with pytest.raises(AggregatorError):
        players_from(["a", "b"], torch.tensor([0.5, -0.1], dtype=torch.float64))
    with pytest.raises(AggregatorError):
        players_from(["a"], torch.tensor([0.5, 0.5], dtype=torch.float64))


@pytest.fixture
def pieces(digits_round):
    X, y = digits_round.data.validation.X, digits_round.data.validation.y
    deltas = torch.cat([digits_round.honest[:4], digits_round.label_flipped[None]])
    influence = torch.full((5,), 0.2, dtype=torch.float64)
    players = players_from(["h0", "h1", "h2", "h3", "flipper"], influence)
    evaluator = builtin_evaluator("digits_mlp", X, y)
    return PieceUtility(evaluator, digits_round.global_flat, deltas, players), deltas


def test_a_coalition_model_is_the_global_model_plus_its_pieces(pieces):
    utility, deltas = pieces
    expected = utility.global_flat + 0.2 * (deltas[0].double() + deltas[3].double())
    direct = -utility.evaluator.per_example(expected.float())["loss"]
    assert torch.allclose(utility([3, 0]), direct)
    assert utility.calls == 1 and torch.equal(utility([0, 3]), utility([3, 0])) and utility.calls == 1
    full, empty = utility(list(range(5))), utility([])
    walked, _ = utility.walk([2, 0, 4, 1, 3], full, empty, cutoff=0.0)
    assert torch.allclose(walked[1], utility([0, 2]), atol=1e-9) and torch.equal(walked[-1], full)


def test_honest_pieces_are_worth_more_than_a_label_flip(pieces):
    utility, _ = pieces
    estimate = gtg_shapley(utility, 5, max_permutations=30, seed=3)
    assert estimate.values[:4].min() > estimate.values[4]
    assert estimate.values[4] < 0 and (estimate.stderr > 0).all()
    assert estimate.details["permutations"] <= 30 and utility.calls <= 2**5


def test_accuracy_and_metric_utilities(pieces):
    utility, deltas = pieces
    acc = PieceUtility(utility.evaluator, utility.global_flat, deltas, utility.players, "accuracy")
    values = acc([0, 1, 2, 3])
    assert set(values.unique().tolist()) <= {0.0, 1.0} and float(values.mean()) > float(acc([]).mean())
    metric = PieceUtility(utility.evaluator, utility.global_flat, deltas, utility.players, "metric")
    assert torch.equal(metric([0, 1]), acc([0, 1]))


def test_bad_calls_are_refused(pieces):
    utility, deltas = pieces
    with pytest.raises(AggregatorError):
        PieceUtility(utility.evaluator, utility.global_flat, deltas[:, :-1], utility.players)
    with pytest.raises(AggregatorError):
        PieceUtility(utility.evaluator, utility.global_flat, deltas, utility.players, "f1")
    with pytest.raises(AggregatorError):
        PieceUtility(utility.evaluator, utility.global_flat, deltas, [Player(("x",), torch.ones(3))])
    with pytest.raises(AggregatorError):
        gtg_shapley(additive, 0)
    for bad in (
        {"method": "banzhaf"},
        {"utility": "f1"},
        {"max_permutations": 0},
        {"min_permutations": 0},
        {"truncation": -1.0},
        {"precision": math.nan},
        {"seed": 1.5},
    ):
        with pytest.raises(AggregatorError):
            ContributionConfig(**bad)
