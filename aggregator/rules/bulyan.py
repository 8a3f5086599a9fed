"""Bulyan."""

from __future__ import annotations

from typing import Any

import torch

from aggregator.matrix import UpdateMatrix, gram_stats
from aggregator.rules._order import column_median, credit
from aggregator.rules.base import BaseRule, check_int
from aggregator.rules.multi_krum import krum_scores, lowest

__all__ = ["Bulyan"]


class Bulyan(BaseRule):
    """Krum-select `theta = n - 2f` rows one at a time, then per coordinate average the `beta = theta - 2f`
    selected values closest to their median.

    El Mhamdi, Guerraoui, Rouault 2018, "The Hidden Vulnerability of Distributed Learning in Byzantium" (ICML).
    Needs `n >= 4f + 3`. The selection works on the Gram matrix alone (removing a row only drops it from the
    distance matrix); the coordinate step is one pass over the selected rows. As the candidate set shrinks
    below Krum's own bound, scores keep the full set's neighbour count `n - f - 2` (capped by the rows left):
    with one neighbour, Krum would prefer any pair of identical Sybil copies. A row's weight is the share of
    (coordinate, kept value) slots it fills.
    """

    name = "bulyan"
    weighs_rows = False

    def __init__(self, f: int = 1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.f = check_int(self.name, "f", f, 0)

    @property
    def min_updates(self) -> int:
        return 4 * self.f + 3

    def params(self) -> dict[str, Any]:
        return {"f": self.f}

    def _aggregate(
        self, matrix: UpdateMatrix, prior: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
        dist = gram_stats(matrix, self.chunk).sq_distances()
        theta = matrix.n - 2 * self.f
        beta = theta - 2 * self.f
        remaining, selected = list(range(matrix.n)), []
        for _ in range(theta):
            sub = torch.tensor(remaining)
            scores = krum_scores(dist[sub][:, sub], self.f, neighbours=matrix.n - self.f - 2)
            best = remaining[lowest(scores, 1)[0]]
            selected.append(best)
            remaining.remove(best)
        selected.sort()
        view = matrix.subset(selected)
        out = torch.empty(matrix.d, dtype=matrix.compute_dtype)
        counts = torch.zeros(theta, dtype=torch.float64)
        for start, stop, (values, credits) in view.map_chunks(_closest_to_median, self.chunk, (beta,)):
            out[start:stop] = values
            counts += credits
        weights = torch.zeros(matrix.n, dtype=torch.float64)
        weights[selected] = counts / counts.sum()
        return out, weights, {"selected": selected, "theta": theta, "beta": beta}


def _closest_to_median(
    block: torch.Tensor, start: int, stop: int, beta: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per column, the mean of the `beta` values closest to the median, and each row's count of kept values."""
    values, _ = torch.sort(block, dim=0, stable=True)
    median = column_median(values)
    _, closest = torch.sort((block - median).abs(), dim=0, stable=True)
    return torch.gather(block, 0, closest[:beta]).mean(dim=0).cpu(), credit(closest[:beta], block.shape[0])
