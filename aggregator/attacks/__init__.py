"""Attacks from the literature, for the simulation, the attack suite in the tests and `bench/attacks.py`.

`get_attack(name, **params)` builds one; `attack.craft(AttackView(...))` returns the colluders' updates.
`SUITE` is the attack suite the issue's goals are measured on: every attack omniscient with and without jitter,
and with the colluders' own knowledge only.
"""

from __future__ import annotations

import inspect
from typing import Any

from aggregator.attacks.base import (
    KNOWLEDGE,
    TRAINS,
    Attack,
    AttackSpec,
    AttackView,
    Crafted,
    jitter,
    mean_and_std,
)
from aggregator.attacks.copying import Mimic, SybilCopies, mimic_target
from aggregator.attacks.poisoning import (
    Backdoor,
    LabelFlip,
    Trigger,
    corner_trigger,
    flip_labels,
    triggered_test_set,
)
from aggregator.attacks.statistical import ALIE, IPM, MinMax, MinSum, Scaling, SignFlip, alie_z
from aggregator.errors import AggregatorError

__all__ = [
    "ALIE",
    "ATTACKS",
    "IPM",
    "KNOWLEDGE",
    "SUITE",
    "TRAINS",
    "Attack",
    "AttackSpec",
    "AttackView",
    "Backdoor",
    "Crafted",
    "LabelFlip",
    "Mimic",
    "MinMax",
    "MinSum",
    "Scaling",
    "SignFlip",
    "SybilCopies",
    "Trigger",
    "alie_z",
    "attack_suite",
    "corner_trigger",
    "flip_labels",
    "get_attack",
    "jitter",
    "mean_and_std",
    "mimic_target",
    "triggered_test_set",
]

_REGISTRY: dict[str, type[Attack]] = {
    cls.name: cls
    for cls in (ALIE, IPM, MinMax, MinSum, Mimic, LabelFlip, SignFlip, Scaling, SybilCopies, Backdoor)
}
ATTACKS: tuple[str, ...] = tuple(sorted(_REGISTRY))

# The jitter of the measurements: 20% of each update's norm (cosine ~0.96 between colluders).
SUITE_JITTER = 0.2


def get_attack(name: str, **params: Any) -> Attack:
    cls = _REGISTRY.get(name)
    if cls is None:
        raise AggregatorError(f"unknown attack {name!r}; known attacks: {', '.join(ATTACKS)}")
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self"}
    unknown = sorted(set(params) - accepted)
    if unknown:
        raise AggregatorError(f"{name}: unknown parameter(s) {unknown}; accepted: {sorted(accepted)}")
    return cls(**params)


def attack_suite(count: int, jitter_fraction: float = SUITE_JITTER) -> tuple[AttackSpec, ...]:
    """Every attack of the suite with `count` colluders: omniscient with and without jitter, and (where the
    colluders estimate statistics of the honest updates) jittered from their own honest training only."""
    base: list[tuple[str, dict[str, Any], bool]] = [
        ("alie", {}, True),
        ("ipm", {"eps": 0.1}, True),
        ("ipm", {"eps": 0.5}, True),
        ("min_max", {}, True),
        ("min_sum", {}, True),
        # Without the honest updates there is nobody to mimic: copying a colluder's own honest update is a
        # Sybil amplification of real work, paid once (the near-copy rule), not an attack on the aggregate.
        ("mimic", {}, False),
        ("label_flip", {}, False),
        ("sign_flip", {}, True),
        ("scaling", {}, False),
        ("sybil", {}, False),
        ("backdoor", {"boost": "replace"}, False),
        ("backdoor", {"boost": "norm"}, True),
    ]
    specs: list[AttackSpec] = []
    for name, params, knowledge_matters in base:
        specs.append(AttackSpec(name, count, params=params))
        specs.append(AttackSpec(name, count, params=params, jitter=jitter_fraction))
        if knowledge_matters:
            specs.append(AttackSpec(name, count, knowledge="own", params=params, jitter=jitter_fraction))
    return tuple(specs)


SUITE: tuple[AttackSpec, ...] = attack_suite(5)
