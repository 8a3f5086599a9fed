"""Column-wise order statistics shared by the coordinate-wise rules (median, trimmed mean, Bulyan)."""

from __future__ import annotations

import torch

__all__ = ["column_median", "credit"]


def column_median(sorted_values: torch.Tensor) -> torch.Tensor:
    """Median of each column of an already sorted `[n, c]` block (mean of the two middle values for even n)."""
    n = sorted_values.shape[0]
    if n % 2:
        return sorted_values[n // 2]
    return 0.5 * (sorted_values[n // 2 - 1] + sorted_values[n // 2])


def credit(indices: torch.Tensor, n: int, weight: float = 1.0) -> torch.Tensor:
    """How many times each row index appears in `indices` (times `weight`), as float64 `[n]`."""
    counts = torch.bincount(indices.flatten().cpu(), minlength=n)
    return counts.to(torch.float64) * weight
