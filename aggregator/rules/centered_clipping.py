"""Centered clipping."""

from __future__ import annotations

from typing import Any

import torch

from aggregator.errors import AggregatorError
from aggregator.matrix import UpdateMatrix, gram_stats, weighted_sum
from aggregator.rules.base import BaseRule, check_float, check_int

__all__ = ["CenteredClipping"]


class CenteredClipping(BaseRule):
    """Iterate `v <- v + sum_i p_i * (x_i - v) * min(1, tau / ||x_i - v||)` from a robust start.

    Karimireddy, He, Jaggi 2021, "Learning from History for Byzantine Robust Optimization" (ICML). The paper
    starts from the previous round's momentum; this stateless form starts from the medoid row (least summed
    distance to the others), so `v` stays a convex combination of the rows and every iteration runs on the Gram
    matrix alone: one pass for the Gram, one for the final weighted sum. `tau=None` picks the median distance
    of the rows to the start, which makes the rule scale-free.
    """

    name = "centered_clipping"

    def __init__(self, tau: float | None = None, iters: int = 5, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.tau = None if tau is None else check_float(self.name, "tau", tau, 0.0, float("inf"))
        if self.tau is not None and not 0.0 < self.tau < float("inf"):
            raise AggregatorError(f"{self.name}: tau must be positive and finite, got {tau!r}")
        self.iters = check_int(self.name, "iters", iters, 1)

    def params(self) -> dict[str, Any]:
        return {"tau": self.tau, "iters": self.iters}

    def _aggregate(
        self, matrix: UpdateMatrix, prior: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
        gram = gram_stats(matrix, self.chunk)
        spread = gram.sq_distances().sqrt().sum(dim=1)
        start = int(torch.sort(spread, stable=True).indices[0])
        coeffs = torch.zeros(matrix.n, dtype=torch.float64)
        coeffs[start] = 1.0
        dist = gram.sq_distances_to(coeffs).sqrt()
        tau = self.tau if self.tau is not None else float(dist.median())
        for _ in range(self.iters):
            dist = gram.sq_distances_to(coeffs).sqrt()
            if tau == 0.0:
                break
            # min(1, tau / 0) is 1: a row at the centre moves nothing either way.
            scale = torch.where(dist > tau, tau / dist.clamp_min(1e-300), torch.ones_like(dist))
            step = prior * scale
            coeffs = coeffs * (1.0 - step.sum()) + step
        coeffs = coeffs.clamp_min(0.0)
        coeffs = coeffs / coeffs.sum()
        return weighted_sum(matrix, coeffs, self.chunk), coeffs, {"tau": tau, "start": start}
