"""Updates forged from the others' statistics carry no data: leave them out.

Most published model-poisoning attacks compute their update from the honest updates' coordinate-wise
statistics: ALIE sends `mean - z * std` (Baruch et al. 2019), IPM `-eps * mean` (Xie et al. 2020), min-max and
min-sum `mean - gamma * p` with `p` the std, the unit mean or its sign (Shejwalkar and Houmansadr 2021), sign
flipping `-mean`. Such an update lies, almost exactly, in the span of the *other* rows' mean, standard deviation
and mean sign; an update trained on data of its own does not (its residual outside that span is most of it,
0.8 or more of its norm on digits). A row whose residual is under `tolerance` of its norm is left out, named as
built from the others' statistics. Jittered forgeries escape this test by construction; they are what the
near-copy rule (`near_copies`, run before this one) and the valuation deal with.

The statistics are those of the other active rows (leave-one-out), from one pass over the coordinates: per
chunk the column sums and sums of squares of the rows, from which every row's leave-one-out mean, standard
deviation and sign follow. The defense needs the update matrix (`DefenseContext.matrix`) and at least four rows;
mixing defenses (NNM, bucketing) should come after it, since a mix of rows is partly built from the others.
"""

from __future__ import annotations

from typing import Any

import torch

from aggregator.defenses.base import Defense, DefenseContext, DefenseStep, Rejection, RowMix, check_positive
from aggregator.errors import AggregatorError
from aggregator.matrix import DEFAULT_CHUNK

__all__ = ["ForgedUpdates", "forgery_residuals"]


def forgery_residuals(rows: RowMix, context: DefenseContext, chunk: int = DEFAULT_CHUNK) -> torch.Tensor:
    """Each active row's residual `[m]` outside the span of the other rows' mean, std and mean sign, relative
    to its norm (1: nothing explained, 0: exactly a statistic of the others)."""
    if context.matrix is None:
        raise AggregatorError("forged_updates needs the update matrix (a pass over the coordinates)")
    m = rows.m
    mix = rows.mix.to(context.matrix.compute_dtype)
    gram = torch.zeros(m, 4, 4, dtype=torch.float64)  # per row: inner products of [row, mean, std, sign]
    for _start, _stop, part in context.matrix.map_chunks(_statistics_part, chunk, (mix,)):
        gram += part
    out = torch.ones(m, dtype=torch.float64)
    for k in range(m):
        g = gram[k]
        norm_sq = float(g[0, 0])
        if norm_sq <= 0:
            continue
        b, a = g[1:, 0], g[1:, 1:]
        explained = float(b @ torch.linalg.pinv(a, hermitian=True) @ b)
        out[k] = max(0.0, norm_sq - explained) ** 0.5 / norm_sq**0.5
    return out


def _statistics_part(block: torch.Tensor, start: int, stop: int, mix: torch.Tensor) -> torch.Tensor:
    """One chunk's `[m, 4, 4]` inner products of each mixed row with the others' mean, std and mean sign."""
    m = mix.shape[0]
    y = (mix @ block[: mix.shape[1]]).to(torch.float64)
    total, squares = y.sum(dim=0), y.square().sum(dim=0)
    mean = (total - y) / (m - 1)
    var = ((squares - y.square()) - (m - 1) * mean.square()) / (m - 2)
    basis = torch.stack([y, mean, var.clamp_min(0.0).sqrt(), torch.sign(mean)], dim=1)  # [m, 4, c]
    return basis @ basis.transpose(1, 2)


class ForgedUpdates(Defense):
    """Leave out rows within `tolerance` of the span of the other rows' coordinate statistics."""

    name = "forged_updates"

    def __init__(self, tolerance: float = 0.05) -> None:
        self.tolerance = check_positive(self.name, "tolerance", tolerance)
        if self.tolerance >= 1.0:
            raise AggregatorError(f"{self.name}: tolerance must be below 1, got {tolerance!r}")

    def params(self) -> dict[str, Any]:
        return {"tolerance": self.tolerance}

    def apply(self, rows: RowMix, context: DefenseContext) -> DefenseStep:
        active = rows.active()
        if len(active) < 4:
            return DefenseStep(rows, details={"residuals": {}})
        sub = RowMix(rows.mix[active], rows.weights[active])
        residuals = forgery_residuals(sub, context)
        weights = rows.weights.clone()
        rejected: list[Rejection] = []
        for i, k in enumerate(active):
            r = float(residuals[i])
            if r <= self.tolerance:
                weights[k] = 0.0
                reason = (
                    f"built from the other updates' coordinate-wise mean, spread and signs (only {r:.1%} of "
                    "it lies outside them): it carries no data of its own"
                )
                rejected.extend(
                    Rejection(j, self.name, reason, {"residual": r})
                    for j in torch.nonzero(rows.mix[k]).flatten().tolist()
                )
        details = {"residuals": {str(k): float(residuals[i]) for i, k in enumerate(active)}}
        return DefenseStep(RowMix(rows.mix, weights), tuple(rejected), details)
