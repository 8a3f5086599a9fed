"""Each defense's defining property on the Gram matrix alone, the row algebra they share, and their refusals."""

from __future__ import annotations

import math

import pytest
import torch

from aggregator.attacks import jitter
from aggregator.defenses import (
    DEFENSES,
    Reference,
    RowMix,
    apply_defenses,
    get_defense,
    mixed_updates,
    parse_defenses,
)
from aggregator.defenses.base import DefenseContext
from aggregator.errors import AggregatorError
from aggregator.matrix import UpdateMatrix, gram_stats
from aggregator.rules import get_rule


def cloud(n: int = 12, d: int = 400, spread: float = 0.6, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(d, generator=gen) + spread * torch.randn(n, d, generator=gen)


def context(
    x: torch.Tensor,
    reference: torch.Tensor | None = None,
    seed: int = 0,
    order: tuple[int, ...] | None = None,
) -> DefenseContext:
    ref = None
    if reference is not None:
        ref = Reference(x.double() @ reference.double(), float(reference.double().square().sum()))
    return DefenseContext(gram_stats(UpdateMatrix(x)), seed, ref, order, UpdateMatrix(x))


def mixed(x: torch.Tensor, rows: RowMix) -> torch.Tensor:
    return rows.mix @ x.double()


def test_defenses_are_listed_sorted():
    assert DEFENSES == (
        "arc",
        "bucketing",
        "flame",
        "fltrust",
        "forged_updates",
        "near_copies",
        "nnm",
        "norm_clip",
        "shared_deviation",
    )


def test_mixed_gram_statistics_match_the_mixed_rows():
    x = cloud() + 40.0  # a large shared component: the centered Gram must not cancel
    gen = torch.Generator().manual_seed(1)
    rows = RowMix(torch.rand(5, 12, generator=gen, dtype=torch.float64), torch.ones(5, dtype=torch.float64))
    y = mixed(x, rows)
    ctx = context(x)
    assert torch.allclose(rows.sq_distances(ctx.gram), torch.cdist(y, y) ** 2, rtol=1e-4, atol=1e-3)
    assert torch.allclose(rows.sq_norms(ctx.gram), y.square().sum(1), rtol=1e-5)


@pytest.mark.parametrize("rule", ["median", "trimmed_mean", "multi_krum", "fedavg"])
def test_a_rule_reads_mixed_rows_chunk_by_chunk_as_if_they_were_stacked(rule):
    x = cloud()
    rows = RowMix(
        torch.rand(7, 12, generator=torch.Generator().manual_seed(2), dtype=torch.float64),
        torch.ones(7, dtype=torch.float64),
    )
    lazy = get_rule(rule, chunk=37).aggregate(mixed_updates(UpdateMatrix(x), rows))
    stacked = get_rule(rule, chunk=37).aggregate(mixed(x, rows).float())
    assert torch.allclose(lazy.aggregate, stacked.aggregate, atol=1e-5)
    assert mixed_updates(UpdateMatrix(x), RowMix.identity(12)).n == 12


def test_norm_clip_caps_rows_at_the_median_norm_or_a_bound():
    x = cloud()
    x[3] *= 10.0
    ctx = context(x)
    step = get_defense("norm_clip").apply(RowMix.identity(12), ctx)
    norms = mixed(x, step.rows).norm(dim=1)
    median = float(x.double().norm(dim=1).median())
    assert float(norms.max()) <= step.details["bound"] * (1 + 1e-6)
    assert step.details["bound"] == pytest.approx(float(x.double().norm(dim=1).sort().values[5:7].mean()))
    assert 3 in step.details["clipped"] and float(norms[3]) == pytest.approx(step.details["bound"])
    assert median > 0
    fixed = get_defense("norm_clip", bound=1.0).apply(RowMix.identity(12), ctx)
    assert float(mixed(x, fixed.rows).norm(dim=1).max()) == pytest.approx(1.0)


def test_arc_clips_the_largest_rows_to_the_next_norm():
    x = cloud()
    norms = x.double().norm(dim=1)
    step = get_defense("arc", f=2).apply(RowMix.identity(12), context(x))
    k = math.floor(2 * (2 / 12) * 10)  # 3
    order = torch.argsort(norms, descending=True)
    assert sorted(step.details["clipped"]) == sorted(order[:k].tolist())
    after = mixed(x, step.rows).norm(dim=1)
    assert torch.allclose(after[order[:k]], norms[order[k]].expand(k))
    assert torch.allclose(after[order[k:]], norms[order[k:]])


def test_nnm_averages_each_row_with_its_nearest_neighbours():
    x = cloud(n=8)
    step = get_defense("nnm", f=3).apply(RowMix.identity(8), context(x))
    dist = torch.cdist(x.double(), x.double())
    for i in range(8):
        nearest = torch.argsort(dist[i], stable=True)[:5]
        assert torch.allclose(mixed(x, step.rows)[i], x.double()[nearest].mean(0), atol=1e-9)


def test_bucketing_is_a_seeded_partition_into_bucket_means():
    x = cloud(n=9)
    a = get_defense("bucketing", s=2).apply(RowMix.identity(9), context(x, seed=4))
    b = get_defense("bucketing", s=2).apply(RowMix.identity(9), context(x, seed=4))
    c = get_defense("bucketing", s=2).apply(RowMix.identity(9), context(x, seed=5))
    assert a.details == b.details and a.details != c.details
    buckets = a.details["buckets"]
    assert sorted(i for bucket in buckets for i in bucket) == list(range(9)) and len(buckets) == 5
    for k, bucket in enumerate(buckets):
        assert torch.allclose(mixed(x, a.rows)[k], x.double()[bucket].mean(0))


def test_fltrust_rescales_to_the_reference_and_drops_rows_that_oppose_it():
    x = cloud()
    reference = x.mean(0)
    x[10:] = -x[10:]
    step = get_defense("fltrust").apply(RowMix.identity(12), context(x, reference))
    assert {r.row for r in step.rejected} == {10, 11}
    assert "reference" in step.rejected[0].reason
    assert step.rows.weights[10:].tolist() == [0.0, 0.0]
    assert torch.allclose(mixed(x, step.rows).norm(dim=1), reference.double().norm().expand(12))
    cos = torch.nn.functional.cosine_similarity(x.double(), reference.double()[None], dim=1)
    assert torch.allclose(step.rows.weights[:10], cos[:10])
    with pytest.raises(AggregatorError, match="reference"):
        get_defense("fltrust").apply(RowMix.identity(12), context(x))


def test_flame_keeps_the_majority_cluster_clips_and_adds_noise():
    x = cloud(n=10, spread=0.2)
    x[7:] = torch.randn(3, 400, generator=torch.Generator().manual_seed(8)) * 3
    step = get_defense("flame", noise=0.01).apply(RowMix.identity(10), context(x))
    left_out = {r.row for r in step.rejected}
    assert {7, 8, 9} <= left_out and len(left_out) <= 10 - (10 // 2 + 1)
    bound = float(x.double().norm(dim=1).sort().values[4:6].mean())
    assert step.details["bound"] == pytest.approx(bound)
    assert step.noise_std == pytest.approx(0.01 * bound)
    assert float(mixed(x, step.rows).norm(dim=1).max()) <= bound * (1 + 1e-6)


def test_near_copies_merge_exact_copies_into_one_row():
    x = cloud(n=10, d=2000)
    x[7:] = x[6]
    step = get_defense("near_copies").apply(RowMix.identity(10), context(x))
    assert step.groups == ((6, 7, 8, 9),)
    assert step.details["groups"][0]["verdict"] == "exact"
    assert not step.rejected
    # One row of weight 1 for the four copies.
    assert float(step.rows.weights.sum()) == pytest.approx(7.0)
    assert torch.allclose(
        step.rows.influence(step.rows.weights)[6:], torch.full((4,), 0.25, dtype=torch.float64)
    )


def test_among_exact_copies_the_first_submitted_is_the_original():
    x = cloud(n=10, d=2000)
    x[[2, 4, 8]] = x[7].clone()
    order = (9, 0, 3, 1, 2, 4, 5, 6, 7, 8)  # row 4 landed before rows 2, 7 and 8
    step = get_defense("near_copies").apply(RowMix.identity(10), context(x, order=order))
    assert step.details["groups"] == [{"members": [2, 4, 7, 8], "verdict": "first_submitted"}]
    assert {r.row for r in step.rejected} == {2, 7, 8} and step.rows.weights[4] == 1.0
    assert "submitted earlier" in step.rejected[0].reason and not step.groups


def test_near_copies_find_the_original_among_jittered_copies():
    x = cloud(n=10, d=2000)
    x[6:] = jitter(x[5].repeat(4, 1), 0.2, seed=3)
    step = get_defense("near_copies").apply(RowMix.identity(10), context(x))
    assert step.details["groups"][0] == {"members": [5, 6, 7, 8, 9], "verdict": "original"}
    assert {r.row for r in step.rejected} == {6, 7, 8, 9}
    assert step.rejected[0].detail == {"copy_of_rows": [5]}
    assert step.rows.weights[5] == 1.0 and not step.groups


def test_near_copies_of_an_update_nobody_sent_share_one_row_between_them():
    x = cloud(n=20, d=2000, spread=1.2)  # honest cosines ~0.4, as on non-IID digits
    crafted = x[:15].mean(0) - 0.5 * x[:15].std(0)  # ALIE's point, which no honest trainer sent
    x[15:] = jitter(crafted.repeat(5, 1), 0.2, seed=4)
    step = get_defense("near_copies").apply(RowMix.identity(20), context(x))
    assert step.details["groups"] == [{"members": [15, 16, 17, 18, 19], "verdict": "no_original"}]
    assert step.groups == ((15, 16, 17, 18, 19),)
    assert float(step.rows.influence(step.rows.weights)[15:].sum()) == pytest.approx(1.0 / 5)


def test_near_copies_leave_independent_rows_alone():
    x = cloud(n=12, d=2000, spread=1.0)
    step = get_defense("near_copies").apply(RowMix.identity(12), context(x))
    assert (
        not step.groups
        and not step.rejected
        and torch.equal(step.rows.mix, torch.eye(12, dtype=torch.float64))
    )


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("alie", {}),
        ("ipm", {"eps": 0.1}),
        ("min_max", {"perturbation": "sign"}),
        ("min_sum", {}),
        ("sign_flip", {}),
    ],
)
def test_forged_updates_built_from_the_others_statistics_are_left_out(name, params):
    from aggregator.attacks import AttackView, get_attack

    x = cloud(n=16, d=2000, spread=1.2)
    forged = get_attack(name, **params).craft(AttackView(x[:15], 1, 16, 0)).updates[0]
    x[15] = forged
    step = get_defense("forged_updates").apply(RowMix.identity(16), context(x))
    assert [r.row for r in step.rejected] == [15]
    assert "no data of its own" in step.rejected[0].reason
    residuals = step.details["residuals"]
    assert residuals["15"] < 1e-4 and min(v for k, v in residuals.items() if k != "15") > 0.5


