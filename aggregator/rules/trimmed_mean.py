"""Coordinate-wise trimmed mean."""

from __future__ import annotations

import math
from typing import Any

import torch

from aggregator.errors import InvalidUpdate
from aggregator.rules._order import middle_band
from aggregator.rules.base import BaseRule, UpdateMatrix, check_float

__all__ = ["TrimmedMean"]


class TrimmedMean(BaseRule):
    """Per coordinate, drop the `floor(beta * n)` largest and smallest values and average the rest.

    Yin, Chen, Ramchandran, Bartlett 2018, "Byzantine-Robust Distributed Learning: Towards Optimal Statistical
    Rates" (ICML). Tolerates up to `floor(beta * n)` arbitrary rows per coordinate. A row's weight is the share
    of (coordinate, kept value) slots it fills; prior weights only decide which rows take part.
    """

    name = "trimmed_mean"

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
        out = torch.empty(matrix.d, dtype=matrix.compute_dtype)
        counts = torch.zeros(n, dtype=torch.float64)
        for start, stop, block in matrix.chunks(self.chunk):
            if trim == 0:
                matrix.raise_if_not_finite(block, start)
                out[start:stop] = block.mean(dim=0).cpu()
                counts += stop - start
                continue
            band = middle_band(block, trim, n - trim)
            if band is None:
                matrix.raise_if_not_finite(block, start)
                raise InvalidUpdate("non-finite values")  # not reached: the line above names the rows
            values, shares = band
            out[start:stop] = values.cpu()
            counts += shares
        return out, counts / counts.sum(), {"trimmed_each_end": trim}
