"""Geometric median (RFA) by the smoothed Weiszfeld algorithm."""

from __future__ import annotations

from typing import Any

import torch

from aggregator.matrix import GramStats, UpdateMatrix, gram_stats, weighted_sum
from aggregator.rules.base import BaseRule, check_float, check_int

__all__ = ["GeometricMedian", "weiszfeld"]


class GeometricMedian(BaseRule):
    """The point minimising the prior-weighted sum of Euclidean distances to the updates.

    Pillutla, Kakade, Harchaoui 2022, "Robust Aggregation for Federated Learning" (IEEE Trans. Signal
    Processing): RFA with the smoothed Weiszfeld iteration `z <- sum_i b_i x_i / sum_i b_i`,
    `b_i = p_i / max(nu, ||x_i - z||)`. The iterate is always a convex combination of the rows, so the
    iterations run on the Gram matrix alone. `eps` is the relative tolerance on the objective (stop when it
    improves by less than `eps` times itself) and, times the starting objective, the smoothing `nu`.
    """

    name = "geometric_median"

    def __init__(self, eps: float = 1e-6, max_iter: int = 100, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.eps = check_float(self.name, "eps", eps, 0.0, 1.0)
        self.max_iter = check_int(self.name, "max_iter", max_iter, 1)

    def params(self) -> dict[str, Any]:
        return {"eps": self.eps, "max_iter": self.max_iter}

    def _aggregate(
        self, matrix: UpdateMatrix, prior: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
        coeffs, details = weiszfeld(gram_stats(matrix, self.chunk), prior, self.eps, self.max_iter)
        return weighted_sum(matrix, coeffs, self.chunk), coeffs, details


def weiszfeld(
    gram: GramStats, prior: torch.Tensor, eps: float = 1e-6, max_iter: int = 100
) -> tuple[torch.Tensor, dict[str, Any]]:
    """Smoothed Weiszfeld on a Gram matrix: the geometric median as convex coefficients over the rows."""
    coeffs = prior.clone()
    objective = float(prior @ gram.sq_distances_to(coeffs).sqrt())
    # Smoothing relative to the spread keeps the rule scale-free; the floor avoids 0 / 0 on identical rows.
    nu = max(eps * objective, 1e-300)
    iterations, converged = 0, objective == 0.0
    while not converged and iterations < max_iter:
        dist = gram.sq_distances_to(coeffs).sqrt()
        b = prior / dist.clamp_min(nu)
        coeffs = b / b.sum()
        iterations += 1
        new_objective = float(prior @ gram.sq_distances_to(coeffs).sqrt())
        converged = abs(objective - new_objective) <= eps * new_objective
        objective = new_objective
    return coeffs, {"iterations": iterations, "converged": converged, "objective": objective}