def test_forged_updates_keep_honest_and_jittered_rows_and_need_the_matrix():
    from aggregator.attacks import AttackView, get_attack

    x = cloud(n=16, d=2000, spread=1.2)
    x[15] = jitter(get_attack("alie").craft(AttackView(x[:15], 1, 16, 0)).updates, 0.2, 1)[0]
    step = get_defense("forged_updates").apply(RowMix.identity(16), context(x))
    assert not step.rejected
    bare = DefenseContext(gram_stats(UpdateMatrix(x)))
    with pytest.raises(AggregatorError, match="matrix"):
        get_defense("forged_updates").apply(RowMix.identity(16), bare)


def test_shared_deviation_leaves_out_a_coordinated_group():
    x = cloud(n=15, d=2000, spread=1.0)
    shared = 1.5 * torch.randn(2000, generator=torch.Generator().manual_seed(11))
    x[11:] += shared
    step = get_defense("shared_deviation").apply(RowMix.identity(15), context(x))
    assert {r.row for r in step.rejected} == {11, 12, 13, 14}
    assert "coordinated" in step.rejected[0].reason
    assert step.rows.weights[11:].tolist() == [0.0] * 4
    clean = get_defense("shared_deviation").apply(RowMix.identity(11), context(x[:11]))
    assert not clean.rejected


