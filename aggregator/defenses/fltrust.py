"""FLTrust: trust bootstrapped from the owner's own data.

Cao, Fang, Liu, Gong 2021, "FLTrust: Byzantine-robust Federated Learning via Trust Bootstrapping" (NDSS). The
owner trains the global model on its own small clean data set (here: the round's validation shard, which the
owner holds) exactly as trainers do, giving a reference update `g0`. Each row's trust is
`ReLU(cos(row, g0))`; rows are rescaled to `||g0||` (no row can win by size) and weighted by their trust. A row
pointing away from the owner's reference gets trust 0 and is left out.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from aggregator.defenses.base import Defense, DefenseContext, DefenseStep, Rejection, RowMix, check_positive
from aggregator.errors import AggregatorError

__all__ = ["FLTrust", "trust_scores"]


def trust_scores(dots: torch.Tensor, sq_norms: torch.Tensor, reference_sq_norm: float) -> torch.Tensor:
    """`ReLU(cos(row, g0))` per row (0 for a zero row), float64."""
    denom = (sq_norms.clamp_min(0.0) * max(reference_sq_norm, 0.0)).sqrt()
    cos = torch.where(denom > 0, dots / denom.clamp_min(1e-300), torch.zeros_like(dots))
    return cos.clamp(-1.0, 1.0)


class FLTrust(Defense):
    """Weight rows by their cosine with the owner's reference update, rescaled to its norm. `min_trust` (0 in
    the paper) is the cosine a row needs to be kept; `rescale=False` keeps each row's own norm."""

    name = "fltrust"

    def __init__(self, min_trust: float = 0.0, rescale: bool = True) -> None:
        self.min_trust = check_positive(self.name, "min_trust", min_trust, allow_zero=True)
        if self.min_trust >= 1.0:
            raise AggregatorError(f"{self.name}: min_trust must be below 1, got {min_trust!r}")
        self.rescale = bool(rescale)

    def params(self) -> dict[str, Any]:
        return {"min_trust": self.min_trust, "rescale": self.rescale}

    def apply(self, rows: RowMix, context: DefenseContext) -> DefenseStep:
        if context.reference is None:
            raise AggregatorError(f"{self.name} needs the owner's reference update, and this round has none")
        dots = rows.mix @ context.reference.dots.to(torch.float64)
        sq_norms = rows.sq_norms(context.gram)
        cos = trust_scores(dots, sq_norms, context.reference.sq_norm)
        trust = torch.where(cos > self.min_trust, cos, torch.zeros_like(cos))
        rejected: list[Rejection] = []
        for k in rows.active():
            if float(trust[k]) == 0.0:
                reason = (
                    f"its direction disagrees with the owner's reference update (cosine {float(cos[k]):.2f}, "
                    f"needs more than {self.min_trust:g})"
                )
                rejected.extend(
                    Rejection(j, self.name, reason, {"cosine": float(cos[k])})
                    for j in torch.nonzero(rows.mix[k]).flatten().tolist()
                )
        out = rows
        if self.rescale:
            norms = sq_norms.sqrt()
            target = math.sqrt(max(context.reference.sq_norm, 0.0))
            out = rows.scaled(
                torch.where(norms > 0, target / norms.clamp_min(1e-300), torch.zeros_like(norms))
            )
        out = RowMix(out.mix, out.weights * trust)
        return DefenseStep(out, tuple(rejected), {"trust": trust.tolist(), "cosine": cos.tolist()})
