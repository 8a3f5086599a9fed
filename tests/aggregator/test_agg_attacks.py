"""The attack suite: each attack does what its paper says, deterministically, and refuses bad set-ups."""

from __future__ import annotations

import math

import pytest
import torch

from aggregator.attacks import (
    ATTACKS,
    SUITE,
    AttackSpec,
    AttackView,
    Backdoor,
    Trigger,
    alie_z,
    attack_suite,
    corner_trigger,
    get_attack,
    jitter,
    mimic_target,
    triggered_test_set,
)
from aggregator.errors import AggregatorError


def honest(h: int = 15, d: int = 300, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(d, generator=gen) + 0.5 * torch.randn(h, d, generator=gen)


def view(count: int = 5, n: int = 20, own: torch.Tensor | None = None, **kw) -> AttackView:
    return AttackView(honest(), count, n, seed=0, own=own, **kw)


def test_alie_sits_z_standard_deviations_below_the_mean_on_every_coordinate():
    v = view()
    z = alie_z(20, 5)
    assert z == pytest.approx(0.5244, abs=1e-4)  # s = 6 supporters, Phi^-1(0.7)
    out = get_attack("alie").craft(v)
    mean, std = v.reference.double().mean(0), v.reference.double().std(0)
    assert out.updates.shape == (5, 300) and out.updates.dtype == torch.float32
    assert torch.allclose(out.updates[0].double(), mean - z * std, atol=1e-5)
    assert torch.equal(out.updates[0], out.updates[4])
    # Within the honest range on every coordinate: median- and distance-based rules keep it.
    assert bool((out.updates[0] >= v.reference.min(0).values).all())


def test_ipm_sends_minus_eps_times_the_mean():
    v = view()
    out = get_attack("ipm", eps=0.1).craft(v).updates
    mean = v.reference.double().mean(0)
    assert torch.allclose(out[2].double(), -0.1 * mean, atol=1e-6)
    assert float(out[2].double() @ mean) < 0


@pytest.mark.parametrize("name", ["min_max", "min_sum"])
@pytest.mark.parametrize("kind", ["std", "unit", "sign"])
def test_min_max_and_min_sum_push_as_far_as_their_test_allows(name, kind):
    v = view()
    attack = get_attack(name, perturbation=kind)
    out = attack.craft(v)
    x = v.reference.double()
    mal = out.updates[0].double()
    pairwise = torch.cdist(x, x)
    to_honest = (x - mal).norm(dim=1)
    if name == "min_max":
        assert float(to_honest.max()) <= float(pairwise.max()) + 1e-4
    else:
        assert float(to_honest.square().sum()) <= float(pairwise.square().sum(1).max()) * (1 + 1e-5)
    # gamma is the largest that passes: 1% more breaks the test.
    gamma = out.details["gamma"]
    assert gamma > 0
    from aggregator.attacks.statistical import perturbation

    further = x.mean(0) - 1.01 * gamma * perturbation(v.reference, kind)
    dist = (x - further).norm(dim=1)
    broken = (
        float(dist.max()) > float(pairwise.max())
        if name == "min_max"
        else float(dist.square().sum()) > float(pairwise.square().sum(1).max())
    )
    assert broken


def test_mimic_copies_the_most_extreme_honest_update_and_keeps_it():
    x = honest()
    x[7] += 5.0 * torch.randn(300, generator=torch.Generator().manual_seed(9))
    assert mimic_target(x) == 7
    out = get_attack("mimic").craft(AttackView(x, 5, 20, 0))
    assert out.memory == {"target": 7}
    assert all(torch.equal(row, x[7]) for row in out.updates)
    later = get_attack("mimic").craft(AttackView(honest(seed=3), 5, 20, 0, memory=out.memory))
    assert later.memory == {"target": 7}
    with pytest.raises(AggregatorError, match="not one of"):
        get_attack("mimic", target=40).craft(AttackView(x, 5, 20, 0))


def test_sign_flip_and_scaling():
    v = view(own=torch.ones(5, 300))
    assert torch.allclose(
        get_attack("sign_flip").craft(v).updates[0].double(), -v.reference.double().mean(0), atol=1e-6
    )
    assert torch.equal(get_attack("scaling", factor=10.0).craft(v).updates, torch.full((5, 300), 10.0))
    with pytest.raises(AggregatorError, match="own training"):
        get_attack("scaling").craft(view())


def test_label_flip_and_sybil_train_on_flipped_labels():
    X, y = torch.rand(6, 64), torch.tensor([0, 1, 2, 7, 8, 9])
    for name in ("label_flip", "sybil"):
        attack = get_attack(name)
        assert attack.trains == "poisoned"
        assert attack.poison(X, y, 0)[1].tolist() == [9, 8, 7, 2, 1, 0]
    own = torch.randn(5, 300)
    sybil = get_attack("sybil").craft(view(own=own)).updates
    assert all(torch.equal(row, own[0]) for row in sybil)
    with pytest.raises(AggregatorError, match="labels must lie"):
        get_attack("label_flip", classes=5).poison(X, y, 0)


def test_backdoor_poisons_with_a_corner_trigger_and_scales():
    trigger = corner_trigger()
    assert trigger.features == (54, 55, 62, 63) and trigger.target == 0
    X, y = torch.zeros(4, 64), torch.tensor([0, 3, 5, 0])
    Xp, yp = Backdoor().poison(X, y, 0)
    assert Xp.shape == (6, 64) and yp.tolist() == [0, 3, 5, 0, 0, 0]
    assert bool((Xp[4:, [54, 55, 62, 63]] == 1.0).all()) and float(Xp[4:].sum()) == 8.0
    stamped, labels = triggered_test_set(X, y, trigger)
    assert stamped.shape == (2, 64) and labels.tolist() == [0, 0]
    own = torch.randn(5, 300)
    replace = get_attack("backdoor", boost="replace").craft(view(own=own)).updates
    assert torch.allclose(replace, own * 4.0)  # n / count = 20 / 5
    norm = get_attack("backdoor", boost="norm").craft(view(own=own)).updates
    target = float(honest().double().norm(dim=1).median())
    assert torch.allclose(norm.double().norm(dim=1), torch.full((5,), target, dtype=torch.float64), rtol=1e-5)


def test_jitter_keeps_copies_at_a_cosine_near_096_and_is_seeded():
    copies = torch.randn(300).repeat(5, 1)
    a, b = jitter(copies, 0.2, 1), jitter(copies, 0.2, 1)
    assert torch.equal(a, b) and not torch.equal(a, jitter(copies, 0.2, 2))
    unit = a.double() / a.double().norm(dim=1, keepdim=True)
    cos = unit @ unit.T
    assert 0.9 < float(cos[0, 1]) < 0.99
    assert torch.equal(jitter(copies, 0.0, 1), copies)
    with pytest.raises(AggregatorError):
        jitter(copies, -1.0, 0)


def test_the_suite_names_every_variant_once():
    labels = [spec.label for spec in SUITE]
    assert len(labels) == len(set(labels))
    assert {spec.name for spec in SUITE} == set(ATTACKS)
    assert (
        "alie+jitter/own" in labels
        and "ipm(eps=0.1)" in labels
        and "backdoor(boost=norm)+jitter/own" in labels
    )
    assert all(spec.count == 5 for spec in SUITE) and len(attack_suite(2)) == len(SUITE)
    assert not any(spec.name == "mimic" and spec.knowledge == "own" for spec in SUITE)


@pytest.mark.parametrize(
    "make",
    [
        lambda: get_attack("wizard"),
        lambda: get_attack("ipm", epsilon=1),
        lambda: get_attack("ipm", eps=-1),
        lambda: get_attack("min_max", perturbation="up"),
        lambda: get_attack("backdoor", boost="double"),
        lambda: AttackView(torch.zeros(3), 1, 2, 0),
        lambda: AttackView(honest(), 0, 20, 0),
        lambda: AttackView(honest(), 5, 20, 0, own=torch.zeros(4, 300)),
        lambda: AttackSpec("alie", 5, knowledge="psychic"),
        lambda: AttackSpec("alie", -1),
        lambda: AttackSpec("alie", 5, jitter=math.inf),
        lambda: Trigger(()),
        lambda: corner_trigger(corner="middle"),
        lambda: Trigger((70,)).stamp(torch.zeros(2, 64)),
    ],
)
def test_bad_attack_set_ups_are_refused_in_one_line(make):
    with pytest.raises(AggregatorError):
        make()
