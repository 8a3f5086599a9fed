"""The Flag Aggregator: the flag median subspace of the update directions, scaled to the median norm."""

from __future__ import annotations

import pytest
import torch

from aggregator.errors import AggregatorError
from aggregator.rules import get_rule
from aggregator.rules.flag import flag_median


def directions(n_honest: int = 12, n_noise: int = 3, d: int = 500, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    base = torch.randn(d, generator=gen)
    honest = base + 0.4 * torch.randn(n_honest, d, generator=gen)
    noise = 8.0 * torch.randn(n_noise, d, generator=gen)  # large updates pointing nowhere
    return torch.cat([honest, noise])


def test_irls_projector_matches_an_explicit_subspace():
    x = directions().double()
    unit = x / x.norm(dim=1, keepdim=True)
    cosines = unit @ unit.T
    weights, projector, captured = flag_median(cosines, rank=2, iters=4, eps=1e-7)
    m = weights[:, None] * cosines * weights[None, :]
    values, vectors = torch.linalg.eigh(m)
    y = unit.T @ (weights[:, None] * vectors[:, -2:]) / values[-2:].sqrt()
    assert torch.allclose(y.T @ y, torch.eye(2, dtype=torch.float64), atol=1e-9)
    v = unit.mean(0)
    via_gram = (
        weights * (projector @ (weights * (cosines @ torch.full((15,), 1 / 15, dtype=torch.float64))))
    ) @ unit
    assert torch.allclose(via_gram, y @ (y.T @ v), atol=1e-9)
    assert torch.allclose(captured, (y.T @ unit.T).square().sum(0).clamp(0, 1), atol=1e-9)


def test_flag_keeps_the_honest_direction_and_scale_despite_large_noise():
    x = directions()
    honest_mean = x[:12].mean(0)
    result = get_rule("flag", chunk=61).aggregate(x)
    fedavg = get_rule("fedavg").aggregate(x)
    err = float((result.aggregate - honest_mean).norm() / honest_mean.norm())
    assert err < 0.3 < float((fedavg.aggregate - honest_mean).norm() / honest_mean.norm())
    # Directions far from the subspace weigh less than honest ones.
    assert float(result.weights[12:].max()) < float(result.weights[:12].min())
    assert result.details["rank"] == 1 and len(result.details["captured"]) == 15


def test_a_sign_flip_lies_on_the_honest_line_and_only_shrinks_the_step():
    x = directions(n_noise=0)
    flipped = torch.cat([x, -5.0 * x[:2]])
    honest_mean = x.mean(0)
    out = get_rule("flag").aggregate(flipped).aggregate
    cos = float(out @ honest_mean / (out.norm() * honest_mean.norm()))
    assert cos > 0.9 and float(out.norm()) < float(honest_mean.norm())


@pytest.mark.parametrize("params", [{"rank": 0}, {"iters": 0}, {"eps": 0.0}, {"eps": 2.0}, {"rank": 1.5}])
def test_bad_flag_parameters_are_refused(params):
    with pytest.raises(AggregatorError):
        get_rule("flag", **params)
