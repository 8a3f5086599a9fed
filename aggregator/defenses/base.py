"""The interface every defense implements, and the row algebra they share.

A defense is a step before the aggregation rule. It never touches the update matrix itself: it sees the rows
the rule will receive as linear combinations of the submitted updates (`RowMix`: a mixing matrix `[m, n]` and a
prior weight per row) together with the submitted updates' Gram matrix (`aggregator.matrix.GramStats`), and
returns a new `RowMix`. Clipping scales rows, nearest-neighbour mixing and bucketing average them, trust
scores weight them, filters give rows weight 0. Because every row stays a combination of the submitted ones,
all distances, norms and cosines follow from the `n x n` Gram matrix: a chain of defenses costs no pass over
the data, and the rule reads the mixed rows one column chunk at a time (`MixedMatrix`), so memory stays
O(n^2 + n * chunk) with memory-mapped updates.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import numpy as np
import torch

from aggregator.errors import AggregatorError
from aggregator.matrix import GramStats, UpdateMatrix

__all__ = [
    "Defense",
    "DefenseContext",
    "DefenseStep",
    "MixedRow",
    "Reference",
    "Rejection",
    "RowMix",
    "check_count",
    "check_positive",
    "mixed_updates",
]


@dataclass(frozen=True)
class Reference:
    """The owner's reference update (FLTrust's server update), known through its inner product with every
    submitted update and its squared norm."""

    dots: torch.Tensor  # [n] float64
    sq_norm: float


@dataclass(frozen=True)
class DefenseContext:
    """What a defense may use besides the rows: the submitted updates' Gram, the round's seed (every random
    choice comes from it), the owner's reference update when the round has one, each update's place in the
    order of submission when the round knows it (0 = first), and the updates themselves for the few defenses
    that need a pass over coordinates (they say so)."""

    gram: GramStats
    seed: int = 0
    reference: Reference | None = None
    order: tuple[int, ...] | None = None
    matrix: UpdateMatrix | None = None

    @property
    def n(self) -> int:
        return self.gram.n


@dataclass(frozen=True)
class Rejection:
    """A submitted update that a defense left out of the aggregate, and why (in words the explorer shows)."""

    row: int
    defense: str
    reason: str
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RowMix:
    """The rows the rule will see: row k is `sum_j mix[k, j] * update_j`, with prior weight `weights[k]`."""

    mix: torch.Tensor  # [m, n] float64
    weights: torch.Tensor  # [m] float64, >= 0

    @classmethod
    def identity(cls, n: int) -> RowMix:
        return cls(torch.eye(n, dtype=torch.float64), torch.ones(n, dtype=torch.float64))

    @property
    def m(self) -> int:
        return int(self.mix.shape[0])

    def active(self) -> list[int]:
        return torch.nonzero(self.weights > 0).flatten().tolist()

    def raw_gram(self, gram: GramStats) -> torch.Tensor:
        """Inner products `[m, m]` of the mixed rows."""
        return self.mix @ gram.raw_gram() @ self.mix.T

    def sq_norms(self, gram: GramStats) -> torch.Tensor:
        return torch.diagonal(self.raw_gram(gram)).clamp_min(0.0)

    def sq_distances(self, gram: GramStats) -> torch.Tensor:
        """Squared distances `[m, m]` between the mixed rows, through the centered Gram (no cancellation of a
        large common component)."""
        return self.gram_stats(gram).sq_distances()

    def gram_stats(self, gram: GramStats) -> GramStats:
        """The `GramStats` of the mixed rows: in the basis (rows minus column mean, origin), a mixed row has
        coefficients `[mix_k, 1 - sum(mix_k)]` and the origin stays the origin."""
        n = gram.n
        a = torch.zeros(self.m + 1, n + 1, dtype=torch.float64)
        a[: self.m, :n] = self.mix
        a[: self.m, n] = 1.0 - self.mix.sum(dim=1)
        a[self.m, n] = 1.0
        return GramStats(a @ gram.centered @ a.T)

    def influence(self, coeffs: torch.Tensor) -> torch.Tensor:
        """Coefficients `[n]` on the submitted updates of `sum_k coeffs[k] * row_k`."""
        return coeffs.to(torch.float64) @ self.mix

    def scaled(self, factors: torch.Tensor) -> RowMix:
        return replace(self, mix=self.mix * factors.to(torch.float64)[:, None])


@dataclass(frozen=True)
class DefenseStep:
    """A defense's result: the new rows, the updates it left out, figures for the report, the standard
    deviation of Gaussian noise to add to every coordinate of the aggregate (FLAME's noising; 0 for none), and
    the groups of submitted updates it found to be one source."""

    rows: RowMix
    rejected: tuple[Rejection, ...] = ()
    details: dict[str, Any] = field(default_factory=dict)
    noise_std: float = 0.0
    # Submitted updates that count as one source (near-copies): valued together, their value shared.
    groups: tuple[tuple[int, ...], ...] = ()


class Defense(ABC):
    """One defense from the literature, a step before the rule: `apply(rows, context) -> DefenseStep`."""

    name: ClassVar[str]

    def params(self) -> dict[str, Any]:
        return {}

    @abstractmethod
    def apply(self, rows: RowMix, context: DefenseContext) -> DefenseStep:
        """Transform the rows; rows with weight 0 are out and stay out."""


def check_count(defense: str, name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise AggregatorError(f"{defense}: {name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_positive(defense: str, name: str, value: Any, *, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating | np.integer):
        raise AggregatorError(f"{defense}: {name} must be a number, got {value!r}")
    v = float(value)
    if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        raise AggregatorError(
            f"{defense}: {name} must be {'>= 0' if allow_zero else '> 0'} and finite, got {value!r}"
        )
    return v


class MixedRow:
    """One mixed row, `sum_j coeffs[j] * update_j`, as a row source an `UpdateMatrix` reads a column chunk at
    a time: only the updates with a non-zero coefficient are read, into a buffer reused between chunks."""

    def __init__(self, base: UpdateMatrix, coeffs: torch.Tensor) -> None:
        if coeffs.dim() != 1 or coeffs.numel() != base.n:
            raise AggregatorError(f"mixing coefficients {list(coeffs.shape)} do not fit {base.n} updates")
        nonzero = torch.nonzero(coeffs).flatten().tolist()
        self._rows = base.subset(nonzero)
        self._coeffs = coeffs[nonzero].to(base.compute_dtype)
        self.numel = base.d
        self.dtype = base.compute_dtype

    def get_shape(self) -> list[int]:
        return [self.numel]

    def get_dtype(self) -> str:
        return "F64" if self.dtype == torch.float64 else "F32"

    def read_into(self, start: int, stop: int, out: torch.Tensor) -> None:
        out.copy_(self[start:stop])

    def __getitem__(self, key: slice) -> torch.Tensor:
        start, stop, _ = key.indices(self.numel)
        if not self._coeffs.numel():
            return torch.zeros(stop - start, dtype=self.dtype)
        block = self._rows.read(start, stop)
        return self._coeffs.to(block.device) @ block


def mixed_updates(base: UpdateMatrix, rows: RowMix) -> UpdateMatrix:
    """The rule's input, on `base`'s engine: `base` itself when the mix is the identity, a view on some of its
    rows when every mixed row is one update (1 * x is x exactly: the same bits), else one `MixedRow` each."""
    if rows.m == base.n and bool(torch.equal(rows.mix, torch.eye(base.n, dtype=torch.float64))):
        return base
    nonzero = [torch.nonzero(rows.mix[k]).flatten().tolist() for k in range(rows.m)]
    if all(len(nz) == 1 and float(rows.mix[k, nz[0]]) == 1.0 for k, nz in enumerate(nonzero)):
        return base.subset([nz[0] for nz in nonzero])
    mixed = [MixedRow(base, rows.mix[k]) for k in range(rows.m)]
    return UpdateMatrix(mixed, device=base.device, engine=base.engine)
