"""Each aggregation rule's defining property, its weights, chunked passes and its refusals."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from aggregator.errors import AggregatorError, InsufficientUpdates, InvalidUpdate
from aggregator.rules import RULES, get_rule, pairwise_sq_distances
from aggregator.rules.foolsgold import foolsgold_weights

SMALL = {"chunk": 37}  # several chunks on purpose, and one that does not divide d


def honest_and_attackers(n_honest: int = 10, n_bad: int = 2, d: int = 200, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    direction = torch.randn(d, generator=gen)
    honest = direction + 0.3 * torch.randn(n_honest, d, generator=gen)
    bad = -20.0 * direction.repeat(n_bad, 1)
    return torch.cat([honest, bad])


def test_rules_lists_every_rule_sorted():
    assert RULES == (
        "bulyan",
        "centered_clipping",
        "fedavg",
        "flag",
        "foolsgold",
        "geometric_median",
        "median",
        "multi_krum",
        "trimmed_mean",
    )


@pytest.mark.parametrize("name", RULES)
def test_weights_are_a_distribution_and_the_aggregate_has_d_entries(name):
    x = honest_and_attackers()
    result = get_rule(name, **SMALL).aggregate(x)
    assert result.aggregate.shape == (200,) and result.aggregate.dtype == torch.float32
    assert result.weights.shape == (12,) and result.weights.dtype == torch.float64
    assert bool((result.weights >= 0).all())
    assert float(result.weights.sum()) == pytest.approx(1.0, abs=1e-12)
    assert result.rule == name


# The Flag Aggregator fits lines through the origin: a sign flip lies on the honest line (see test_agg_flag.py).
@pytest.mark.parametrize("name", [r for r in RULES if r not in ("fedavg", "flag")])
def test_robust_rules_resist_two_scaled_sign_flips(name):
    x = honest_and_attackers()
    honest_mean = x[:10].mean(dim=0)
    result = get_rule(name, f=2, **SMALL) if name in ("multi_krum", "bulyan") else get_rule(name, **SMALL)
    if name == "trimmed_mean":
        result = get_rule(name, beta=0.2, **SMALL)
    result = result.aggregate(x)
    # The attackers sit ~21 |direction| away; a robust rule stays within the honest spread.
    assert float((result.aggregate - honest_mean).norm()) < 0.25 * float(honest_mean.norm())
    if name in ("multi_krum", "bulyan", "foolsgold"):
        assert result.weights[10:].tolist() == [0.0, 0.0]


def test_fedavg_is_the_weighted_mean():
    x = honest_and_attackers()
    assert torch.allclose(get_rule("fedavg", **SMALL).aggregate(x).aggregate, x.mean(dim=0), atol=1e-5)
    w = torch.arange(1, 13, dtype=torch.float64)
    result = get_rule("fedavg", **SMALL).aggregate(x, weights=w)
    expected = (w[:, None] * x.double()).sum(0) / w.sum()
    assert torch.allclose(result.aggregate.double(), expected, atol=1e-4)
    assert torch.allclose(result.weights, w / w.sum())


def test_fedavg_is_moved_by_one_attacker():
    x = honest_and_attackers(n_bad=1)
    honest_mean = x[:10].mean(dim=0)
    assert float((get_rule("fedavg").aggregate(x).aggregate - honest_mean).norm()) > float(honest_mean.norm())


@pytest.mark.parametrize("n", [7, 8])
def test_median_matches_numpy_and_credits_middle_rows(n):
    x = torch.randn(n, 101, generator=torch.Generator().manual_seed(n))
    result = get_rule("median", **SMALL).aggregate(x)
    assert np.allclose(result.aggregate.numpy(), np.median(x.numpy(), axis=0), atol=1e-6)
    assert float(result.weights.sum()) == pytest.approx(1.0)


def test_trimmed_mean_matches_scipy():
    x = torch.randn(20, 150, generator=torch.Generator().manual_seed(3))
    result = get_rule("trimmed_mean", beta=0.15, **SMALL).aggregate(x)
    assert np.allclose(result.aggregate.numpy(), stats.trim_mean(x.numpy(), 0.15, axis=0), atol=1e-6)
    assert result.details["trimmed_each_end"] == 3


def test_trimmed_mean_with_beta_zero_is_the_mean():
    x = honest_and_attackers()
    result = get_rule("trimmed_mean", beta=0.0).aggregate(x)
    assert torch.allclose(result.aggregate, x.mean(dim=0), atol=1e-5)


def test_krum_picks_one_honest_row():
    x = honest_and_attackers()
    result = get_rule("multi_krum", f=2, m=1, **SMALL).aggregate(x)
    (chosen,) = result.details["selected"]
    assert chosen < 10
    assert torch.equal(result.aggregate, x[chosen])
    assert result.weights[chosen] == 1.0


def test_multi_krum_default_m_is_n_minus_f_and_prior_weights_average_the_selection():
    x = honest_and_attackers()
    w = torch.ones(12, dtype=torch.float64)
    w[0] = 3.0
    result = get_rule("multi_krum", f=2, **SMALL).aggregate(x, weights=w)
    assert result.details["m"] == 10 and result.details["selected"] == list(range(10))
    assert result.weights[0] == pytest.approx(3.0 / 12.0)


def test_bulyan_selects_honest_rows_and_needs_4f_plus_3():
    x = honest_and_attackers()
    result = get_rule("bulyan", f=2, **SMALL).aggregate(x)
    assert all(i < 10 for i in result.details["selected"])
    assert result.details["theta"] == 8 and result.details["beta"] == 4
    with pytest.raises(InsufficientUpdates) as err:
        get_rule("bulyan", f=3).aggregate(x)
    assert err.value.need == 15 and err.value.have == 12


def test_geometric_median_matches_a_direct_weiszfeld():
    x = honest_and_attackers().double()
    result = get_rule("geometric_median", eps=1e-12, max_iter=1000, **SMALL).aggregate(x)
    z = x.mean(dim=0)
    for _ in range(5000):
        w = 1.0 / (x - z).norm(dim=1).clamp_min(1e-12)
        z = (w[:, None] * x).sum(0) / w.sum()
    assert torch.allclose(result.aggregate, z, atol=1e-6)
    assert result.details["converged"]


def test_centered_clipping_with_huge_tau_is_the_mean_and_clips_outliers_otherwise():
    x = honest_and_attackers()
    wide = get_rule("centered_clipping", tau=1e12, iters=1, **SMALL).aggregate(x)
    assert torch.allclose(wide.aggregate, x.mean(dim=0), atol=1e-4)
    tight = get_rule("centered_clipping", iters=10, **SMALL).aggregate(x)
    assert float(tight.weights[10:].max()) < 0.5 * float(tight.weights[:10].min())


def test_foolsgold_zeroes_sybil_copies_and_keeps_diverse_rows():
    gen = torch.Generator().manual_seed(5)
    honest = torch.randn(6, 300, generator=gen)
    sybil = torch.randn(1, 300, generator=gen).repeat(3, 1)
    result = get_rule("foolsgold", **SMALL).aggregate(torch.cat([honest, sybil]))
    assert result.weights[6:].tolist() == [0.0, 0.0, 0.0]
    assert bool((result.weights[:6] > 0).all())


def test_foolsgold_refuses_when_everything_is_a_copy():
    x = torch.ones(4, 10)
    assert float(foolsgold_weights(x.double() @ x.double().T).sum()) == 0.0
    with pytest.raises(AggregatorError, match="near-copy"):
        get_rule("foolsgold").aggregate(x)


@pytest.mark.parametrize("chunk", [1, 7, 64, 200, 10_000])
def test_chunked_gram_distances_match_a_direct_computation(chunk):
    x = honest_and_attackers(d=200) + 50.0  # a large shared component, where a naive Gram would cancel
    direct = torch.cdist(x.double(), x.double()) ** 2
    got = pairwise_sq_distances(x, chunk)
    assert got.dtype == torch.float64 and got.shape == (12, 12)
    # float32 products, float64 sums: errors stay at float32 precision of the largest distance.
    assert torch.allclose(got, direct, rtol=1e-4, atol=1e-6 * float(direct.max()))
    assert torch.equal(torch.diagonal(got), torch.zeros(12, dtype=torch.float64))


def test_rows_as_a_sequence_give_bit_identical_results():
    x = honest_and_attackers()
    rows = [row.clone() for row in x]
    for name in RULES:
        a = get_rule(name, **SMALL).aggregate(x)
        b = get_rule(name, **SMALL).aggregate(rows)
        assert torch.equal(a.aggregate, b.aggregate) and torch.equal(a.weights, b.weights)
    c = get_rule("median", **SMALL).aggregate([row.numpy() for row in x])
    assert torch.equal(c.aggregate, get_rule("median", **SMALL).aggregate(x).aggregate)


@pytest.mark.parametrize("name", RULES)
def test_same_input_gives_bit_identical_output(name):
    x = honest_and_attackers(seed=9)
    a, b = get_rule(name, **SMALL).aggregate(x), get_rule(name, **SMALL).aggregate(x.clone())
    assert torch.equal(a.aggregate, b.aggregate) and torch.equal(a.weights, b.weights)
    assert a.details == b.details


@pytest.mark.parametrize("name", RULES)
def test_zero_prior_weight_drops_a_row(name):
    x = honest_and_attackers(n_honest=11, n_bad=0)
    w = torch.ones(11)
    w[4] = 0.0
    result = get_rule(name, **SMALL).aggregate(x, weights=w)
    assert result.weights[4] == 0.0
    alone = get_rule(name, **SMALL).aggregate(torch.cat([x[:4], x[5:]]))
    assert torch.allclose(result.aggregate, alone.aggregate, atol=1e-6)


def test_dtypes_float64_kept_half_upcast():
    x = honest_and_attackers()
    assert get_rule("median").aggregate(x.double()).aggregate.dtype == torch.float64
    assert get_rule("multi_krum").aggregate(x.half()).aggregate.dtype == torch.float32
    assert get_rule("fedavg").aggregate(x.bfloat16()).aggregate.dtype == torch.float32


@pytest.mark.parametrize("name", RULES)
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_values_are_refused_naming_the_row(name, bad):
    x = honest_and_attackers()
    x[3, 150] = bad
    with pytest.raises(InvalidUpdate) as err:
        get_rule(name, **SMALL).aggregate(x)
    assert err.value.rows == (3,)


GRAM_RULES = ("bulyan", "centered_clipping", "flag", "foolsgold", "geometric_median", "multi_krum")


@pytest.mark.parametrize("name", RULES)
def test_values_whose_squares_overflow_are_refused_by_gram_rules(name):
    x = honest_and_attackers()
    x[2] = 3e38
    x[5] = -3e38
    if name in GRAM_RULES:
        with pytest.raises(InvalidUpdate, match="overflow"):
            get_rule(name, **SMALL).aggregate(x)
    else:  # coordinate rules and the mean scale before summing: the result is finite and usable
        assert bool(torch.isfinite(get_rule(name, **SMALL).aggregate(x).aggregate).all())


@pytest.mark.parametrize("name", RULES)
@pytest.mark.parametrize(
    "updates",
    [
        torch.zeros(10),
        torch.zeros(2, 3, 4),
        torch.zeros(10, 5, dtype=torch.int64),
        torch.zeros(10, 0),
        [torch.zeros(5), torch.zeros(6), torch.zeros(5)],
        [torch.zeros(5), torch.zeros(5, 1)],
        [torch.zeros(5, dtype=torch.int32)],
        ["not a row"],
        "not updates",
        42,
    ],
    ids=["1d", "3d", "int", "no-columns", "ragged", "2d-row", "int-row", "str-row", "str", "int-object"],
)
def test_wrong_shapes_and_dtypes_are_refused(name, updates):
    with pytest.raises(InvalidUpdate):
        get_rule(name).aggregate(updates)


def test_ragged_rows_name_the_odd_one_out():
    with pytest.raises(InvalidUpdate) as err:
        get_rule("fedavg").aggregate([torch.zeros(5), torch.zeros(6), torch.zeros(5)])
    assert err.value.rows == (1,)


@pytest.mark.parametrize("name", RULES)
@pytest.mark.parametrize(
    "weights",
    [[1.0] * 11, [1.0] * 11 + [-1.0], [0.0] * 12, [float("nan")] + [1.0] * 11, [[1.0] * 12]],
    ids=["short", "negative", "all-zero", "nan", "nested-ok"],
)
def test_bad_prior_weights_are_refused(name, weights):
    x = honest_and_attackers()
    if weights == [[1.0] * 12]:  # a nested list of the right size is flattened, not refused
        assert float(get_rule(name).aggregate(x, weights=weights).weights.sum()) == pytest.approx(1.0)
        return
    with pytest.raises(AggregatorError):
        get_rule(name).aggregate(x, weights=weights)


@pytest.mark.parametrize(
    ("name", "params", "need"),
    [("multi_krum", {"f": 2}, 7), ("multi_krum", {"f": 0, "m": 9}, 9), ("bulyan", {"f": 1}, 7)],
)
def test_too_few_updates_for_the_rule(name, params, need):
    with pytest.raises(InsufficientUpdates) as err:
        get_rule(name, **params).aggregate(torch.randn(need - 1, 10))
    assert err.value.need == need
    get_rule(name, **params).aggregate(torch.randn(need, 10))


@pytest.mark.parametrize("name", RULES)
def test_no_updates_at_all(name):
    with pytest.raises(InsufficientUpdates):
        get_rule(name).aggregate(torch.zeros(0, 10))
    with pytest.raises(InsufficientUpdates):
        get_rule(name).aggregate([])


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("nope", {}),
        ("multi_krum", {"f": -1}),
        ("multi_krum", {"f": 1.5}),
        ("multi_krum", {"m": 0}),
        ("multi_krum", {"f": True}),
        ("multi_krum", {"beta": 0.1}),
        ("bulyan", {"f": "2"}),
        ("trimmed_mean", {"beta": 0.5}),
        ("trimmed_mean", {"beta": -0.1}),
        ("trimmed_mean", {"beta": float("nan")}),
        ("centered_clipping", {"tau": 0.0}),
        ("centered_clipping", {"tau": float("inf")}),
        ("centered_clipping", {"iters": 0}),
        ("geometric_median", {"eps": -1.0}),
        ("geometric_median", {"max_iter": 0}),
        ("foolsgold", {"kappa": 0.0}),
        ("fedavg", {"chunk": 0}),
        ("median", {"chunk": 2.5}),
        ("median", {"device": "warp-drive"}),
    ],
)
def test_bad_rule_parameters_are_refused(name, params):
    with pytest.raises(AggregatorError):
        get_rule(name, **params)
