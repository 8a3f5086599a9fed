"""FoolsGold: Sybil-resistant similarity weighting."""

from __future__ import annotations

import math
from typing import Any

import torch

from aggregator.errors import AggregatorError
from aggregator.matrix import UpdateMatrix, gram_stats, weighted_sum
from aggregator.rules.base import BaseRule, check_float

__all__ = ["FoolsGold", "foolsgold_weights"]

_COPY_TOLERANCE = 1e-9


def foolsgold_weights(raw_gram: torch.Tensor, kappa: float = 1.0) -> torch.Tensor:
    """FoolsGold's per-row learning rates in [0, 1] from the raw Gram matrix of the updates (float64 `[n]`).

    Rows that are unusually similar to some other row (Sybils pushing one shared objective) get weights near 0;
    the "pardoning" step rescales similarities so honest rows that merely resemble a Sybil are not punished.
    A zero-norm row has no direction: its similarity to everyone counts as 0.
    """
    n = raw_gram.shape[0]
    norms = torch.diagonal(raw_gram).clamp_min(0.0).sqrt()
    safe = torch.where(norms > 0, norms, torch.ones_like(norms))
    cos = (raw_gram / safe[:, None] / safe[None, :]).clamp(-1.0, 1.0)
    cos[norms == 0, :] = 0.0
    cos[:, norms == 0] = 0.0
    cos.fill_diagonal_(-math.inf)
    top = cos.max(dim=1).values if n > 1 else torch.zeros(1, dtype=torch.float64)
    # Pardoning: where j is more Sybil-like than i, shrink cos_ij by top_i / top_j.
    ratio = top.clamp_min(0.0)[:, None] / top.clamp_min(1e-300)[None, :]
    pardoned = torch.where(top[None, :] > top[:, None], cos * ratio, cos)
    pardoned.fill_diagonal_(-math.inf)
    best = pardoned.max(dim=1).values if n > 1 else torch.zeros(1, dtype=torch.float64)
    alpha = (1.0 - best).clamp(0.0, 1.0)
    # Rounding leaves exact copies a cosine of 1 - 1e-16; normalising by the max would blow that noise up.
    alpha = torch.where(alpha < _COPY_TOLERANCE, torch.zeros_like(alpha), alpha)
    if float(alpha.max()) == 0.0:
        return alpha
    alpha = alpha / alpha.max()
    alpha = torch.where(alpha >= 1.0, torch.full_like(alpha, 0.99), alpha)
    # The logit spreads weights towards 0 and 1; log(0) = -inf is clipped to 0 below.
    with torch.no_grad():
        alpha = kappa * (torch.log(alpha / (1.0 - alpha)) + 0.5)
    return torch.nan_to_num(alpha, nan=0.0, posinf=1.0, neginf=0.0).clamp(0.0, 1.0)


class FoolsGold(BaseRule):
    """Weight every update by FoolsGold's learning rate and take the weighted mean.

    Fung, Yoon, Beschastnikh 2020, "The Limitations of Federated Learning in Sybil Settings" (RAID). The paper
    keeps each client's summed history of updates; this rule sees one round (cross-round state lives in the
    outlier detector's history). `kappa` is the logit's confidence parameter. All rows being copies of each
    other leaves no weight anywhere: that is refused with `AggregatorError`.
    """

    name = "foolsgold"

    def __init__(self, kappa: float = 1.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.kappa = check_float(self.name, "kappa", kappa, 0.0, float("inf"))
        if self.kappa == 0.0:
            raise AggregatorError(f"{self.name}: kappa must be positive")

    def params(self) -> dict[str, Any]:
        return {"kappa": self.kappa}

    def _aggregate(
        self, matrix: UpdateMatrix, prior: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
        alpha = foolsgold_weights(gram_stats(matrix, self.chunk).raw_gram(), self.kappa)
        weights = alpha * prior
        if float(weights.sum()) <= 0.0:
            raise AggregatorError(f"{self.name}: every update is a near-copy of another; no weight is left")
        weights = weights / weights.sum()
        return weighted_sum(matrix, weights, self.chunk), weights, {"learning_rates": alpha.tolist()}
