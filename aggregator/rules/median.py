"""Coordinate-wise median."""

from __future__ import annotations

from typing import Any

import torch

from aggregator.errors import InvalidUpdate
from aggregator.rules._order import middle_band
from aggregator.rules.base import BaseRule, UpdateMatrix

__all__ = ["CoordinateMedian"]


class CoordinateMedian(BaseRule):
    """The median of every coordinate across the updates.

    Yin, Chen, Ramchandran, Bartlett 2018, "Byzantine-Robust Distributed Learning: Towards Optimal Statistical
    Rates" (ICML). Each coordinate is unaffected by fewer than n/2 arbitrary rows. For even n the median is the
    mean of the two middle values. A row's weight is the share of coordinates at which it is (one of) the middle
    value(s); prior weights only decide which rows take part (weight 0 drops a row). One pass over the columns.
    """

    name = "median"

    def _aggregate(
        self, matrix: UpdateMatrix, prior: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
        n = matrix.n
        lo, hi = (n - 1) // 2, n // 2 + 1
        out = torch.empty(matrix.d, dtype=matrix.compute_dtype)
        counts = torch.zeros(n, dtype=torch.float64)
        for start, stop, block in matrix.chunks(self.chunk):
            band = middle_band(block, lo, hi)
            if band is None:
                matrix.raise_if_not_finite(block, start)
                raise InvalidUpdate("non-finite values")  # not reached: the line above names the rows
            values, shares = band
            out[start:stop] = values.cpu()
            counts += shares
        return out, counts / counts.sum(), {}
