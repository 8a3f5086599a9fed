"""Column-wise order statistics shared by the coordinate-wise rules (median, trimmed mean, Bulyan)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from aggregator.matrix import UpdateMatrix, finite_rows

__all__ = ["band_aggregate", "column_median", "credit", "middle_band"]


def column_median(sorted_values: torch.Tensor) -> torch.Tensor:
    """Median of each column of an already sorted `[n, c]` block (mean of the two middle values for even n)."""
    n = sorted_values.shape[0]
    if n % 2:
        return sorted_values[n // 2]
    return 0.5 * (sorted_values[n // 2 - 1] + sorted_values[n // 2])


def middle_band(block: torch.Tensor, lo: int, hi: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The mean of ranks `lo .. hi-1` in every column of `[n, c]`, and each row's share of those slots
    (float64 `[n]`, summing to `c`); `None` when the block holds NaN or Inf. The median is
    `lo = (n - 1) // 2, hi = n // 2 + 1`; the trimmed mean `lo = k, hi = n - k`.

    Values come from a column sort (numpy's vectorised sort on the CPU is several times faster than torch's
    sort or numpy's argsort); shares from comparing every value with the band's edges, so rows tied at an edge
    split that column's slots. Both sorts put NaN last, so the first and last ranks reveal any non-finite value
    without another pass.
    """
    if block.device.type == "cpu":
        return _band_numpy(block.numpy(), lo, hi)
    return _band_torch(block, lo, hi)


def _band_numpy(values: np.ndarray, lo: int, hi: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    # All in numpy on the CPU: single-threaded vectorised loops beat torch's OpenMP regions for these
    # memory-bound steps, above all when other processes hold the cores.
    ranked = np.sort(values, axis=0)
    if not (np.isfinite(ranked[0]).all() and np.isfinite(ranked[-1]).all()):
        return None
    inside = (values >= ranked[lo]) & (values <= ranked[hi - 1])
    per_column = np.count_nonzero(inside, axis=0)
    band = torch.from_numpy(ranked[lo:hi].mean(axis=0, dtype=np.float64).astype(values.dtype))
    if (per_column == hi - lo).all():
        return band, torch.from_numpy(np.count_nonzero(inside, axis=1).astype(np.float64))
    # An elementwise product and numpy's pairwise sum, not a matrix product: numpy's BLAS picks its own thread
    # count (a Ray worker runs one, this process may run more), and a threaded product sums in another order.
    return band, torch.from_numpy((inside * ((hi - lo) / per_column)).sum(axis=1))


def _band_torch(block: torch.Tensor, lo: int, hi: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    ranked = torch.sort(block, dim=0).values
    if not (bool(torch.isfinite(ranked[0]).all()) and bool(torch.isfinite(ranked[-1]).all())):
        return None
    band = ranked[lo:hi].to(torch.float64).mean(dim=0).to(block.dtype)
    inside = (block >= ranked[lo]) & (block <= ranked[hi - 1])
    per_column = inside.sum(dim=0)
    if bool((per_column == hi - lo).all()):
        return band, inside.sum(dim=1).to(torch.float64).cpu()
    share = (hi - lo) / per_column.to(torch.float64)
    return band, (inside.to(torch.float64) * share).sum(dim=1).cpu()


def credit(indices: torch.Tensor, n: int, weight: float = 1.0) -> torch.Tensor:
    """How many times each row index appears in `indices` (times `weight`), as float64 `[n]`."""
    counts = torch.bincount(indices.flatten().cpu(), minlength=n)
    return counts.to(torch.float64) * weight


def _band_part(block: torch.Tensor, start: int, stop: int, lo: int, hi: int) -> Any:
    band = middle_band(block, lo, hi)
    return finite_rows(block) if band is None else band


def band_aggregate(matrix: UpdateMatrix, lo: int, hi: int, chunk: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The band mean of ranks `lo .. hi-1` of every column (see `middle_band`), one pass over the columns, with
    each row's weight: its share of the (coordinate, kept value) slots. NaN or Inf rows are named."""
    out = torch.empty(matrix.d, dtype=matrix.compute_dtype)
    counts = torch.zeros(matrix.n, dtype=torch.float64)
    for start, stop, band in matrix.map_chunks(_band_part, chunk, (lo, hi)):
        if isinstance(band, list):
            matrix.raise_for_rows(band, start)
        values, shares = band
        out[start:stop] = values.cpu()
        counts += shares
    return out, counts / counts.sum()
