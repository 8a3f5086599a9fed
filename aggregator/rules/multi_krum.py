"""Krum and Multi-Krum."""

from __future__ import annotations

from typing import Any

import torch

from aggregator.matrix import UpdateMatrix, gram_stats, weighted_sum
from aggregator.rules.base import BaseRule, check_int

__all__ = ["MultiKrum", "krum_scores"]


def krum_scores(sq_dist: torch.Tensor, f: int, neighbours: int | None = None) -> torch.Tensor:
    """Each row's Krum score: the sum of squared distances to its `n - f - 2` nearest other rows.

    `neighbours` overrides that count (capped at the rows there are): Bulyan keeps the count of the full set
    while its candidate set shrinks.
    """
    n = sq_dist.shape[0]
    if n == 1:
        return torch.zeros(1, dtype=sq_dist.dtype)
    neighbours = max(1, min(n - 1, n - f - 2 if neighbours is None else neighbours))
    others = sq_dist.clone()
    others.fill_diagonal_(float("inf"))
    nearest, _ = torch.sort(others, dim=1, stable=True)
    return nearest[:, :neighbours].sum(dim=1)


def lowest(scores: torch.Tensor, m: int) -> list[int]:
    """Indices of the `m` lowest scores, ties broken by index so the choice is deterministic."""
    _, order = torch.sort(scores, stable=True)
    return sorted(order[:m].tolist())


class MultiKrum(BaseRule):
    """Average the `m` updates with the lowest Krum scores (Krum itself when `m = 1`).

    Blanchard, El Mhamdi, Guerraoui, Stainer 2017, "Machine Learning with Adversaries: Byzantine Tolerant
    Gradient Descent" (NeurIPS). A row's score is the sum of squared distances to its `n - f - 2` nearest
    neighbours; the rule tolerates `f` Byzantine rows when `n >= 2f + 3`. `m` defaults to `n - f`. The selected
    rows are averaged with their prior weights. Two passes: partial Gram matrices, then the weighted sum.
    """

    name = "multi_krum"

    def __init__(self, f: int = 1, m: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.f = check_int(self.name, "f", f, 0)
        self.m = None if m is None else check_int(self.name, "m", m, 1)

    @property
    def min_updates(self) -> int:
        return max(2 * self.f + 3, self.m or 0)

    def params(self) -> dict[str, Any]:
        return {"f": self.f, "m": self.m}

    def _aggregate(
        self, matrix: UpdateMatrix, prior: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
        scores = krum_scores(gram_stats(matrix, self.chunk).sq_distances(), self.f)
        m = self.m if self.m is not None else matrix.n - self.f
        selected = lowest(scores, m)
        coeffs = torch.zeros(matrix.n, dtype=torch.float64)
        coeffs[selected] = prior[selected] / prior[selected].sum()
        aggregate = weighted_sum(matrix, coeffs, self.chunk)
        return aggregate, coeffs, {"m": m, "scores": scores.tolist(), "selected": selected}
