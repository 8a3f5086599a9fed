"""Canary questions: ground truth mixed into the query stream, committed in advance and revealed after the epoch.

An evaluator holds questions whose answers (and reference passages) it knows. Each epoch it draws a few it never
used (`CanarySchedule`: rotating, each canary asked once, so a revealed one is worth nothing to an attacker),
commits to them on chain before the epoch starts (`encode_canaries` gives the bytes the commitment hashes) and
asks them among the users' questions, through the same sampling, so a source cannot tell them apart. Each asked
source is scored on its own answer (`answer_correct`), independently of any vote, the way Reliable-dRAG's own
updates used gold answers. After the epoch the set is revealed, and anyone can check the scores; a source that
served a tampered copy of a reference passage (`tampered`: a near-duplicate, `rag.text.near_duplicate`, with the
gold answer gone) is shown
wrong and can be slashed.

How many: to tell an honest source (canary accuracy `a`) from one `gap` worse, with error probability `delta`,
each needs `n >= 2 ln(4 / delta) / gap**2` judged canaries (Hoeffding's inequality on both estimates, each
within `gap / 2`): `canaries_needed`. A source is asked on a share `m / N` of the queries (m of N sources per
query), so within `horizon` queries it sees `fraction * horizon * m / N` canaries: `canary_fraction` inverts
that. Tampering is caught faster: a source that tampers with a share `t` of the passages is caught on its first
tampered canary, on average after `1 / t` of them (`canaries_to_catch`).
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from rag.corpus import Corpus
from rag.errors import CorpusError, RagError
from rag.metrics import sentence_correct
from rag.text import contains_phrase, near_duplicate

__all__ = [
    "Canary",
    "CanarySchedule",
    "answer_correct",
    "canaries_needed",
    "canaries_to_catch",
    "canary_fraction",
    "canary_pool",
    "decode_canaries",
    "encode_canaries",
    "load_canaries",
    "tampered",
]

T = TypeVar("T")


@dataclass(frozen=True)
class Canary:
    id: str
    question: str
    answers: tuple[str, ...]
    passage: str  # the reference passage that holds the answer

    def to_json(self) -> dict:
        return {
            "id": self.id,
            "question": self.question,
            "answers": list(self.answers),
            "passage": self.passage,
        }


def canary_pool(corpus: Corpus, share: float, seed: int) -> list[Canary]:
    """A seeded `share` of the corpus's questions whose passage holds a gold answer, as canaries."""
    if not 0.0 < share <= 1.0:
        raise RagError(f"canary share must lie in (0, 1], got {share}")
    candidates = [
        Canary(q.id, q.question, q.answers, corpus.document(q.doc_id).text)
        for q in corpus.questions
        if any(contains_phrase(corpus.document(q.doc_id).text, a) for a in q.answers)
    ]
    rng = random.Random(f"{seed}:canaries")
    return sorted(rng.sample(candidates, round(share * len(candidates))), key=lambda c: c.id)


def load_canaries(path: Path | str) -> list[Canary]:
    """JSON lines of `id`, `question`, `answers`, `passage` (what `encode_canaries` writes)."""
    try:
        return decode_canaries(Path(path).read_bytes())
    except FileNotFoundError:
        raise CorpusError(f"no canary file at {path}") from None


def encode_canaries(canaries: Iterable[Canary]) -> bytes:
    """Canonical bytes of a canary set (one sorted-key JSON object per line): what the chain commitment hashes."""
    return "".join(json.dumps(c.to_json(), sort_keys=True) + "\n" for c in canaries).encode()


