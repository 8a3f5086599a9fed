"""Which sources are one witness: copies are found by how they agree, and count once.

Truth discovery must not count copies as independent confirmations (Dong, Berti-Equille and Srivastava,
"Integrating Conflicting Data: The Role of Source Dependence", VLDB 2009). Two sources that state the very same
claim every time they are asked together, false claims included, behave as copies of one corpus, whatever their
ids, wallets or byte-level differences; two sources that disagree now and then are independent witnesses, even if
they mostly agree. `AgreementLedger` keeps, per pair of sources, a discounted count of the queries on which both
stated a claim and of those on which the claims were the same (so a source that stops copying, or starts, is seen
within a few queries), and `groups` joins sources whose agreement rate is above `threshold` on at least
`min_weight` discounted co-observations. Within one query, sources of one group that state the same claim cast
one vote (see `rag.evidence`).

Sources run by one operator (one wallet) are one group from the start: the chain says they are one party.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from rag.errors import RagError

__all__ = ["AgreementLedger", "Groups"]

Groups = dict[int, int]  # source id -> group id (the group's smallest source id)


@dataclass
class _Pair:
    together: float = 0.0  # discounted queries where both stated a claim
    agreed: float = 0.0  # of those, discounted queries where the claims were the same


@dataclass
class AgreementLedger:
    """Discounted pairwise claim agreement; `decay` per co-observation of the pair (0.95: ~20 recent ones)."""

    decay: float = 0.95
    threshold: float = 0.9
    min_weight: float = 3.0
    _pairs: dict[tuple[int, int], _Pair] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 0.0 < self.decay <= 1.0:
            raise RagError(f"decay must lie in (0, 1], got {self.decay}")
        if not 0.0 < self.threshold <= 1.0 or not math.isfinite(self.min_weight) or self.min_weight < 0:
            raise RagError("threshold must lie in (0, 1] and min_weight be a non-negative number")

    def observe(self, claims: Mapping[int, str | None]) -> None:
        """One query: the claim (normalized sentence) each asked source stated, None when it stated none."""
        stated = sorted((sid, claim) for sid, claim in claims.items() if claim is not None)
        for i, (a, claim_a) in enumerate(stated):
            for b, claim_b in stated[i + 1 :]:
                pair = self._pairs.setdefault((a, b), _Pair())
                pair.together = pair.together * self.decay + 1.0
                pair.agreed = pair.agreed * self.decay + (1.0 if claim_a == claim_b else 0.0)

    def agreement(self, a: int, b: int) -> tuple[float, float]:
        """(agreement rate, discounted co-observations) of two sources; (0, 0) if never asked together."""
        pair = self._pairs.get((min(a, b), max(a, b)))
        if pair is None or pair.together == 0:
            return 0.0, 0.0
        return pair.agreed / pair.together, pair.together

    def dependent(self, a: int, b: int) -> bool:
        rate, weight = self.agreement(a, b)
        return weight >= self.min_weight and rate >= self.threshold

    def groups(self, sources: Iterable[int], operators: Mapping[int, str] | None = None) -> Groups:
        """Group ids for `sources`: connected components of dependent pairs and of shared operators."""
        ids = sorted(set(sources))
        parent = {sid: sid for sid in ids}

        def find(x: int) -> int:
            while parent[x] != x:
                parent[x] = parent[parent[x]]
                x = parent[x]
            return x

        def union(a: int, b: int) -> None:
            ra, rb = find(a), find(b)
            if ra != rb:
                parent[max(ra, rb)] = min(ra, rb)

        by_operator: dict[str, int] = {}
        for sid in ids:
            operator = (operators or {}).get(sid)
            if operator is not None:
                key = operator.lower()
                if key in by_operator:
                    union(by_operator[key], sid)
                else:
                    by_operator[key] = sid
        for i, a in enumerate(ids):
            for b in ids[i + 1 :]:
                if self.dependent(a, b):
                    union(a, b)
        return {sid: find(sid) for sid in ids}

    def to_json(self) -> dict:
        """The ledger as plain data (to persist it across restarts)."""
        return {"decay": self.decay, "threshold": self.threshold, "min_weight": self.min_weight,
                "pairs": [[a, b, p.together, p.agreed] for (a, b), p in sorted(self._pairs.items())]}  # fmt: skip

    @classmethod
    def from_json(cls, data: Mapping) -> AgreementLedger:
        try:
            ledger = cls(float(data["decay"]), float(data["threshold"]), float(data["min_weight"]))
            for a, b, together, agreed in data["pairs"]:
                if not 0 <= float(agreed) <= float(together) or not math.isfinite(float(together)):
                    raise ValueError("agreement counts out of range")
                ledger._pairs[(min(int(a), int(b)), max(int(a), int(b)))] = _Pair(
                    float(together), float(agreed)
                )
        except (KeyError, TypeError, ValueError) as exc:
            raise RagError(f"not an agreement ledger: {exc}") from None
        return ledger
