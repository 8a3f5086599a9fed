"""The Flag Aggregator: a robust subspace of the update directions (flag median), by IRLS on the Gram matrix."""

from __future__ import annotations

from typing import Any

import torch

from aggregator.matrix import UpdateMatrix, gram_stats, weighted_sum
from aggregator.rules.base import BaseRule, check_float, check_int

__all__ = ["FlagAggregator", "flag_median"]


def flag_median(
    cosines: torch.Tensor, rank: int, iters: int, eps: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """IRLS for the flag median of the unit directions whose cosine matrix is `cosines` `[n, n]`.

    The subspace `Y` (rank `r`) lies in the span of the directions, `Y = X^T W V L^-1/2` with `V, L` the top
    eigenpairs of `W K W` (`K` the cosines, `W` the IRLS weights), so every step is an `n x n` eigenproblem.
    Weights are `(sin^2 theta_i + eps)^(-1/4)`, `theta_i` the angle between direction i and `Y`. Returns the
    weights `W` that built the final `Y`, `V L^-1 V^T` (so that `Y Y^T = X^T W V L^-1 V^T W X`) and each
    direction's squared cosine with `Y`.
    """
    n = cosines.shape[0]
    r = min(rank, n)
    weights = torch.ones(n, dtype=torch.float64)
    used = weights
    projector = torch.zeros(n, n, dtype=torch.float64)
    captured = torch.zeros(n, dtype=torch.float64)
    for _ in range(iters):
        used = weights
        m = weights[:, None] * cosines * weights[None, :]
        values, vectors = torch.linalg.eigh(m)
        keep = values[-r:].clamp_min(1e-300)
        v = vectors[:, -r:]
        projector = (v / keep) @ v.T
        # ||Y^T x_i||^2 = || L^-1/2 V^T W K e_i ||^2
        reach = (v / keep.sqrt()).T @ (weights[:, None] * cosines)
        captured = reach.square().sum(dim=0).clamp(0.0, 1.0)
        weights = ((1.0 - captured).clamp_min(0.0) + eps) ** -0.25
    return used, projector, captured


class FlagAggregator(BaseRule):
    """Project the updates' directions onto their flag median subspace and rescale to the median norm.

    Almasi, Mishra, Vamanan, Ravi 2023, "Flag Aggregator: Scalable Distributed Training under Failures and
    Augmented Losses using Convex Optimization" (arXiv:2302.05865; the issue calls it "Almeida et al."). The
    updates are normalised to unit directions; IRLS finds the rank-`rank` subspace minimising the summed sines
    of the angles to them (`iters` steps, smoothing `eps`), which down-weights directions far from the
    subspace. The paper returns the sum of the projected unit directions; here their prior-weighted mean is
    scaled by the median update norm, so the step keeps the updates' scale and no single norm can inflate it.
    A row's weight is its final IRLS weight times its prior, normalised.
    """

    name = "flag"

    def __init__(self, rank: int = 1, iters: int = 4, eps: float = 1e-7, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.rank = check_int(self.name, "rank", rank, 1)
        self.iters = check_int(self.name, "iters", iters, 1)
        self.eps = check_float(self.name, "eps", eps, 1e-300, 1.0)

    def params(self) -> dict[str, Any]:
        return {"rank": self.rank, "iters": self.iters, "eps": self.eps}

    def _aggregate(
        self, matrix: UpdateMatrix, prior: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
        raw = gram_stats(matrix, self.chunk).raw_gram()
        norms = torch.diagonal(raw).clamp_min(0.0).sqrt()
        nonzero = norms > 0
        safe = torch.where(nonzero, norms, torch.ones_like(norms))
        cosines = raw / safe[:, None] / safe[None, :]
        cosines[~nonzero, :] = 0.0
        cosines[:, ~nonzero] = 0.0
        weights, projector, captured = flag_median(cosines, self.rank, self.iters, self.eps)
        # Y Y^T sum_j p_j x_j = X^T W V L^-1 V^T W K p over the unit directions.
        unit_coeffs = weights * (projector @ (weights * (cosines @ prior)))
        ranked = torch.sort(norms[nonzero]).values
        k = ranked.numel()
        median = 0.0 if k == 0 else float(ranked[(k - 1) // 2] + ranked[k // 2]) / 2
        coeffs = torch.where(nonzero, unit_coeffs / safe, torch.zeros_like(unit_coeffs)) * median
        row_weights = weights * prior * nonzero
        row_weights = row_weights / row_weights.sum() if float(row_weights.sum()) > 0 else prior
        details = {"rank": min(self.rank, matrix.n), "captured": captured.tolist(), "median_norm": median}
        return weighted_sum(matrix, coeffs, self.chunk), row_weights, details
