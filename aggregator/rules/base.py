"""The interface every aggregation rule implements (`AggregationRule`), the validation they share (`BaseRule`) and
their parameter checks. The chunked passes they run on are in `aggregator.matrix`."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np
import torch

from aggregator.errors import AggregatorError, InsufficientUpdates, InvalidUpdate
from aggregator.matrix import DEFAULT_CHUNK, UpdateMatrix, check_chunk, resolve_device

__all__ = [
    "AggregationResult",
    "AggregationRule",
    "BaseRule",
    "check_float",
    "check_int",
    "normalize_weights",
]


@dataclass(frozen=True)
class AggregationResult:
    """What a rule returns: the aggregated delta `[d]` and each row's weight `[n]` (0 = rejected, sum 1)."""

    aggregate: torch.Tensor
    weights: torch.Tensor
    rule: str
    details: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class AggregationRule(Protocol):
    """One robust aggregation rule: `get_rule(name, **params)` builds one."""

    @property
    def name(self) -> str:
        """The rule's name in `RULES`."""
        ...

    @property
    def min_updates(self) -> int:
        """The fewest rows the rule can aggregate with its parameters."""
        ...

    def params(self) -> dict[str, Any]:
        """The rule's parameters, JSON-able, for the round report."""
        ...

    def aggregate(self, updates: Any, weights: Any = None) -> AggregationResult:
        """Aggregate `updates` (`[n, d]` tensor or a sequence of row sources), optional prior weights `[n]`."""
        ...


def check_int(rule: str, name: str, value: Any, minimum: int) -> int:
    """A rule parameter that must be an integer >= `minimum` (bools refused)."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise AggregatorError(f"{rule}: {name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_float(
    rule: str, name: str, value: Any, low: float, high: float, *, open_high: bool = False
) -> float:
    """A rule parameter that must be a finite real in `[low, high]` (or `[low, high)`)."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating | np.integer):
        raise AggregatorError(f"{rule}: {name} must be a number, got {value!r}")
    v = float(value)
    if not np.isfinite(v) or v < low or v > high or (open_high and v == high):
        bound = f"[{low}, {high})" if open_high else f"[{low}, {high}]"
        raise AggregatorError(f"{rule}: {name} must be in {bound}, got {value!r}")
    return v


def normalize_weights(weights: Any, n: int) -> torch.Tensor:
    """Prior row weights as float64 summing to 1 (uniform when `None`); refuses bad shapes and values."""
    if weights is None:
        return torch.full((n,), 1.0 / n, dtype=torch.float64) if n else torch.zeros(0, dtype=torch.float64)
    w = torch.as_tensor(weights, dtype=torch.float64).flatten().cpu()
    if w.numel() != n:
        raise AggregatorError(f"expected {n} weights, got {w.numel()}")
    if not bool(torch.isfinite(w).all()) or bool((w < 0).any()):
        raise AggregatorError("weights must be finite and non-negative")
    if n and float(w.sum()) <= 0.0:
        raise AggregatorError("weights must not all be zero")
    return w / w.sum() if n else w


class BaseRule(ABC):
    """Validation shared by every rule: input shapes and dtypes, prior weights, rows with weight 0 dropped,
    enough rows for the rule, a finite aggregate, and weights scattered back to the caller's rows."""

    name: ClassVar[str]
    # Whether prior weights scale a row's part in the aggregate (False: order statistics, where a prior
    # weight only decides whether a row takes part).
    weighs_rows: ClassVar[bool] = True

    def __init__(self, *, chunk: int = DEFAULT_CHUNK, device: str | torch.device | None = None) -> None:
        self.chunk = check_chunk(chunk)
        self.device = resolve_device(device)

    @property
    def min_updates(self) -> int:
        return 1

    def params(self) -> dict[str, Any]:
        return {}

    def aggregate(self, updates: Any, weights: Any = None) -> AggregationResult:
        matrix = updates if isinstance(updates, UpdateMatrix) else UpdateMatrix(updates, device=self.device)
        prior = normalize_weights(weights, matrix.n)
        kept = torch.nonzero(prior > 0).flatten().tolist()
        if len(kept) < self.min_updates:
            raise InsufficientUpdates(
                f"{self.name} needs at least {self.min_updates} updates with its parameters, got {len(kept)}",
                have=len(kept),
                need=self.min_updates,
            )
        view = matrix if len(kept) == matrix.n else matrix.subset(kept)
        aggregate, row_weights, details = self._aggregate(view, prior[kept] / prior[kept].sum())
        if not bool(torch.isfinite(aggregate).all()):
            raise InvalidUpdate(f"{self.name}: the aggregate overflowed {aggregate.dtype}")
        if "selected" in details:
            details["selected"] = [kept[i] for i in details["selected"]]
        full = torch.zeros(matrix.n, dtype=torch.float64)
        full[kept] = row_weights.to(torch.float64).cpu()
        return AggregationResult(aggregate.cpu(), full / full.sum(), self.name, details)

    @abstractmethod
    def _aggregate(
        self, matrix: UpdateMatrix, prior: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
        """Aggregate the kept rows: returns (aggregate `[d]`, row weights `[n]` summing to 1, details)."""
