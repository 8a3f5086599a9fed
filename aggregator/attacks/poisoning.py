"""Data-poisoning attacks: the colluders train on data they changed.

- Label flipping: Biggio, Nelson, Laskov 2012, "Poisoning Attacks against Support Vector Machines" (ICML);
  in federated learning Tolpegin, Truex, Gursoy, Liu 2020, "Data Poisoning Attacks Against Federated Learning
  Systems" (ESORICS): class c is trained as `classes - 1 - c`.
- Backdoor by model replacement: Bagdasaryan, Veit, Hua, Estrin, Shmatikov 2020, "How To Backdoor Federated
  Learning" (AISTATS). Each colluder trains on its shard plus copies stamped with a trigger (a few input
  features set to a fixed value, for images a small patch) and relabelled to the target class, then scales its
  update: by `n / count` so the colluders together replace the global model (`boost="replace"`), or to the
  median honest norm so norm-based defenses see nothing unusual (`boost="norm"`, the paper's constrain-and-scale
  without the anomaly term), or not at all (`boost="none"`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from aggregator.attacks.base import Attack, AttackView, Crafted
from aggregator.errors import AggregatorError

__all__ = [
    "BOOSTS",
    "Backdoor",
    "LabelFlip",
    "Trigger",
    "corner_trigger",
    "flip_labels",
    "triggered_test_set",
]

BOOSTS = ("none", "norm", "replace")


def flip_labels(y: torch.Tensor, classes: int) -> torch.Tensor:
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= classes):
        raise AggregatorError(f"labels must lie in [0, {classes}), got [{int(y.min())}, {int(y.max())}]")
    return classes - 1 - y


@dataclass(frozen=True)
class Trigger:
    """Input features `features` set to `value`; stamped inputs should be classified as `target`."""

    features: tuple[int, ...]
    value: float = 1.0
    target: int = 0

    def __post_init__(self) -> None:
        if not self.features or any(
            isinstance(f, bool) or not isinstance(f, int) or f < 0 for f in self.features
        ):
            raise AggregatorError(f"trigger features must be non-negative indices, got {self.features!r}")
        if isinstance(self.target, bool) or not isinstance(self.target, int) or self.target < 0:
            raise AggregatorError(f"trigger target must be a class index, got {self.target!r}")

    def stamp(self, X: torch.Tensor) -> torch.Tensor:
        if X.dim() != 2 or max(self.features) >= X.shape[1]:
            raise AggregatorError(f"trigger features {self.features} do not fit inputs {list(X.shape)}")
        out = X.clone()
        out[:, list(self.features)] = self.value
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"features": list(self.features), "value": self.value, "target": self.target}


def corner_trigger(
    height: int = 8,
    width: int = 8,
    size: int = 2,
    value: float = 1.0,
    target: int = 0,
    corner: str = "bottom_right",
) -> Trigger:
    """A `size x size` patch in one corner of row-major `height x width` images (digits: 8 x 8, values in
    [0, 1], so 1.0 is the maximum)."""
    corners = {"top_left": (0, 0), "top_right": (0, width - size), "bottom_left": (height - size, 0)}
    corners["bottom_right"] = (height - size, width - size)
    if corner not in corners or not 0 < size <= min(height, width):
        raise AggregatorError(f"corner must be one of {sorted(corners)} and size fit the image")
    top, left = corners[corner]
    features = tuple((top + r) * width + left + c for r in range(size) for c in range(size))
    return Trigger(features, value, target)


def triggered_test_set(
    X: torch.Tensor, y: torch.Tensor, trigger: Trigger
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stamped test inputs whose true class is not the target, labelled with the target: the accuracy of a model
    on this set is the backdoor's success rate."""
    keep = y != trigger.target
    stamped = trigger.stamp(X[keep])
    return stamped, torch.full((stamped.shape[0],), trigger.target, dtype=y.dtype)


class LabelFlip(Attack):
    """Each colluder trains honestly on flipped labels and sends the result."""

    name = "label_flip"
    trains = "poisoned"

    def __init__(self, classes: int = 10) -> None:
        if isinstance(classes, bool) or not isinstance(classes, int) or classes < 2:
            raise AggregatorError(f"{self.name}: classes must be an integer >= 2, got {classes!r}")
        self.classes = classes

    def params(self) -> dict[str, Any]:
        return {"classes": self.classes}

    def poison(self, X: torch.Tensor, y: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        return X, flip_labels(y, self.classes)

    def craft(self, view: AttackView) -> Crafted:
        return Crafted(view.require_own(self.name).clone())


class Backdoor(Attack):
    """Model-replacement backdoor (see the module docstring); `trigger` defaults to a 2 x 2 patch in the
    bottom-right corner of an 8 x 8 image, relabelled to class 0."""

    name = "backdoor"
    trains = "poisoned"

    def __init__(
        self,
        boost: str = "replace",
        features: Sequence[int] | None = None,
        value: float = 1.0,
        target: int = 0,
    ) -> None:
        if boost not in BOOSTS:
            raise AggregatorError(f"{self.name}: boost must be one of {BOOSTS}, got {boost!r}")
        self.boost = boost
        base = corner_trigger(value=value, target=target)
        self.trigger = Trigger(tuple(features), value, target) if features is not None else base

    def params(self) -> dict[str, Any]:
        return {"boost": self.boost}

    def poison(self, X: torch.Tensor, y: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        stamped, labels = triggered_test_set(X, y, self.trigger)
        return torch.cat([X, stamped]), torch.cat([y, labels])

    def craft(self, view: AttackView) -> Crafted:
        own = view.require_own(self.name).to(torch.float64)
        if self.boost == "replace":
            factor = torch.full((view.count, 1), view.n / view.count, dtype=torch.float64)
        elif self.boost == "norm":
            target = float(view.reference.to(torch.float64).norm(dim=1).median())
            norms = own.norm(dim=1, keepdim=True)
            factor = torch.where(norms > 0, target / norms.clamp_min(1e-300), torch.ones_like(norms))
        else:
            factor = torch.ones((view.count, 1), dtype=torch.float64)
        return Crafted((own * factor).to(torch.float32), details={"scale": factor.flatten().tolist()})
