"""FLAME: clustering, clipping and noise against backdoors.

Nguyen, Rieger, Chen, Yalame, Möllering, Fereidooni, Marchal, Miettinen, Mirhoseini, Zeitouni, Koushanfar,
Sadeghi, Schneider 2022, "FLAME: Taming Backdoors in Federated Learning" (USENIX Security). Three steps:
HDBSCAN on the rows' cosine distances with a minimum cluster size of `m // 2 + 1` keeps the majority cluster
(everything else is left out); the kept rows are clipped to the median norm of all rows; Gaussian noise of
standard deviation `lambda * median norm` is added to every coordinate of the aggregate (seeded by the round).
The paper's lambda is 0.001 for image classification.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sklearn.cluster import HDBSCAN

from aggregator.defenses.base import Defense, DefenseContext, DefenseStep, Rejection, RowMix, check_positive
from aggregator.defenses.clipping import clip_factors

__all__ = ["FLAME", "majority_cluster"]


def majority_cluster(cos_dist: np.ndarray) -> list[int] | None:
    """Indices in HDBSCAN's largest cluster (minimum size m // 2 + 1), or None if it finds no cluster."""
    m = cos_dist.shape[0]
    if m < 3:
        return list(range(m))
    labels = HDBSCAN(
        min_cluster_size=m // 2 + 1, min_samples=1, metric="precomputed", allow_single_cluster=True, copy=True
    ).fit_predict(cos_dist)
    clusters = sorted({int(c) for c in labels if c >= 0})
    if not clusters:
        return None
    sizes = {c: int((labels == c).sum()) for c in clusters}
    best = max(clusters, key=lambda c: (sizes[c], -c))
    return [i for i in range(m) if labels[i] == best]


class FLAME(Defense):
    """See the module docstring; `noise` is lambda."""

    name = "flame"

    def __init__(self, noise: float = 0.001) -> None:
        self.noise = check_positive(self.name, "noise", noise, allow_zero=True)

    def params(self) -> dict[str, Any]:
        return {"noise": self.noise}

    def apply(self, rows: RowMix, context: DefenseContext) -> DefenseStep:
        active = rows.active()
        if not active:
            return DefenseStep(rows)
        raw = rows.raw_gram(context.gram)[active][:, active]
        norms = torch.diagonal(raw).clamp_min(0.0).sqrt()
        safe = torch.where(norms > 0, norms, torch.ones_like(norms))
        cos = (raw / safe[:, None] / safe[None, :]).clamp(-1.0, 1.0)
        dist = (1.0 - cos).clamp_min(0.0).numpy().astype(np.float64)
        np.fill_diagonal(dist, 0.0)
        members = majority_cluster(dist)
        kept = [active[i] for i in members] if members is not None else active
        rejected: list[Rejection] = []
        for k in active:
            if k not in kept:
                reason = "its direction lies outside the majority cluster of updates (FLAME's HDBSCAN)"
                rejected.extend(
                    Rejection(j, self.name, reason) for j in torch.nonzero(rows.mix[k]).flatten().tolist()
                )
        ranked = torch.sort(norms).values
        k = ranked.numel()
        bound = float(ranked[k // 2]) if k % 2 else float(0.5 * (ranked[k // 2 - 1] + ranked[k // 2]))
        factors = torch.ones(rows.m, dtype=torch.float64)
        factors[active] = clip_factors(norms, bound)
        weights = rows.weights.clone()
        weights[[i for i in active if i not in kept]] = 0.0
        out = RowMix(rows.scaled(factors).mix, weights)
        details = {"cluster": kept, "found_cluster": members is not None, "bound": bound}
        return DefenseStep(out, tuple(rejected), details, noise_std=self.noise * bound)
