"""From on-chain Beta counts to the two numbers the orchestrator uses, kept apart: a vote weight and a mean.

Reputation as a Beta posterior follows Jøsang and Ismail, "The Beta Reputation System" (Bled eConference 2002).
The chain keeps `Beta(alpha, beta)` from a pessimistic prior Beta(1, 4) (a newcomer's mean is 0.2, below any
established good record, so whitewashing never pays) and forgets old evidence past `maxEvidence`.

- `Posterior.mean` is the reliability term of the reranker.
- `vote_weight` is a source's say in the feedback vote and in choosing between versions of a passage: the
  log-odds of its accuracy (Dong et al., VLDB 2009: a witness of accuracy A weighs `ln(A / (1 - A))`, so one
  below 1/2 weighs *against* what it states) times the share of its record that is evidence rather than prior,
  `n / (n + PRIOR_WEIGHT)`: a newcomer weighs nothing either way. The accuracy reads the record with the prior
  made neutral (`NEUTRAL_SHIFT` pseudo-successes turn Beta(1, 4) into Beta(4, 4)): the prior's pessimism is
  for ranking newcomers, and must not make a young source with a good start count as a liar.
- Sampling draws from the posterior (`rag.sampling`), a third use that shares nothing with the other two.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from rag.errors import RagError

__all__ = ["NEUTRAL_SHIFT", "PRIOR_WEIGHT", "Posterior", "vote_weight"]

PRIOR_WEIGHT = 5.0  # observations in the on-chain prior Beta(1, 4)
NEUTRAL_SHIFT = 3.0  # pseudo-successes that make that prior's mean 1/2
_CLIP = 0.02  # log-odds are taken of means clipped to [0.02, 0.98]: no source weighs more than ~3.9


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

    @property
    def evidence(self) -> float:
        """Observations beyond the prior's weight (what a reset commitment or a newcomer lacks)."""
        return max(0.0, self.alpha + self.beta - PRIOR_WEIGHT)


def vote_weight(posterior: Posterior) -> float:
    """`logit(accuracy) * evidence / (evidence + PRIOR_WEIGHT)`: positive for a source right more often than not."""
    accuracy = (posterior.alpha + NEUTRAL_SHIFT) / (posterior.alpha + posterior.beta + NEUTRAL_SHIFT)
    mean = min(max(accuracy, _CLIP), 1.0 - _CLIP)
    confidence = posterior.evidence / (posterior.evidence + PRIOR_WEIGHT)
    return math.log(mean / (1.0 - mean)) * confidence
