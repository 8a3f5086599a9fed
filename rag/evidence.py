"""Weighing conflicting evidence: which claim the independent sources back, and which version of a passage to keep.

A source's say is its vote weight (`rag.reliability.vote_weight`: the log-odds of its reliability, scaled by how
much evidence backs it, so a newcomer weighs nothing and a known liar weighs against what it says). Sources of one
group (`rag.independence`) that state the same thing are one witness and weigh as one (their mean weight).

- `witness_weights` sums, per claim, the weight of the witnesses that state it; `truth_probability` is the
  probability that a claim is the true one against its strongest rival, `sigmoid(support - best rival)`, the
  two-value case of the accuracy model of Dong et al. (VLDB 2009) with weights `ln(A / (1 - A))`.
- `stale_versions` finds near-duplicate documents (the same passage in several versions: a polluted copy differs
  from the original in an entity or two) and, in each such passage, every version that less weight backs than the
  best one, so the reader never sees the losing versions. Each independent witness also adds `HEADCOUNT` to the
  version it holds: nothing beside a record (a mean-0.6 record weighs ~1.5), but among newcomers (who weigh
  nothing) the version more independent witnesses hold wins. Versions nobody can tell apart (equal support)
  are all kept.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from rag.independence import Groups
from rag.text import NEAR_DUPLICATE, near_duplicate_pairs

__all__ = ["HEADCOUNT", "Version", "stale_versions", "truth_probability", "witness_weights"]

HEADCOUNT = 0.05  # an independent witness's say beside its weight, when choosing between versions
_TIE = 1e-9


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def witness_weights(
    holders: Mapping[int, str | None],
    weights: Mapping[int, float],
    groups: Groups,
    exclude: int | None = None,
) -> dict[str, float]:
    """Per claim (or version), the summed weight of the witnesses holding it: one per group, at the group's mean.

    `exclude` leaves out a whole group (leave-one-witness-out: a source and its copies do not judge themselves).
    """
    members: dict[tuple[str, int], list[float]] = defaultdict(list)
    for sid, claim in holders.items():
        group = groups.get(sid, sid)
        if claim is None or group == exclude:
            continue
        members[(claim, group)].append(weights.get(sid, 0.0))
    support: dict[str, float] = defaultdict(float)
    for (claim, _), values in members.items():
        support[claim] += sum(values) / len(values)
    return dict(support)


def truth_probability(claim: str, support: Mapping[str, float]) -> float | None:
    """P(`claim` is true | the witnesses in `support`), or None when no witness said anything.

    Against rivals: `sigmoid(support[claim] - max rival)`; with no rival: `sigmoid(support[claim])` (backed by
    trusted witnesses, more likely true; by unknown ones, no evidence either way).
    """
    rivals = [value for other, value in support.items() if other != claim]
    own = support.get(claim, 0.0)
    if not rivals:
        return None if claim not in support else _sigmoid(own)
    return _sigmoid(own - max(rivals))


@dataclass(frozen=True)
class Version:
    """One document as a source returned it: who, its hash, its text."""

    source_id: int
    hash: str
    text: str


def stale_versions(
    documents: Sequence[Version],
    weights: Mapping[int, float],
    groups: Groups,
    similarity: float = NEAR_DUPLICATE,
) -> set[str]:
    """Hashes of the versions that lose to a better-backed version of the same passage."""
    texts: dict[str, str] = {}
    holders: dict[str, dict[int, str]] = defaultdict(dict)
    for doc in documents:
        texts.setdefault(doc.hash, doc.text)
        holders[doc.hash][doc.source_id] = doc.hash
    hashes = sorted(texts)
    # Single-link clusters of near-duplicates: the versions of one passage.
    cluster = {h: h for h in hashes}
    for i, j in near_duplicate_pairs([texts[h] for h in hashes], similarity):
        root_a, root_b = _root(cluster, hashes[i]), _root(cluster, hashes[j])
        cluster[max(root_a, root_b)] = min(root_a, root_b)
    passages: dict[str, list[str]] = defaultdict(list)
    for h in hashes:
        passages[_root(cluster, h)].append(h)
    stale: set[str] = set()
    for versions in passages.values():
        if len(versions) < 2:
            continue
        held: dict[int, str | None] = {}
        for h in versions:
            held.update(holders[h])
        support = witness_weights(held, {sid: weights.get(sid, 0.0) + HEADCOUNT for sid in held}, groups)
        best = max(support.get(h, 0.0) for h in versions)
        stale.update(h for h in versions if support.get(h, 0.0) < best - _TIE)
    return stale


def _root(parent: dict[str, str], x: str) -> str:
    while parent[x] != x:
        x = parent[x]
    return x
