"""Attacks that craft one vector from the honest updates' statistics and send it from every colluder.

- ALIE: Baruch, Baruch, Goldberg 2019, "A Little Is Enough: Circumventing Defenses For Distributed Learning"
  (NeurIPS).
- IPM: Xie, Koyejo, Gupta 2020, "Fall of Empires: Breaking Byzantine-tolerant SGD by Inner Product
  Manipulation" (UAI 2019, PMLR 115).
- Min-max and min-sum: Shejwalkar, Houmansadr 2021, "Manipulating the Byzantine: Optimizing Model Poisoning
  Attacks and Defenses for Federated Learning" (NDSS), the aggregation-agnostic attacks of its section IV.
- Sign flipping: Allen-Zhu, Ebrahimian, Li, Alistarh 2021, "Byzantine-Resilient Non-Convex Stochastic Gradient
  Descent" (ICLR): the negated mean.
- Scaling (boosting): Bhagoji, Chakraborty, Mittal, Calo 2019, "Analyzing Federated Learning through an
  Adversarial Lens" (ICML): every colluder multiplies its own update.
"""

from __future__ import annotations

from statistics import NormalDist
from typing import Any

import torch

from aggregator.attacks.base import Attack, AttackView, Crafted, mean_and_std
from aggregator.errors import AggregatorError

__all__ = ["ALIE", "IPM", "MinMax", "MinSum", "Scaling", "SignFlip", "alie_z", "perturbation"]

PERTURBATIONS = ("sign", "std", "unit")


def _positive(attack: str, name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise AggregatorError(f"{attack}: {name} must be a positive number, got {value!r}")
    return float(value)


def _repeat(vector: torch.Tensor, count: int) -> torch.Tensor:
    return vector.to(torch.float32).expand(count, -1).clone()


def alie_z(n: int, f: int) -> float:
    """ALIE's z_max: with s = floor(n/2 + 1) - f honest supporters needed, z = Phi^-1((n - s) / n)."""
    s = n // 2 + 1 - f
    p = (n - s) / n
    if not 0.0 < p < 1.0:
        # f >= n/2 + 1 (the colluders are the majority): any z works; the paper's largest finite choice.
        p = min(max(p, 0.5), (n - 1) / n)
    return NormalDist().inv_cdf(p)


class ALIE(Attack):
    """Every colluder sends `mean - z * std` (coordinate-wise): within the honest spread on every coordinate,
    so median- and distance-based rules keep it, yet consistently biased. `z=None` takes the paper's z_max."""

    name = "alie"

    def __init__(self, z: float | None = None) -> None:
        self.z = None if z is None else _positive(self.name, "z", z)

    def params(self) -> dict[str, Any]:
        return {"z": self.z}

    def craft(self, view: AttackView) -> Crafted:
        z = self.z if self.z is not None else alie_z(view.n, view.count)
        mean, std = mean_and_std(view.reference)
        return Crafted(_repeat(mean - z * std, view.count), details={"z": z})


class IPM(Attack):
    """Every colluder sends `-eps * mean`: a small update whose inner product with the true gradient is
    negative, so a rule that keeps it (or averages it in) slows or reverses descent."""

    name = "ipm"

    def __init__(self, eps: float = 0.5) -> None:
        self.eps = _positive(self.name, "eps", eps)

    def params(self) -> dict[str, Any]:
        return {"eps": self.eps}

    def craft(self, view: AttackView) -> Crafted:
        mean, _ = mean_and_std(view.reference)
        return Crafted(_repeat(-self.eps * mean, view.count))


def perturbation(reference: torch.Tensor, kind: str) -> torch.Tensor:
    """The direction the colluders push along (subtracted from the mean): the unit mean, the coordinate-wise
    standard deviation, or the sign of the mean (the paper's inverse unit vector, inverse std and inverse sign)."""
    mean, std = mean_and_std(reference)
    if kind == "unit":
        norm = float(mean.norm())
        return mean / norm if norm > 0 else mean
    if kind == "std":
        return std
    if kind == "sign":
        return torch.sign(mean)
    raise AggregatorError(f"perturbation must be one of {PERTURBATIONS}, got {kind!r}")


class _Optimised(Attack):
    """`mean - gamma * p` with the largest `gamma` (binary search, the paper's Algorithm 1) that still passes
    the attack's test against the reference updates."""

    def __init__(self, perturbation: str = "std", gamma_init: float = 10.0, tolerance: float = 1e-5) -> None:
        if perturbation not in PERTURBATIONS:
            raise AggregatorError(
                f"{self.name}: perturbation must be one of {PERTURBATIONS}, got {perturbation!r}"
            )
        self.perturbation = perturbation
        self.gamma_init = _positive(self.name, "gamma_init", gamma_init)
        self.tolerance = _positive(self.name, "tolerance", tolerance)

    def params(self) -> dict[str, Any]:
        return {"perturbation": self.perturbation}

    def _passes(self, distances_to: torch.Tensor, pairwise: torch.Tensor) -> bool:
        raise NotImplementedError

    def craft(self, view: AttackView) -> Crafted:
        x = view.reference.to(torch.float64)
        mean, _ = mean_and_std(view.reference)
        p = perturbation(view.reference, self.perturbation)
        pairwise = torch.cdist(x, x)
        gamma, step, best = self.gamma_init, self.gamma_init / 2, 0.0
        # Shrinking steps around the boundary: keep the last gamma that passed.
        while abs(best - gamma) > self.tolerance:
            candidate = mean - gamma * p
            if self._passes((x - candidate).norm(dim=1), pairwise):
                best = gamma
                gamma += step
            else:
                gamma -= step
            step /= 2
        return Crafted(_repeat(mean - best * p, view.count), details={"gamma": best})


class MinMax(_Optimised):
    """The malicious update's largest distance to any honest update stays below the largest distance between
    two honest updates."""

    name = "min_max"

    def _passes(self, distances_to: torch.Tensor, pairwise: torch.Tensor) -> bool:
        return float(distances_to.max()) <= float(pairwise.max())


class MinSum(_Optimised):
    """The malicious update's summed squared distance to the honest updates stays below the largest such sum
    of any honest update."""

    name = "min_sum"

    def _passes(self, distances_to: torch.Tensor, pairwise: torch.Tensor) -> bool:
        return float(distances_to.square().sum()) <= float(pairwise.square().sum(dim=1).max())


class SignFlip(Attack):
    """Every colluder sends the negated mean of the updates it knows, times `factor`."""

    name = "sign_flip"

    def __init__(self, factor: float = 1.0) -> None:
        self.factor = _positive(self.name, "factor", factor)

    def params(self) -> dict[str, Any]:
        return {"factor": self.factor}

    def craft(self, view: AttackView) -> Crafted:
        mean, _ = mean_and_std(view.reference)
        return Crafted(_repeat(-self.factor * mean, view.count))


class Scaling(Attack):
    """Each colluder trains honestly and multiplies its own update by `factor` (boosting its weight)."""

    name = "scaling"
    trains = "clean"

    def __init__(self, factor: float = 10.0) -> None:
        self.factor = _positive(self.name, "factor", factor)

    def params(self) -> dict[str, Any]:
        return {"factor": self.factor}

    def craft(self, view: AttackView) -> Crafted:
        own = view.require_own(self.name).to(torch.float64)
        return Crafted((self.factor * own).to(torch.float32))
