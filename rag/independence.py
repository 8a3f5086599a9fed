"""Which sources are one witness: copies are found by how they agree, and count once.

Truth discovery must not count copies as independent confirmations (Dong, Berti-Equille and Srivastava,
"Integrating Conflicting Data: The Role of Source Dependence", VLDB 2009). Two sources that state the very same
claim every time they are asked together, false claims included, behave as copies of one corpus, whatever their
ids, wallets or byte-level differences; two sources that disagree now and then are independent witnesses, even if
they mostly agree. `AgreementLedger` keeps, per pair of sources, a discounted count of the queries on which both
stated a claim and of those on which the claims were the same (so a source that stops copying, or starts, is seen
within a few queries), and `groups` joins sources whose agreement rate is above `threshold` on at least
`min_weight` discounted co-observations. The discount runs per query served, not per co-observation: sources of
one group are asked together only when groups run out, so evidence that is no longer renewed fades and the pair
is asked together again and re-measured (copies rejoin within `min_weight` queries; two honest sources joined by
a lucky run of agreements part at their next disagreement). Without that, a group once formed would never be
tested again. The threshold is near 1 (0.97): copies state the same thing every time,
while two honest sources that both hold mostly true documents agree most of the time too (a clean source and
one polluted on a fifth of its paragraphs agree on ~80% of the claims): joining those would cost the better one
its slots and its say. One disagreement keeps a pair apart for about ten co-observations. Within one query, sources of one group that state the same claim cast
one vote (see `rag.evidence`).

Sources run by one operator (one wallet) are one group from the start: the chain says they are one party.

`save(path)` / `load(path)` keep the ledger across restarts of the query service (JSON, written atomically), so
a restarted service does not have to learn again who copies whom. Several processes that serve queries (API
workers) share one file with `sync(path, mine, base)`: under an exclusive lock, each adds what it observed since
its last sync to what the file holds and adopts the sum, so no worker's evidence overwrites another's. The file's
clock is the sum of all workers' queries: each worker's queries since its sync discount everyone's evidence.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from rag.errors import RagError

__all__ = ["AgreementLedger", "Groups"]

Groups = dict[int, int]  # source id -> group id (the group's smallest source id)


@dataclass
class _Pair:
    together: float = 0.0  # discounted queries where both stated a claim
    agreed: float = 0.0  # of those, discounted queries where the claims were the same
    at: int = 0  # the ledger's query count when these were last brought up to date


@dataclass
class AgreementLedger:
    """Discounted pairwise claim agreement; `decay` per query served (0.97: about the last 33 queries)."""

    decay: float = 0.97
    threshold: float = 0.97
    min_weight: float = 3.0
    queries: int = 0  # queries observed (the clock of the discount)
    _pairs: dict[tuple[int, int], _Pair] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 0.0 < self.decay <= 1.0:
            raise RagError(f"decay must lie in (0, 1], got {self.decay}")
        if not 0.0 < self.threshold <= 1.0 or not math.isfinite(self.min_weight) or self.min_weight < 0:
            raise RagError("threshold must lie in (0, 1] and min_weight be a non-negative number")

    def observe(self, claims: Mapping[int, str | None]) -> None:
        """One query: the claim (normalized sentence) each asked source stated, None when it stated none."""
        self.queries += 1
        stated = sorted((sid, claim) for sid, claim in claims.items() if claim is not None)
        for i, (a, claim_a) in enumerate(stated):
            for b, claim_b in stated[i + 1 :]:
                pair = self._current(self._pairs.setdefault((a, b), _Pair(at=self.queries)))
                pair.together += 1.0
                pair.agreed += 1.0 if claim_a == claim_b else 0.0

    def _current(self, pair: _Pair) -> _Pair:
        """`pair` discounted to now (lazily: only the pairs that are read or written pay for the clock)."""
        if pair.at != self.queries:
            factor = self.decay ** (self.queries - pair.at)
            pair.together, pair.agreed, pair.at = pair.together * factor, pair.agreed * factor, self.queries
        return pair

    def agreement(self, a: int, b: int) -> tuple[float, float]:
        """(agreement rate, discounted co-observations) of two sources; (0, 0) if never asked together."""
        pair = self._pairs.get((min(a, b), max(a, b)))
        if pair is None or pair.together == 0:
            return 0.0, 0.0
        pair = self._current(pair)
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
        pairs = [[a, b, p.together, p.agreed] for (a, b), p in
                 sorted((key, self._current(pair)) for key, pair in self._pairs.items())]  # fmt: skip
        return {"decay": self.decay, "threshold": self.threshold, "min_weight": self.min_weight,
                "queries": self.queries, "pairs": pairs}  # fmt: skip

    @classmethod
    def from_json(cls, data: Mapping) -> AgreementLedger:
        try:
            ledger = cls(float(data["decay"]), float(data["threshold"]), float(data["min_weight"]),
                         int(data.get("queries", 0)))  # fmt: skip
            if ledger.queries < 0:
                raise ValueError("a negative query count")
            for a, b, together, agreed in data["pairs"]:
                if not 0 <= float(agreed) <= float(together) or not math.isfinite(float(together)):
                    raise ValueError("agreement counts out of range")
                ledger._pairs[(min(int(a), int(b)), max(int(a), int(b)))] = _Pair(
                    float(together), float(agreed), ledger.queries
                )
        except (KeyError, TypeError, ValueError) as exc:
            raise RagError(f"not an agreement ledger: {exc}") from None
        return ledger

    def save(self, path: Path) -> None:
        """Write the ledger to `path` atomically (a crash mid-write leaves the previous file)."""
        self.write(path, self.to_json())

    @staticmethod
    def write(path: Path, snapshot: Mapping) -> None:
        """Write a `to_json` snapshot atomically (a snapshot taken where the ledger changes, written elsewhere)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        partial.write_text(json.dumps(snapshot))
        os.replace(partial, path)

    @staticmethod
    def sync(path: Path, mine: Mapping, base: Mapping) -> dict:
        """Add the evidence in `mine` beyond `base` (both `to_json` snapshots of one ledger, `base` taken at its
        last sync) to the ledger saved at `path`, under an exclusive lock; write and return the sum."""
        with _locked(path):
            current = AgreementLedger.load(path).to_json() if path.exists() else dict(base)
            merged = _add_since(current, mine, base)
            AgreementLedger.write(path, merged)
        return merged

    def absorb(self, merged: Mapping, snapshot: Mapping) -> AgreementLedger:
        """The ledger `merged` (a `sync` result for `snapshot`) plus what this one observed after `snapshot`."""
        return AgreementLedger.from_json(_add_since(merged, self.to_json(), snapshot))

    @classmethod
    def load(cls, path: Path) -> AgreementLedger:
        """The ledger saved at `path`, or a new one if there is none; a file that is not a ledger is an error."""
        try:
            text = path.read_text()
        except FileNotFoundError:
            return cls()
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise RagError(f"{path}: not an agreement ledger (invalid JSON: {exc.msg})") from None
        if not isinstance(data, dict):
            raise RagError(f"{path}: not an agreement ledger (expected an object)")
        try:
            return cls.from_json(data)
        except RagError as exc:
            raise RagError(f"{path}: {exc}") from None


