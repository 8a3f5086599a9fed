"""Coordinate-wise trimmed mean."""

from __future__ import annotations

import math
from typing import Any

import torch

from aggregator.matrix import UpdateMatrix, finite_rows
from aggregator.rules._order import band_aggregate
from aggregator.rules.base import BaseRule, check_float

__all__ = ["TrimmedMean"]


class TrimmedMean(BaseRule):
    """Per coordinate, drop the `floor(beta * n)` largest and smallest values and average the rest.

    Yin, Chen, Ramchandran, Bartlett 2018, "Byzantine-Robust Distributed Learning: Towards Optimal Statistical
    Rates" (ICML). Tolerates up to `floor(beta * n)` arbitrary rows per coordinate. A row's weight is the share
    of (coordinate, kept value) slots it fills; prior weights only decide which rows take part.
    """

    name = "trimmed_mean"
    weighs_rows = False

    def __init__(self, beta: float = 0.1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.beta = check_float(self.name, "beta", beta, 0.0, 0.5, open_high=True)

    def params(self) -> dict[str, Any]:
        return {"beta": self.beta}

    def _aggregate(
        self, matrix: UpdateMatrix, prior: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
        n = matrix.n
        trim = math.floor(self.beta * n)
        if trim == 0:
            return self._mean(matrix), torch.full((n,), 1.0 / n, dtype=torch.float64), {"trimmed_each_end": 0}
        aggregate, weights = band_aggregate(matrix, trim, n - trim, self.chunk)
        return aggregate, weights, {"trimmed_each_end": trim}

    def _mean(self, matrix: UpdateMatrix) -> torch.Tensor:
        out = torch.empty(matrix.d, dtype=matrix.compute_dtype)
        for start, stop, part in matrix.map_chunks(_mean_part, self.chunk):
            if isinstance(part, list):
                matrix.raise_for_rows(part, start)
            out[start:stop] = part
        return out


def _mean_part(block: torch.Tensor, start: int, stop: int) -> Any:
    bad = finite_rows(block)
    return bad if bad else block.mean(dim=0).cpu()
