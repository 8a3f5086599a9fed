"""Defenses from the literature, as steps before the aggregation rule, composable in the project manifest.

`get_defense(name, **params)` builds one; `apply_defenses(defenses, gram, ...)` runs a chain of them on the
submitted updates' Gram matrix and returns the rows the rule aggregates (`RowMix`), the updates they left out
and why, the groups that count as one source, and the noise to add to the aggregate. See
`aggregator.defenses.base` for the row algebra and docs/aggregator.md for when each one helps.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aggregator.defenses.base import (
    Defense,
    DefenseContext,
    DefenseStep,
    MixedRow,
    Reference,
    Rejection,
    RowMix,
    mixed_updates,
)
from aggregator.defenses.bucketing import Bucketing
from aggregator.defenses.clipping import ARC, NormClip
from aggregator.defenses.collusion import SharedDeviation
from aggregator.defenses.copies import NearCopies
from aggregator.defenses.flame import FLAME
from aggregator.defenses.fltrust import FLTrust
from aggregator.defenses.forgery import ForgedUpdates
from aggregator.defenses.nnm import NNM
from aggregator.errors import AggregatorError
from aggregator.matrix import GramStats, UpdateMatrix

__all__ = [
    "ARC",
    "DEFENSES",
    "FLAME",
    "NNM",
    "Bucketing",
    "Defense",
    "DefenseChain",
    "DefenseContext",
    "DefenseStep",
    "FLTrust",
    "ForgedUpdates",
    "MixedRow",
    "NearCopies",
    "NormClip",
    "Reference",
    "Rejection",
    "RowMix",
    "SharedDeviation",
    "apply_defenses",
    "get_defense",
    "mixed_updates",
    "needs_reference",
    "parse_defenses",
]

_REGISTRY: dict[str, type[Defense]] = {
    cls.name: cls
    for cls in (ARC, Bucketing, FLAME, FLTrust, ForgedUpdates, NNM, NearCopies, NormClip, SharedDeviation)
}
DEFENSES: tuple[str, ...] = tuple(sorted(_REGISTRY))


def get_defense(name: str, **params: Any) -> Defense:
    cls = _REGISTRY.get(name)
    if cls is None:
        raise AggregatorError(f"unknown defense {name!r}; known defenses: {', '.join(DEFENSES)}")
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self"}
    unknown = sorted(set(params) - accepted)
    if unknown:
        raise AggregatorError(f"{name}: unknown parameter(s) {unknown}; accepted: {sorted(accepted)}")
    return cls(**params)


def parse_defenses(specs: Sequence[Mapping[str, Any]]) -> list[Defense]:
    """Defenses from the manifest's list: `[{"name": "nnm", "f": 2}, {"name": "norm_clip"}]`."""
    if isinstance(specs, str | bytes | Mapping) or not isinstance(specs, Sequence):
        raise AggregatorError(f"defenses must be a list of {{'name': ..., params}} objects, got {specs!r}")
    out = []
    for i, spec in enumerate(specs):
        if not isinstance(spec, Mapping) or not isinstance(spec.get("name"), str):
            raise AggregatorError(f"defense {i} must be an object with a 'name', got {spec!r}")
        out.append(get_defense(spec["name"], **{k: v for k, v in spec.items() if k != "name"}))
    return out


def needs_reference(defenses: Sequence[Defense]) -> bool:
    """Whether the chain needs the owner's reference update (FLTrust)."""
    return any(isinstance(d, FLTrust) for d in defenses)


@dataclass(frozen=True)
class DefenseChain:
    """What a chain of defenses made of the round's updates."""

    rows: RowMix
    rejected: tuple[Rejection, ...]
    groups: tuple[tuple[int, ...], ...]
    noise_std: float
    steps: list[dict[str, Any]] = field(default_factory=list)


def apply_defenses(
    defenses: Sequence[Defense],
    gram: GramStats,
    *,
    seed: int = 0,
    reference: Reference | None = None,
    order: Sequence[int] | None = None,
    matrix: UpdateMatrix | None = None,
) -> DefenseChain:
    """Run `defenses` in order from the identity mix of the `gram.n` submitted updates (`matrix`, when given,
    for the defenses that read coordinates; `order`, when known, each update's rank in submission order)."""
    if order is not None and sorted(order) != list(range(gram.n)):
        raise AggregatorError(f"submission order must rank the {gram.n} updates 0..{gram.n - 1}")
    if matrix is not None and matrix.n != gram.n:
        raise AggregatorError(f"the matrix has {matrix.n} rows, the Gram {gram.n}")
    ranks = tuple(order) if order is not None else None
    rows = RowMix.identity(gram.n)
    rejected: dict[int, Rejection] = {}
    groups: list[tuple[int, ...]] = []
    noise, steps = 0.0, []
    for position, defense in enumerate(defenses):
        # Each step draws from its own stream: adding a step never shifts another's random choices.
        context = DefenseContext(gram, seed * 1_000 + position, reference, ranks, matrix)
        step: DefenseStep = defense.apply(rows, context)
        rows = step.rows
        for rejection in step.rejected:
            rejected.setdefault(rejection.row, rejection)
        groups.extend(step.groups)
        noise += step.noise_std
        steps.append({"name": defense.name, "params": defense.params(), "details": step.details})
    if not rows.active():
        raise AggregatorError("the defenses left no update to aggregate")
    ordered = tuple(rejected[k] for k in sorted(rejected))
    return DefenseChain(rows, ordered, tuple(groups), noise, steps)
