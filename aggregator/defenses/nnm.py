"""Nearest-neighbour mixing (NNM).

Allouah, Farhadkhani, Guerraoui, Gupta, Pinot, Stephan 2023, "Fixing by Mixing: A Recipe for Optimal Byzantine
ML under Heterogeneity" (AISTATS). Each row is replaced by the average of its `m - f` nearest rows (itself
included), which shrinks the honest rows' spread under heterogeneous data so the rule after it (Krum, trimmed
mean, geometric median, ...) keeps its guarantee. Distances come from the Gram matrix; the mixed rows stay
combinations of the submitted ones.
"""

from __future__ import annotations

from typing import Any

import torch

from aggregator.defenses.base import Defense, DefenseContext, DefenseStep, RowMix, check_count
from aggregator.errors import AggregatorError

__all__ = ["NNM", "nearest_neighbour_mix"]


def nearest_neighbour_mix(sq_dist: torch.Tensor, keep: int) -> torch.Tensor:
    """`[m, m]` mixing matrix: row i averages its `keep` nearest rows (distance ties broken by index)."""
    m = sq_dist.shape[0]
    mix = torch.zeros(m, m, dtype=torch.float64)
    for i in range(m):
        order = sorted(range(m), key=lambda j: (float(sq_dist[i, j]) if j != i else -1.0, j))
        mix[i, order[:keep]] = 1.0 / keep
    return mix


class NNM(Defense):
    """Replace each active row by the mean of its `m - f` nearest active rows."""

    name = "nnm"

    def __init__(self, f: int = 1) -> None:
        self.f = check_count(self.name, "f", f, 0)

    def params(self) -> dict[str, Any]:
        return {"f": self.f}

    def apply(self, rows: RowMix, context: DefenseContext) -> DefenseStep:
        active = rows.active()
        if not active:
            return DefenseStep(rows)
        if self.f >= len(active):
            raise AggregatorError(f"{self.name}: f={self.f} must be below the {len(active)} rows it mixes")
        sub = RowMix(rows.mix[active], rows.weights[active])
        local = nearest_neighbour_mix(sub.sq_distances(context.gram), len(active) - self.f)
        mixed = RowMix(local @ sub.mix, local @ sub.weights)
        return DefenseStep(mixed, details={"neighbours": len(active) - self.f, "rows": active})
