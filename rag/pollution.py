"""Seeded pollution of a corpus copy: gold answer spans replaced by a wrong entity of the same type.

The reliability experiment of Reliable-dRAG, made reproducible: for source `i` with pollution fraction `p`, a
`random.Random(f"{seed}:{i}")` picks `round(p * n)` of the `n` documents that have answerable questions. In each
picked document, every question's gold answers (all variants, longest first, every occurrence) are replaced by
one wrong answer drawn from the gold answers of *other* questions in the corpus that share its coarse type
(number: has a digit; name: starts with a capital; phrase: otherwise) and neither equal nor contain any of the
question's gold answers (nor are contained in them). The planted strings are recorded per question so a sentence
answer can be marked wrong when it repeats one.
"""

from __future__ import annotations

import math
import random
import re
from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass, field

from rag.corpus import Corpus, Document, Question
from rag.errors import RagError
from rag.text import normalize_answer

__all__ = ["Pollution", "answer_type", "eligible_documents", "pollute"]


def answer_type(answer: str) -> str:
    """A coarse entity type: 'number', 'name' or 'phrase'."""
    text = re.sub(r"^(the|a|an)\s+", "", answer.strip(), flags=re.IGNORECASE)
    if any(ch.isdigit() for ch in text):
        return "number"
    if text[:1].isupper():
        return "name"
    return "phrase"


@dataclass(frozen=True)
class Pollution:
    """What was done to one copy: which documents, and which wrong strings were planted per question."""

    fraction: float
    polluted: frozenset[str]
    planted: dict[str, tuple[str, ...]] = field(default_factory=dict)


def _related(a: str, b: str) -> bool:
    """Equal or one inside the other, on normalized tokens (both arguments already normalized)."""
    return a == b or f" {a} " in f" {b} " or f" {b} " in f" {a} "


def eligible_documents(corpus: Corpus) -> list[str]:
    """Ids of the documents that hold a gold answer of one of their questions (what pollution can change)."""
    by_doc = _questions_by_document(corpus)
    return [d.doc_id for d in corpus.documents
            if any(a in d.text for q in by_doc.get(d.doc_id, ()) for a in q.answers)]  # fmt: skip


def _questions_by_document(corpus: Corpus) -> dict[str, list[Question]]:
    by_doc: dict[str, list[Question]] = defaultdict(list)
    for q in corpus.questions:
        by_doc[q.doc_id].append(q)
    return by_doc


def pollute(
    corpus: Corpus, fraction: float, seed: int, source_index: int, *, within: Collection[str] | None = None
) -> tuple[Corpus, Pollution]:
    """A polluted copy of `corpus` and the record of what was planted.

    `within` restricts the documents that can be picked (a targeted attack): `fraction` is then a share of those.
    """
    if not math.isfinite(fraction) or not 0.0 <= fraction <= 1.0:
        raise RagError(f"pollution fraction must lie in [0, 1], got {fraction}")
    by_doc = _questions_by_document(corpus)
    pool: dict[str, list[tuple[str, str, str]]] = defaultdict(
        list
    )  # type -> (question id, answer, normalized)
    for q in corpus.questions:
        for a in q.answers:
            pool[answer_type(a)].append((q.id, a, normalize_answer(a)))
    eligible = eligible_documents(corpus)
    if within is not None:
        eligible = [doc_id for doc_id in eligible if doc_id in within]
    rng = random.Random(f"{seed}:{source_index}")
    chosen = frozenset(rng.sample(eligible, round(fraction * len(eligible))))
    planted: dict[str, list[str]] = defaultdict(list)
    documents = []
    for doc in corpus.documents:
        text = doc.text
        if doc.doc_id in chosen:
            for q in by_doc[doc.doc_id]:
                golds = sorted(q.answers, key=len, reverse=True)
                present = [g for g in golds if _occurs(text, g)]
                if not present:
                    continue  # an earlier question's replacement already removed this answer
                normalized = [normalize_answer(g) for g in q.answers]
                options = [a for qid, a, norm in pool[answer_type(present[0])]
                           if qid != q.id and norm and not any(_related(norm, g) for g in normalized)]  # fmt: skip
                if not options:
                    continue
                wrong = rng.choice(sorted(set(options)))
                for g in present:
                    text = re.sub(rf"(?<!\w){re.escape(g)}(?!\w)", wrong, text)
                planted[q.id].append(wrong)
        documents.append(Document(doc.doc_id, doc.title, text))
    return corpus.with_documents(documents), Pollution(
        fraction, chosen, {qid: tuple(ws) for qid, ws in planted.items()}
    )


def _occurs(text: str, phrase: str) -> bool:
    return re.search(rf"(?<!\w){re.escape(phrase)}(?!\w)", text) is not None
