"""Feedback for one answered query: from known answers (canaries) where they exist, else from independent witnesses.

- **Gold** (a canary question, or a user's `--gold`): each source is judged on its own, independently of any vote.
  A source that served a tampered copy of the canary's reference passage (`tampered`) is shown wrong:
  `TAMPER_WEIGHT` negative observations. Otherwise its own answer is judged (`own_answers`: what its documents
  alone answer, as the orchestrator reads them; without, its variant of the answer's claim): right is
  `GOLD_WEIGHT` positive observations, wrong only `MISS_WEIGHT` negative, since an honest source also misses
  when its retrieval does, and that says little about whether what it holds is true.
- **Witnesses** (no gold): each source's evidence for the answer's claim is the sentence of its documents closest
  to it (`claim_variants`: content-word Jaccard at least `threshold`, so the same statement with another entity
  still matches). The probability that the source's variant is true is computed from the *other* witnesses
  (`rag.evidence.truth_probability`, leave-one-witness-out: its own group, i.e. itself and its copies, never
  vouch for it; weights are `rag.reliability.vote_weight`, so an unknown source says nothing and a known liar
  counts against what it says). Evidence is `2P - 1` positive or `1 - 2P` negative, so an even case adds nothing.
  This is truth discovery with source dependence (Yin, Han and Yu, KDD 2007; Dong et al., VLDB 2009) rather than
  a headcount: identical copies are one witness, so colluders cannot outvote an honest minority.
- **Contribution**: leave-one-context-out contribution adds credit (or blame) of `CONTRIBUTION_WEIGHT *
  contribution * |2P - 1|` by whether the answer's own claim is probably true (by the gold answer when known).
- A user rating in [0, 1] is shared among the sources that contributed. A source that timed out or sent an
  unverifiable answer counts one negative observation.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass

from rag.errors import RagError
from rag.evidence import truth_probability, witness_weights
from rag.independence import Groups
from rag.text import content_tokens, normalize_answer, split_sentences

__all__ = [
    "CONTRIBUTION_WEIGHT",
    "GOLD_WEIGHT",
    "MISS_WEIGHT",
    "TAMPER_WEIGHT",
    "Deltas",
    "claim_variants",
    "feedback_deltas",
]

CONTRIBUTION_WEIGHT = 0.5
GOLD_WEIGHT = 2.0
MISS_WEIGHT = 0.5
TAMPER_WEIGHT = 4.0


@dataclass(frozen=True)
class Deltas:
    """Evidence about one source from one query, in observations (>= 0)."""

    positive: float
    negative: float


def _jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 0.0


def claim_variants(
    answer: str, evidence: Mapping[int, Iterable[str]], threshold: float = 0.5
) -> dict[int, str | None]:
    """Per source, the normalized sentence of its documents that states the answer's claim (None if none does)."""
    target = set(content_tokens(answer))
    variants: dict[int, str | None] = {}
    for source_id, documents in evidence.items():
        best, best_score = None, threshold
        for document in documents:
            for sentence in split_sentences(document):
                score = _jaccard(target, set(content_tokens(sentence)))
                if score >= best_score:
                    best, best_score = normalize_answer(sentence), score
        variants[source_id] = best
    return variants


def _split(probability: float | None, scale: float = 1.0) -> tuple[float, float]:
    """(positive, negative) evidence of a truth probability: nothing at 1/2 or when unknown."""
    if probability is None:
        return 0.0, 0.0
    return scale * max(0.0, 2 * probability - 1), scale * max(0.0, 1 - 2 * probability)


def feedback_deltas(
    answer: str,
    variants: Mapping[int, str | None],
    weights: Mapping[int, float],
    contributions: Mapping[int, float],
    *,
    groups: Groups | None = None,
    failed: Iterable[int] = (),
    judge: Callable[[str], bool] | None = None,
    own_answers: Mapping[int, str] | None = None,
    tampered: Collection[int] = (),
    rating: float | None = None,
) -> dict[int, Deltas]:
    """Deltas for every source asked: those in `variants` answered (their claim variant, see `claim_variants`),
    those in `failed` did not. `weights` are vote weights, `groups` the witnesses (default: each its own)."""
    if rating is not None and not (math.isfinite(rating) and 0.0 <= rating <= 1.0):
        raise RagError(f"rating must lie in [0, 1], got {rating}")
    for sid, value in contributions.items():
        if not math.isfinite(value) or not 0.0 <= value <= 1.0:
            raise RagError(f"contribution of source {sid} must lie in [0, 1], got {value}")
    for sid, weight in weights.items():
        if not math.isfinite(weight):
            raise RagError(f"vote weight of source {sid} must be finite, got {weight}")
    groups = {sid: (groups or {}).get(sid, sid) for sid in variants}
    if judge is not None:
        answer_true: float | None = 1.0 if judge(answer) else 0.0
    else:
        answer_true = truth_probability(normalize_answer(answer), witness_weights(variants, weights, groups))
    deltas: dict[int, Deltas] = {}
    for sid, variant in variants.items():
        positive = negative = 0.0
        if judge is not None:
            judged = own_answers.get(sid) if own_answers is not None else variant
            if sid in tampered:
                negative = TAMPER_WEIGHT
            elif judged is not None:
                positive, negative = (GOLD_WEIGHT, 0.0) if judge(judged) else (0.0, MISS_WEIGHT)
        elif variant is not None:
            others = witness_weights(variants, weights, groups, exclude=groups[sid])
            positive, negative = _split(truth_probability(variant, others))
        share = contributions.get(sid, 0.0)
        credit, blame = _split(answer_true, CONTRIBUTION_WEIGHT * share)
        positive, negative = positive + credit, negative + blame
        if rating is not None and share > 0:
            positive += rating * share
            negative += (1.0 - rating) * share
        deltas[sid] = Deltas(positive, negative)
    for sid in failed:
        if sid in deltas:
            raise RagError(f"source {sid} cannot both answer and fail")
        deltas[sid] = Deltas(0.0, 1.0)
    return deltas
