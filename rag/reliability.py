"""From on-chain Beta counts to numbers the orchestrator uses: posterior mean, Bayes-UCB, source sampling.

Reputation as a Beta posterior follows Jøsang and Ismail, "The Beta Reputation System" (Bled eConference 2002).
Sources are chosen by Bayes-UCB (Kaufmann, Cappé and Garivier, "On Bayesian Upper Confidence Bounds for Bandit
Problems", AISTATS 2012): the posterior's `1 - 1/(t+1)` quantile, a well-founded upper-confidence rule for
Bernoulli-like rewards. The prior is pessimistic (Beta(1, 4) on chain), so a new identity's bound stays under an
established good source's: whitewashing buys exploration at most, never a better rank.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass

from scipy.stats import beta as beta_distribution

from rag.errors import RagError

__all__ = ["Posterior", "sample_sources", "upper_confidence"]


@dataclass(frozen=True)
class Posterior:
    """Beta(alpha, beta) with the counts in observations (the chain's fixed-point units divided by SCALE)."""

    alpha: float
    beta: float

    def __post_init__(self) -> None:
        for name, value in (("alpha", self.alpha), ("beta", self.beta)):
            if not math.isfinite(value) or value <= 0:
                raise RagError(f"Beta {name} must be finite and positive, got {value}")

    @property
    def mean(self) -> float:
        return self.alpha / (self.alpha + self.beta)

    @property
    def std(self) -> float:
        total = self.alpha + self.beta
        return math.sqrt(self.alpha * self.beta / (total * total * (total + 1)))


def upper_confidence(posterior: Posterior, t: int) -> float:
    """Bayes-UCB index at round `t` (>= 1): the `1 - 1/(t+1)` quantile of the posterior."""
    if t < 1:
        raise RagError(f"round must be at least 1, got {t}")
    return float(beta_distribution.ppf(1.0 - 1.0 / (t + 1), posterior.alpha, posterior.beta))


def sample_sources(posteriors: Mapping[int, Posterior], m: int, t: int, rng: random.Random) -> list[int]:
    """The `m` sources with the highest Bayes-UCB index at round `t`, without replacement, best first.

    Ties (e.g. every source fresh) are broken by `rng`, so equal sources share the traffic.
    """
    if m < 1:
        raise RagError(f"must sample at least one source, got m={m}")
    if not posteriors:
        raise RagError("no sources to sample from")
    keyed = [(upper_confidence(p, t), rng.random(), sid) for sid, p in posteriors.items()]
    keyed.sort(reverse=True)
    return [sid for _, _, sid in keyed[:m]]
