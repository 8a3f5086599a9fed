"""Coordinate-wise median."""

from __future__ import annotations

from typing import Any

import torch

from aggregator.matrix import UpdateMatrix
from aggregator.rules._order import band_aggregate
from aggregator.rules.base import BaseRule

__all__ = ["CoordinateMedian"]


class CoordinateMedian(BaseRule):
    """The median of every coordinate across the updates.

    Yin, Chen, Ramchandran, Bartlett 2018, "Byzantine-Robust Distributed Learning: Towards Optimal Statistical
    Rates" (ICML). Each coordinate is unaffected by fewer than n/2 arbitrary rows. For even n the median is the
    mean of the two middle values. A row's weight is the share of coordinates at which it is (one of) the middle
    value(s); prior weights only decide which rows take part (weight 0 drops a row). One pass over the columns.
    """

    name = "median"
    weighs_rows = False

    def _aggregate(
        self, matrix: UpdateMatrix, prior: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
        n = matrix.n
        aggregate, weights = band_aggregate(matrix, (n - 1) // 2, n // 2 + 1, self.chunk)
        return aggregate, weights, {}
