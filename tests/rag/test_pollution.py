"""Seeded pollution: reproducible, the right share of documents, gold spans really replaced, same-type entities."""

from __future__ import annotations

import math

import pytest

from rag.errors import RagError
from rag.pollution import answer_type, pollute
from rag.text import contains_phrase


def test_answer_types():
    assert [answer_type(a) for a in ["1066", "the 10th century", "Rollo", "The Normans", "raiders"]] == [
        "number", "number", "name", "name", "phrase",
    ]  # fmt: skip


def test_zero_pollution_is_an_identical_copy(squad):
    copy, record = pollute(squad, 0.0, seed=1, source_index=0)
    assert copy.documents == squad.documents and record.polluted == frozenset() and record.planted == {}


@pytest.mark.parametrize("fraction", [0.2, 0.6, 1.0])
def test_pollution_replaces_gold_answers(squad, fraction):
    copy, record = pollute(squad, fraction, seed=3, source_index=2)
    assert len(record.polluted) == round(fraction * 126)
    changed = {d.doc_id for d, o in zip(copy.documents, squad.documents, strict=True) if d.text != o.text}
    assert changed == record.polluted
    hit = [q for q in squad.questions if q.doc_id in record.polluted]
    survivors = [q for q in hit if any(contains_phrase(copy.document(q.doc_id).text, g) for g in q.answers)]
    # Only answers that differ from their span by case or punctuation (seen by normalization) can survive.
    assert len(survivors) <= 0.05 * len(hit)
    for qid, wrongs in record.planted.items():
        question = next(q for q in squad.questions if q.id == qid)
        for wrong in wrongs:
            assert not any(contains_phrase(wrong, g) or contains_phrase(g, wrong) for g in question.answers)
            assert answer_type(wrong) in {answer_type(g) for g in question.answers}


def test_pollution_is_seeded(squad):
    a = pollute(squad, 0.4, seed=5, source_index=1)
    b = pollute(squad, 0.4, seed=5, source_index=1)
    c = pollute(squad, 0.4, seed=5, source_index=2)
    assert a == b
    assert a[1].polluted != c[1].polluted


@pytest.mark.parametrize("fraction", [-0.1, 1.5, math.nan, math.inf])
def test_bad_fractions(squad, fraction):
    with pytest.raises(RagError, match="fraction"):
        pollute(squad, fraction, seed=0, source_index=0)
