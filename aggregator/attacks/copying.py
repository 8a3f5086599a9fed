"""Attacks that send copies: of an honest trainer (Mimic) or of one poisoned update (Sybil copies).

- Mimic: Karimireddy, He, Jaggi 2022, "Byzantine-Robust Learning on Heterogeneous Datasets via Bucketing"
  (ICLR), section 3: every colluder copies the honest worker that sits furthest along the direction of largest
  variance, over-weighting one worker's data so the aggregate drifts towards it.
- Sybil copies: Fung, Yoon, Beschastnikh 2020, "The Limitations of Federated Learning in Sybil Settings"
  (RAID): many identities submit one poisoned (label-flipped) update.
"""

from __future__ import annotations

from typing import Any

import torch

from aggregator.attacks.base import Attack, AttackView, Crafted
from aggregator.attacks.poisoning import flip_labels
from aggregator.errors import AggregatorError

__all__ = ["Mimic", "SybilCopies", "mimic_target"]


def mimic_target(reference: torch.Tensor) -> int:
    """The row furthest from the mean along the top principal direction (ties: the lowest index)."""
    x = reference.to(torch.float64)
    if x.shape[0] == 1:
        return 0
    centered = x - x.mean(dim=0)
    # Eigenvectors of the small [h, h] Gram: projections on the top principal direction are u1 * s1.
    values, vectors = torch.linalg.eigh(centered @ centered.T)
    scores = (vectors[:, -1] * values[-1].clamp_min(0.0).sqrt()).abs()
    return int(torch.nonzero(scores == scores.max()).flatten()[0])


class Mimic(Attack):
    """Every colluder sends a copy of the same honest update. The target is chosen in the first round and kept
    (`memory["target"]`, an index into the reference rows), as in the paper; `target` fixes it up front."""

    name = "mimic"

    def __init__(self, target: int | None = None) -> None:
        if target is not None and (isinstance(target, bool) or not isinstance(target, int) or target < 0):
            raise AggregatorError(f"{self.name}: target must be a non-negative row index, got {target!r}")
        self.target = target

    def params(self) -> dict[str, Any]:
        return {"target": self.target}

    def craft(self, view: AttackView) -> Crafted:
        target = self.target if self.target is not None else view.memory.get("target")
        if target is None:
            target = mimic_target(view.reference)
        if not 0 <= int(target) < view.reference.shape[0]:
            raise AggregatorError(
                f"{self.name}: target {target} is not one of {view.reference.shape[0]} rows"
            )
        copy = view.reference[int(target)].to(torch.float32)
        return Crafted(copy.expand(view.count, -1).clone(), memory={"target": int(target)})


class SybilCopies(Attack):
    """The first colluder trains on flipped labels (class c becomes `classes - 1 - c`); every colluder sends
    that one update."""

    name = "sybil"
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
        own = view.require_own(self.name)
        return Crafted(own[0].expand(view.count, -1).clone())
