"""What every attack shares: what the colluders know (`AttackView`), what they send (`Crafted`), the interface
(`Attack`), the jitter that hides copies, and how a run names an attack (`AttackSpec`).

Attacks are pure: flat float32 updates in, flat float32 updates out, every random draw seeded by the caller.
Training (honest, or on poisoned data) is the simulation's job; an attack only says what its colluders train on
(`trains`, `poison`) and what they do with the result (`craft`).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from aggregator.errors import AggregatorError

__all__ = [
    "KNOWLEDGE",
    "TRAINS",
    "Attack",
    "AttackSpec",
    "AttackView",
    "Crafted",
    "jitter",
    "mean_and_std",
]

# "omniscient": the colluders see every honest update of the round before they send theirs;
# "own": they see only what they trained themselves (Shejwalkar and Houmansadr's "partial knowledge").
KNOWLEDGE = ("omniscient", "own")
# What the colluders train on: nothing, their own shards, or their shards poisoned by `Attack.poison`.
TRAINS = ("none", "clean", "poisoned")


@dataclass(frozen=True)
class AttackView:
    """What the colluders know when they craft this round's updates.

    `reference` holds the honest updates they can compute statistics from: every honest update of the round
    (omniscient) or their own clean training (`knowledge="own"`). `own` holds one row per attacker from the
    training the attack asked for (`trains`), `None` when it trains nothing. `n` is the number of submitters in
    the round, attackers included; `memory` is what the attack returned the round before.
    """

    reference: torch.Tensor
    count: int
    n: int
    seed: int
    own: torch.Tensor | None = None
    memory: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.reference.dim() != 2 or self.reference.shape[0] < 1:
            raise AggregatorError(
                f"an attack needs reference updates [h, d], got {list(self.reference.shape)}"
            )
        if self.count < 1 or self.n < self.count:
            raise AggregatorError(f"need 1 <= attackers <= submitters, got {self.count} of {self.n}")
        if self.own is not None and tuple(self.own.shape) != (self.count, self.reference.shape[1]):
            raise AggregatorError(
                f"own updates must be [{self.count}, {self.reference.shape[1]}], got {list(self.own.shape)}"
            )

    @property
    def d(self) -> int:
        return int(self.reference.shape[1])

    def require_own(self, attack: str) -> torch.Tensor:
        if self.own is None:
            raise AggregatorError(f"{attack} needs the colluders' own training results")
        return self.own


@dataclass(frozen=True)
class Crafted:
    """The attackers' updates `[count, d]` (float32) and what the attack remembers for the next round."""

    updates: torch.Tensor
    memory: dict[str, Any] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)


class Attack(ABC):
    """One attack from the literature: `craft(view)` returns what the colluders submit this round."""

    name: ClassVar[str]
    trains: ClassVar[str] = "none"

    def params(self) -> dict[str, Any]:
        return {}

    def poison(self, X: torch.Tensor, y: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The training set a colluder uses when `trains == "poisoned"` (its own shard by default)."""
        return X, y

    @abstractmethod
    def craft(self, view: AttackView) -> Crafted:
        """This round's malicious updates, one row per attacker."""


def mean_and_std(reference: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Coordinate-wise mean and (unbiased, 0 for a single row) standard deviation, float64."""
    x = reference.to(torch.float64)
    mean = x.mean(dim=0)
    std = x.std(dim=0, unbiased=True) if x.shape[0] > 1 else torch.zeros_like(mean)
    return mean, std


def jitter(updates: torch.Tensor, fraction: float, seed: int) -> torch.Tensor:
    """Each row plus independent Gaussian noise of expected norm `fraction` times the row's norm.

    Copies jittered by 20% keep a cosine of about 1 / (1 + 0.2^2) = 0.96 with each other: under the 0.99 that a
    near-copy test uses, while the attack's effect barely changes.
    """
    if not (math.isfinite(fraction) and fraction >= 0):
        raise AggregatorError(f"jitter must be a finite non-negative fraction, got {fraction!r}")
    if fraction == 0 or updates.numel() == 0:
        return updates.clone()
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn(updates.shape, generator=gen, dtype=torch.float64)
    scale = fraction * updates.to(torch.float64).norm(dim=1, keepdim=True) / math.sqrt(updates.shape[1])
    return (updates.to(torch.float64) + scale * noise).to(updates.dtype)


@dataclass(frozen=True)
class AttackSpec:
    """How a run names an attack: `count` colluders running `name` with `params`, knowing `knowledge`, their
    updates jittered by `jitter` (a fraction of each update's norm)."""

    name: str
    count: int
    knowledge: str = "omniscient"
    jitter: float = 0.0
    params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.knowledge not in KNOWLEDGE:
            raise AggregatorError(f"attack knowledge must be one of {KNOWLEDGE}, got {self.knowledge!r}")
        if isinstance(self.count, bool) or not isinstance(self.count, int) or self.count < 0:
            raise AggregatorError(f"attacker count must be a non-negative integer, got {self.count!r}")
        if not (isinstance(self.jitter, int | float) and math.isfinite(self.jitter) and self.jitter >= 0):
            raise AggregatorError(f"jitter must be a finite non-negative fraction, got {self.jitter!r}")

    @property
    def label(self) -> str:
        """A short name for tables: `alie+jitter`, `ipm(eps=0.5)/own`, ..."""
        params = ",".join(f"{k}={v}" for k, v in sorted(self.params.items()))
        text = self.name + (f"({params})" if params else "")
        if self.jitter:
            text += "+jitter"
        if self.knowledge == "own":
            text += "/own"
        return text