def test_shared_deviation_never_leaves_out_a_majority():
    x = cloud(n=7, d=2000, spread=1.0)
    gen = torch.Generator().manual_seed(12)
    x[:3] += 2.0 * torch.randn(2000, generator=gen)
    x[3:6] += 2.0 * torch.randn(2000, generator=gen)
    step = get_defense("shared_deviation").apply(RowMix.identity(7), context(x))
    assert not step.rejected and step.details.get("majority_kept")


def test_a_chain_runs_in_order_and_names_what_it_left_out():
    x = cloud(n=12, d=2000)
    x[9:] = x[8]
    x[0] *= 50
    chain = apply_defenses(
        parse_defenses([{"name": "near_copies"}, {"name": "norm_clip"}]), gram_stats(UpdateMatrix(x))
    )
    assert chain.groups == ((8, 9, 10, 11),)
    assert [s["name"] for s in chain.steps] == ["near_copies", "norm_clip"]
    assert 0 in chain.steps[1]["details"]["clipped"]
    assert chain.noise_std == 0.0


@pytest.mark.parametrize(
    "specs",
    [
        "nnm",
        [{"f": 2}],
        [{"name": "moat"}],
        [{"name": "nnm", "k": 2}],
        [{"name": "arc", "f": -1}],
        [{"name": "norm_clip", "bound": 0}],
        [{"name": "flame", "noise": math.nan}],
        [{"name": "near_copies", "ratio": 1.5}],
        [{"name": "bucketing", "s": 0}],
        [{"name": "fltrust", "min_trust": 1.0}],
        [{"name": "forged_updates", "tolerance": 1.0}],
    ],
)
def test_bad_defense_specs_are_refused_in_one_line(specs):
    with pytest.raises(AggregatorError):
        parse_defenses(specs)


def test_a_chain_that_leaves_nothing_is_refused():
    x = cloud(n=4)
    reference = -x.mean(0) * 10
    ctx_gram = gram_stats(UpdateMatrix(x))
    ref = Reference(x.double() @ reference.double(), float(reference.double().square().sum()))
    with pytest.raises(AggregatorError, match="left no update"):
        apply_defenses([get_defense("fltrust")], ctx_gram, reference=ref)