def decode_canaries(data: bytes) -> list[Canary]:
    canaries = []
    for number, line in enumerate(data.decode("utf-8", errors="strict").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            answers = tuple(str(a) for a in record["answers"])
            if not answers:
                raise ValueError("no answers")
            canaries.append(
                Canary(str(record["id"]), str(record["question"]), answers, str(record["passage"]))
            )
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise CorpusError(f"canary line {number}: not a canary ({type(exc).__name__}: {exc})") from None
    return canaries


def answer_correct(answer: str, canary: Canary) -> bool:
    """A source's own answer is right when it states a gold answer."""
    return sentence_correct(answer, canary.answers)


def tampered(document: str, canary: Canary) -> bool:
    """A copy of the canary's reference passage with every gold answer gone: evidence the source is wrong."""
    if not near_duplicate(document, canary.passage):
        return False
    return not any(contains_phrase(document, a) for a in canary.answers)


class CanarySchedule:
    """Rotating canaries: each epoch draws `per_epoch` unused ones (seeded) and where in the epoch to ask them."""

    def __init__(self, pool: Sequence[Canary], per_epoch: int, seed: int):
        if per_epoch < 0:
            raise RagError(f"canaries per epoch must not be negative, got {per_epoch}")
        self._unused = list(pool)
        self._rng = random.Random(f"{seed}:schedule")
        self.per_epoch = per_epoch
        self.planned: dict[int, list[Canary]] = {}
        self._counts: dict[int, int] = {}

    def set_count(self, epoch: int, count: int) -> None:
        """Draw `count` canaries for `epoch` instead of `per_epoch` (a probation epoch: new sources answer only
        canaries until their records say whose votes to trust). Only before the epoch is planned."""
        if count < 0:
            raise RagError(f"canaries per epoch must not be negative, got {count}")
        if epoch in self.planned:
            raise RagError(f"epoch {epoch}'s canaries are already drawn")
        self._counts[epoch] = count

    @property
    def remaining(self) -> int:
        """Canaries never drawn yet."""
        return len(self._unused)

    def restore(self, epoch: int, canaries: Sequence[Canary]) -> None:
        """Take back `epoch`'s set as drawn by an earlier run (a restart): planned again as is, retired from the pool."""
        ids = {c.id for c in canaries}
        self._unused = [c for c in self._unused if c.id not in ids]
        self.planned[epoch] = list(canaries)

    def plan(self, epoch: int) -> list[Canary]:
        """The canaries of `epoch` (drawn once; the same list if asked again)."""
        if epoch not in self.planned:
            count = min(self._counts.get(epoch, self.per_epoch), len(self._unused))
            picked = self._rng.sample(self._unused, count)
            self._unused = [c for c in self._unused if c not in picked]
            self.planned[epoch] = picked
        return self.planned[epoch]

    def interleave(self, epoch: int, queries: Sequence[T]) -> list[T | Canary]:
        """The epoch's stream: the users' `queries` in order, with the epoch's canaries at seeded positions."""
        stream: list[T | Canary] = list(queries)
        for canary in self.plan(epoch):
            stream.insert(self._rng.randint(0, len(stream)), canary)
        return stream


def canaries_needed(gap: float, delta: float) -> int:
    """Judged canaries per source to tell accuracies `gap` apart with error probability at most `delta`."""
    if not 0.0 < gap <= 1.0 or not 0.0 < delta < 1.0:
        raise RagError("gap must lie in (0, 1] and delta in (0, 1)")
    return math.ceil(2.0 * math.log(4.0 / delta) / gap**2)


def canary_fraction(gap: float, delta: float, horizon: int, sources_per_query: int, sources: int) -> float:
    """Share of queries that must be canaries for every source to be judged `canaries_needed` times in `horizon`."""
    if horizon < 1 or not 1 <= sources_per_query <= sources:
        raise RagError("horizon must be >= 1 and 1 <= sources_per_query <= sources")
    return canaries_needed(gap, delta) * sources / (sources_per_query * horizon)


def canaries_to_catch(tamper_share: float, delta: float) -> int:
    """Canaries a source must answer before one of them hits a tampered passage, with probability 1 - delta."""
    if not 0.0 < tamper_share <= 1.0 or not 0.0 < delta < 1.0:
        raise RagError("tamper_share must lie in (0, 1] and delta in (0, 1)")
    if tamper_share == 1.0:
        return 1
    return math.ceil(math.log(delta) / math.log(1.0 - tamper_share))
