"""Feedback signals for one answered query, with or without a gold answer.

Without gold (the default at query time) two signals are used:
- grounding: each source's evidence for the answer's claim is the sentence of its documents closest to the answer
  (content-word Jaccard at least `threshold`, so the same statement with another entity still matches). The
  source is rewarded when its variant agrees with the reliability-weighted vote of the *other* sources and
  penalized when it disagrees; a leave-one-out peer consensus, so a source cannot vouch for itself (in the spirit
  of truth discovery, Yin, Han and Yu, "Truth Discovery with Multiple Conflicting Information Providers", KDD
  2007).
- contribution: leave-one-context-out (how much the answer changes without the source's contexts) adds credit
  when the answer agrees with the peer consensus and blame when it goes against it.
A gold answer, when known, judges each source's variant directly; a user rating in [0, 1] is shared among the
sources that contributed. A source that timed out or sent an unverifiable answer counts one negative observation.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from rag.errors import RagError
from rag.text import content_tokens, normalize_answer, split_sentences

__all__ = ["Deltas", "claim_variants", "feedback_deltas", "peer_grounding"]

CONTRIBUTION_WEIGHT = 0.5


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


def peer_grounding(variants: Mapping[int, str | None], weights: Mapping[int, float]) -> dict[int, int]:
    """+1 when a source's variant wins the weighted vote of the other sources, -1 when another wins, else 0."""
    grounding: dict[int, int] = {}
    for source_id, own in variants.items():
        if own is None:
            grounding[source_id] = 0
            continue
        votes: dict[str, float] = defaultdict(float)
        for peer, variant in variants.items():
            if peer != source_id and variant is not None:
                votes[variant] += weights.get(peer, 0.0)
        if not votes:
            grounding[source_id] = 0
            continue
        ranked = sorted(votes.values(), reverse=True)
        if len(ranked) > 1 and math.isclose(ranked[0], ranked[1]):
            grounding[source_id] = 0  # the peers disagree evenly: no evidence either way
            continue
        winner = max(votes, key=votes.__getitem__)
        grounding[source_id] = 1 if own == winner else -1
    return grounding


def feedback_deltas(
    answer: str,
    evidence: Mapping[int, Sequence[str]],
    weights: Mapping[int, float],
    contributions: Mapping[int, float],
    *,
    failed: Iterable[int] = (),
    judge: Callable[[str], bool] | None = None,
    rating: float | None = None,
) -> dict[int, Deltas]:
    """Deltas for every source that was asked: `evidence` (documents per responding source), `failed` ones.

    `judge(sentence) -> bool` is the gold check when a gold answer is known; `rating` a user's score of the answer.
    """
    if rating is not None and not (math.isfinite(rating) and 0.0 <= rating <= 1.0):
        raise RagError(f"rating must lie in [0, 1], got {rating}")
    for sid, value in contributions.items():
        if not math.isfinite(value) or not 0.0 <= value <= 1.0:
            raise RagError(f"contribution of source {sid} must lie in [0, 1], got {value}")
    variants = claim_variants(answer, evidence)
    grounding = peer_grounding(variants, weights)
    answer_variant = normalize_answer(answer)
    answer_vote = _answer_consensus(variants, weights, answer_variant)
    deltas: dict[int, Deltas] = {}
    for sid in evidence:
        positive = negative = 0.0
        variant = variants[sid]
        if judge is not None:
            if variant is not None:
                positive, negative = (1.0, 0.0) if judge(variant) else (0.0, 1.0)
        elif grounding[sid] > 0:
            positive = 1.0
        elif grounding[sid] < 0:
            negative = 1.0
        share = contributions.get(sid, 0.0) * CONTRIBUTION_WEIGHT
        if answer_vote > 0:
            positive += share
        elif answer_vote < 0:
            negative += share
        if rating is not None and contributions.get(sid, 0.0) > 0:
            positive += rating * contributions[sid]
            negative += (1.0 - rating) * contributions[sid]
        deltas[sid] = Deltas(positive, negative)
    for sid in failed:
        if sid in deltas:
            raise RagError(f"source {sid} cannot both answer and fail")
        deltas[sid] = Deltas(0.0, 1.0)
    return deltas


def _answer_consensus(variants: Mapping[int, str | None], weights: Mapping[int, float], answer: str) -> int:
    """+1 when the answer's own sentence is the weighted plurality among all sources, -1 when another is, else 0."""
    votes: dict[str, float] = defaultdict(float)
    for sid, variant in variants.items():
        if variant is not None:
            votes[variant] += weights.get(sid, 0.0)
    if not votes:
        return 0
    winner = max(votes, key=votes.__getitem__)
    return 1 if winner == answer else -1
