"""Federated averaging, the non-robust baseline."""

from __future__ import annotations

from typing import Any

import torch

from aggregator.matrix import UpdateMatrix, weighted_sum
from aggregator.rules.base import BaseRule

__all__ = ["FedAvg"]


class FedAvg(BaseRule):
    """The prior-weighted mean of the updates (uniform without prior weights).

    McMahan, Moore, Ramage, Hampson, Agüera y Arcas 2017, "Communication-Efficient Learning of Deep Networks
    from Decentralized Data" (AISTATS). Not robust: one unbounded row moves it arbitrarily far; it is the
    baseline the robust rules are measured against. One pass over the columns.
    """

    name = "fedavg"

    def _aggregate(
        self, matrix: UpdateMatrix, prior: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
        return weighted_sum(matrix, prior, self.chunk, check_finite=True), prior, {}