def _add_since(target: Mapping, later: Mapping, earlier: Mapping) -> dict:
    """`target` with the evidence `later` holds beyond `earlier` added: `earlier` discounted to `later`'s clock is
    what `later` still holds of it; the rest is new. `target` is discounted by the same queries (they are new
    queries for it too)."""
    decay = float(later["decay"])
    served = max(0, int(later["queries"]) - int(earlier["queries"]))
    factor = decay**served
    old = {(a, b): (t * factor, g * factor) for a, b, t, g in earlier["pairs"]}
    pairs = {(a, b): [t * factor, g * factor] for a, b, t, g in target["pairs"]}
    for a, b, together, agreed in later["pairs"]:
        was_together, was_agreed = old.get((a, b), (0.0, 0.0))
        new_together, new_agreed = max(0.0, together - was_together), max(0.0, agreed - was_agreed)
        pair = pairs.setdefault((a, b), [0.0, 0.0])
        pair[0] += new_together
        pair[1] = min(pair[0], pair[1] + new_agreed)
    return {**later, "queries": int(target["queries"]) + served,
            "pairs": [[a, b, t, g] for (a, b), (t, g) in sorted(pairs.items())]}  # fmt: skip


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive advisory lock beside `path` (POSIX `flock`; elsewhere, no lock: one process per home)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(f".{path.name}.lock"), "a") as handle:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX
            yield
            return
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
