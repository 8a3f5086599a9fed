"""From on-chain Beta counts to the two numbers the orchestrator uses, kept apart: a vote weight and a mean.

Reputation as a Beta posterior follows Jøsang and Ismail, "The Beta Reputation System" (Bled eConference 2002).
The chain keeps `Beta(alpha, beta)` from a pessimistic prior Beta(1, 4) (a newcomer's mean is 0.2, below any
established good record, so whitewashing never pays) and forgets old evidence past `maxEvidence`.

- `Posterior.mean` is the reliability term of the reranker.
- `vote_weight` is a source's say in the feedback vote and in choosing between versions of a passage: the
  weight of a witness of accuracy A when a wrong witness spreads over `FALSE_VALUES` false values, `ln(n A /
  (1 - A))` (the ACCU model of Dong, Berti-Equille and Srivastava, VLDB 2009). Independent wrong witnesses rarely
  agree on one false value, so a source right more often than `1 / (n + 1)` is evidence *for* what it states
  (a 60%-polluted source still backs the true version when it holds it), and a known liar below that weighs
  *against* it; copies, which do agree on false values, are one witness (`rag.independence`). The weight is
  scaled by the share of the record that is evidence rather than prior, `e / (e + PRIOR_WEIGHT)`: a newcomer
  weighs nothing either way, so Sybils buy no say (between versions of a passage that only newcomers hold,
  `rag.evidence.stale_versions` lets independent witnesses outnumber each other). The accuracy reads the record with the prior made neutral (`NEUTRAL_SHIFT` pseudo-successes turn
  Beta(1, 4) into Beta(4, 4)): the prior's pessimism is for ranking newcomers, and must not make a young
  source with a good start count as a liar.
- Sampling draws from the posterior (`rag.sampling`), a third use that shares nothing with the other two.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from rag.errors import RagError

__all__ = ["FALSE_VALUES", "NEUTRAL_SHIFT", "PRIOR_WEIGHT", "Posterior", "vote_weight"]

PRIOR_WEIGHT = 5.0  # observations in the on-chain prior Beta(1, 4)
NEUTRAL_SHIFT = 3.0  # pseudo-successes that make that prior's mean 1/2
FALSE_VALUES = (
    4  # false values a wrong witness spreads over (few: polluted copies reuse the corpus's entities)
)
_CLIP = 0.02  # accuracies are clipped to [0.02, 0.98]: no source weighs more than ~5.3 or less than ~-2.5


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
    """`ln(n A / (1 - A))` scaled by evidence / (evidence + PRIOR_WEIGHT): positive for a witness, 0 for a newcomer."""
    accuracy = (posterior.alpha + NEUTRAL_SHIFT) / (posterior.alpha + posterior.beta + NEUTRAL_SHIFT)
    accuracy = min(max(accuracy, _CLIP), 1.0 - _CLIP)
    confidence = posterior.evidence / (posterior.evidence + PRIOR_WEIGHT)
    evidenced = math.log(FALSE_VALUES * accuracy / (1.0 - accuracy))
    return confidence * evidenced
