"""Norm clipping before the rule: a fixed or median-norm bound, and adaptive robust clipping (ARC).

- `norm_clip`: every row scaled to at most `bound`, or to `factor` times the median norm of the rows
  (Sun, Kairouz, Suresh, McMahan 2019, "Can You Really Backdoor Federated Learning?", norm bounding; the
  median bound is FLAME's adaptive clipping). A boosted update loses its boost; an honest one is untouched
  unless it is larger than most.
- `arc`: Allouah, Guerraoui, Gupta, Jellouli, Rizk, Stephan 2024, "The Vital Role of Gradient Clipping in
  Byzantine-Resilient Distributed Learning" (arXiv:2405.14432), adaptive robust clipping: the
  `floor(2 (f / m) (m - f))` largest rows are clipped to the norm of the next largest. No bound to tune.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from aggregator.defenses.base import Defense, DefenseContext, DefenseStep, RowMix, check_count, check_positive
from aggregator.errors import AggregatorError

__all__ = ["ARC", "NormClip", "clip_factors"]


def clip_factors(norms: torch.Tensor, bound: float) -> torch.Tensor:
    """`min(1, bound / norm)` per row (1 for a zero row)."""
    return torch.where(norms > bound, bound / norms.clamp_min(1e-300), torch.ones_like(norms))


def _median(values: torch.Tensor) -> float:
    ranked = torch.sort(values.to(torch.float64)).values
    k = ranked.numel()
    return float(ranked[k // 2]) if k % 2 else float(0.5 * (ranked[k // 2 - 1] + ranked[k // 2]))


class NormClip(Defense):
    """Clip every row to `bound`, or (no `bound`) to `factor` times the median norm of the active rows."""

    name = "norm_clip"

    def __init__(self, bound: float | None = None, factor: float = 1.0) -> None:
        self.bound = None if bound is None else check_positive(self.name, "bound", bound)
        self.factor = check_positive(self.name, "factor", factor)

    def params(self) -> dict[str, Any]:
        return {"bound": self.bound, "factor": self.factor}

    def apply(self, rows: RowMix, context: DefenseContext) -> DefenseStep:
        norms = rows.sq_norms(context.gram).sqrt()
        active = rows.active()
        if not active:
            return DefenseStep(rows)
        bound = self.bound if self.bound is not None else self.factor * _median(norms[active])
        factors = clip_factors(norms, bound)
        clipped = [k for k in active if float(factors[k]) < 1.0]
        return DefenseStep(rows.scaled(factors), details={"bound": bound, "clipped": clipped})


class ARC(Defense):
    """Adaptive robust clipping for `f` possibly Byzantine rows (see the module docstring)."""

    name = "arc"

    def __init__(self, f: int = 1) -> None:
        self.f = check_count(self.name, "f", f, 0)

    def params(self) -> dict[str, Any]:
        return {"f": self.f}

    def apply(self, rows: RowMix, context: DefenseContext) -> DefenseStep:
        active = rows.active()
        m = len(active)
        if m == 0:
            return DefenseStep(rows)
        if self.f >= m:
            raise AggregatorError(f"{self.name}: f={self.f} must be below the {m} rows it clips")
        k = math.floor(2 * (self.f / m) * (m - self.f))
        norms = rows.sq_norms(context.gram).sqrt()
        if k == 0:
            return DefenseStep(rows, details={"clipped": [], "bound": None})
        # Largest first, ties broken by row index so the choice is deterministic.
        order = sorted(active, key=lambda i: (-float(norms[i]), i))
        bound = float(norms[order[min(k, m - 1)]])
        factors = torch.ones(rows.m, dtype=torch.float64)
        for i in order[:k]:
            factors[i] = clip_factors(norms[i : i + 1], bound)[0]
        return DefenseStep(rows.scaled(factors), details={"clipped": sorted(order[:k]), "bound": bound})
