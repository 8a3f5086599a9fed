"""Robust aggregation rules behind one interface: `get_rule(name, **params).aggregate(updates, weights)`."""

from __future__ import annotations

import inspect
from typing import Any

from aggregator.errors import AggregatorError
from aggregator.matrix import DEFAULT_CHUNK, GramStats, UpdateMatrix, gram_stats, pairwise_sq_distances
from aggregator.rules.base import AggregationResult, AggregationRule, BaseRule
from aggregator.rules.bulyan import Bulyan
from aggregator.rules.centered_clipping import CenteredClipping
from aggregator.rules.fedavg import FedAvg
from aggregator.rules.flag import FlagAggregator
from aggregator.rules.foolsgold import FoolsGold
from aggregator.rules.geometric_median import GeometricMedian
from aggregator.rules.median import CoordinateMedian
from aggregator.rules.multi_krum import MultiKrum
from aggregator.rules.trimmed_mean import TrimmedMean

__all__ = [
    "DEFAULT_CHUNK",
    "RULES",
    "AggregationResult",
    "AggregationRule",
    "BaseRule",
    "Bulyan",
    "CenteredClipping",
    "CoordinateMedian",
    "FedAvg",
    "FlagAggregator",
    "FoolsGold",
    "GeometricMedian",
    "GramStats",
    "MultiKrum",
    "TrimmedMean",
    "UpdateMatrix",
    "get_rule",
    "gram_stats",
    "pairwise_sq_distances",
]

_REGISTRY: dict[str, type[BaseRule]] = {
    cls.name: cls
    for cls in (
        Bulyan,
        CenteredClipping,
        CoordinateMedian,
        FedAvg,
        FlagAggregator,
        FoolsGold,
        GeometricMedian,
        MultiKrum,
        TrimmedMean,
    )
}

RULES: tuple[str, ...] = tuple(sorted(_REGISTRY))


def get_rule(name: str, **params: Any) -> AggregationRule:
    """Build the rule `name` with its parameters (plus `chunk` and `device`, common to every rule)."""
    cls = _REGISTRY.get(name)
    if cls is None:
        raise AggregatorError(f"unknown aggregation rule {name!r}; known rules: {', '.join(RULES)}")
    accepted = (set(inspect.signature(cls.__init__).parameters) | {"chunk", "device"}) - {"self", "kwargs"}
    unknown = sorted(set(params) - accepted)
    if unknown:
        raise AggregatorError(f"{name}: unknown parameter(s) {unknown}; accepted: {sorted(accepted)}")
    return cls(**params)
