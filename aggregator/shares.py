"""From contribution values to the round's scores: how sure each value is, and what is paid for it.

A round's value estimates are noisy: with a few hundred validation examples and similar trainers, most of the
differences between their Shapley values are the validation sample's and the permutations' noise (with equal IID
shards, the raw positive values of ten honest trainers spread with a coefficient of variation of ~0.5-1.0 per
round). Paying the noise is unfair, and it rewards whoever happens to be lucky. So each value is shrunk towards
what its weight alone predicts, by how sure it is (empirical Bayes, James and Stein 1961; Efron and Morris 1973):

    prior_p  = gain * weight_p / sum(weight)         what the player's share of the aggregate predicts
    tau^2    = max(0, mean_p[(value_p - prior_p)^2 - stderr_p^2])   the spread that is not noise
    kappa_p  = tau^2 / (tau^2 + stderr_p^2)          0: pure noise, 1: every difference is real
    shrunk_p = prior_p + kappa_p * (value_p - prior_p)

and scores are `max(shrunk, 0)` normalised over every submitter (a group's members split their player's score).
A value that is significantly higher than its weight predicts is kept; one that is significantly harmful goes
to 0; the rest is paid by weight. A round whose gain is below `round_truncation`, or where nothing is positive,
is paid by weight. Weights come from the defenses and the rule, so a rejected update is paid nothing whatever
the valuation says.

Each score comes with a 95% interval (the shrunk value's posterior, `shrunk +- 1.96 sqrt(kappa) stderr`, as a
share of the round with the others held fixed) and words saying how sure it is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from aggregator.contribution import Estimate, Player
from aggregator.errors import AggregatorError

__all__ = ["RoundScores", "confidence_words", "round_scores", "weight_shares"]

_Z95 = 1.959963984540054


@dataclass(frozen=True)
class RoundScores:
    scores: dict[str, float]  # every submitter, float64 >= 0, summing to 1
    values: dict[str, float]  # each player member's raw value (a group's members share theirs)
    intervals: dict[str, tuple[float, float]]  # 95% interval of each scored trainer's score
    confidence: dict[str, str]  # how sure each score is, in words
    basis: str  # "gtg_shapley", "leave_one_out", "similarity", or "weights" (the valuation did not decide)
    details: dict[str, Any] = field(default_factory=dict)


def weight_shares(weights: np.ndarray) -> np.ndarray:
    total = float(weights.sum())
    if total <= 0:
        raise AggregatorError("no player has any weight in the aggregate")
    return weights / total


def confidence_words(score: float, low: float, high: float) -> str:
    """How sure a score is, from its interval's half-width relative to the score."""
    if score <= 0:
        return "sure it earned nothing" if high <= 0 else "unsure: its interval reaches above 0"
    spread = (high - low) / 2 / score
    if spread <= 0.25:
        return f"sure (within {spread:.0%})"
    if spread <= 0.6:
        return f"fairly sure (within {spread:.0%})"
    return f"unsure (within {spread:.0%}): paid mostly by its weight in the aggregate"


def round_scores(
    players: Sequence[Player],
    submitters: Sequence[str],
    estimate: Estimate | None,
    *,
    basis: str,
    shrinkage: bool = True,
    round_truncation: float = 1e-4,
) -> RoundScores:
    """Scores for every submitter from the players' estimate (see the module docstring). `estimate=None` (or a
    round below `round_truncation`) pays by weight."""
    if not players:
        raise AggregatorError("no player to score")
    members = [m for p in players for m in p.members]
    if len(set(members)) != len(members) or not set(members) <= set(submitters):
        raise AggregatorError("every player member must be a distinct submitter")
    weights = np.array([p.weight for p in players], dtype=np.float64)
    prior_share = weight_shares(weights)
    details: dict[str, Any] = {}
    shares, low, high = prior_share.copy(), prior_share.copy(), prior_share.copy()
    values = np.zeros(len(players))
    decided = basis
    if estimate is None or abs(estimate.gain) < round_truncation:
        decided = "weights"
    else:
        values = np.asarray(estimate.values, dtype=np.float64)
        stderr = np.asarray(estimate.stderr, dtype=np.float64)
        prior = estimate.gain * prior_share
        deviation = values - prior
        if shrinkage:
            tau2 = max(0.0, float(np.mean(deviation**2 - stderr**2)))
            kappa = np.where(tau2 + stderr**2 > 0, tau2 / np.maximum(tau2 + stderr**2, 1e-300), 1.0)
        else:
            kappa = np.ones(len(players))
        shrunk = prior + kappa * deviation
        positive = np.clip(shrunk, 0.0, None)
        total = float(positive.sum())
        details = {"shrinkage": kappa.tolist(), "prior": prior.tolist(), "shrunk": shrunk.tolist()}
        if total > 0:
            shares = positive / total
            half = _Z95 * np.sqrt(kappa) * stderr
            low, high = np.clip(shrunk - half, 0.0, None) / total, np.clip(shrunk + half, 0.0, None) / total
        else:
            decided = "weights"
    scores = {s: 0.0 for s in sorted(submitters)}
    out_values, intervals, confidence = {}, {}, {}
    for k, player in enumerate(players):
        size = len(player.members)
        for member in player.members:
            scores[member] = float(shares[k]) / size
            out_values[member] = float(values[k]) / size
            intervals[member] = (float(low[k]) / size, float(high[k]) / size)
            confidence[member] = (
                "not measured: the round was paid by weight in the aggregate"
                if decided == "weights"
                else confidence_words(float(shares[k]), float(low[k]), float(high[k]))
            )
    return RoundScores(scores, out_values, intervals, confidence, decided, details)
