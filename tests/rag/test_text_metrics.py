"""SQuAD normalization, sentence splitting, the two accuracy metrics and Spearman."""

from __future__ import annotations

from difflib import SequenceMatcher

import pytest

from rag.corpus import load_corpus
from rag.errors import RagError
from rag.metrics import exact_match, sentence_correct, spearman, token_f1
from rag.pollution import pollute
from rag.text import (
    NEAR_DUPLICATE,
    contains_phrase,
    content_tokens,
    near_duplicate,
    near_duplicate_pairs,
    normalize_answer,
    split_sentences,
)


def test_normalize_answer_is_squads():
    assert normalize_answer("The  Normans, in France!") == "normans in france"
    assert normalize_answer("an apple a day") == "apple day"


def test_contains_phrase_respects_token_boundaries():
    assert contains_phrase("Rollo led the Norse.", "rollo")
    assert not contains_phrase("Rollolo led.", "Rollo")
    assert not contains_phrase("anything", "")
    assert content_tokens("What is the capital of France?") == ["capital", "france"]


def test_split_sentences():
    text = 'It began in 911. "Rollo" swore fealty. Then 1066 came! Was it? (yes) it was.'
    assert split_sentences(text) == ["It began in 911.", '"Rollo" swore fealty.', "Then 1066 came!", "Was it?",
                                     "(yes) it was."]  # fmt: skip


def test_exact_match():
    assert exact_match("the France", ["France"])
    assert not exact_match("France and Italy", ["France"])


def test_sentence_correct_needs_gold_and_no_planted_answer():
    golds = ["10th century", "10th"]
    assert sentence_correct("It emerged in the 10th century.", golds)
    assert not sentence_correct("It emerged in the 14th century.", golds, planted=["14th century"])
    assert not sentence_correct("Both the 10th and the 14th century.", golds, planted=["14th century"])


def test_a_clean_sentence_is_not_polluted_by_a_word_planted_elsewhere():
    golds, planted = ["Los Angeles Times"], ["Orange"]  # "Orange" was planted for this question in some copy
    clean = "In 1900, the Los Angeles Times defined it as Los Angeles, Orange and San Diego."
    clean_sentences = {normalize_answer(clean)}
    assert not sentence_correct(clean, golds, planted)
    assert sentence_correct(clean, golds, planted, clean_sentences)
    # A polluted sentence is still judged on what was planted, and gold is still needed.
    polluted = "In 1900, the Los Angeles Times defined it as Orange alone."
    assert not sentence_correct(polluted, golds, planted, clean_sentences)
    assert not sentence_correct(clean, ["Chicago Tribune"], planted, clean_sentences)


def test_spearman():
    assert spearman([0.9, 0.7, 0.1], [0, -0.5, -1]) == pytest.approx(1.0)
    assert spearman([0.1, 0.7], [0, -1]) == pytest.approx(-1.0)
    for scores, truth in [([1.0], [1.0]), ([1.0, 2.0], [1.0]), ([1.0, 1.0], [1.0, 2.0])]:
        with pytest.raises(RagError):
            spearman(scores, truth)


def test_token_f1():
    assert token_f1("the Norse leader Rollo", "Rollo") == pytest.approx(2 * (1 / 3) * 1 / (1 / 3 + 1))
    assert token_f1("Rollo", "rollo.") == 1.0
    assert token_f1("Rollo", "Hastein") == 0.0
    assert token_f1("", "the") == 1.0 and token_f1("", "Rollo") == 0.0


def _difflib_near_duplicate(a: str, b: str, threshold: float = NEAR_DUPLICATE) -> bool:
    # The decision as difflib states it, on freshly normalized tokens: what near_duplicate_pairs must reproduce.
    matcher = SequenceMatcher(None, normalize_answer(a).split(), normalize_answer(b).split(), autojunk=False)
    return (
        matcher.real_quick_ratio() >= threshold
        and matcher.quick_ratio() >= threshold
        and (matcher.ratio() >= threshold)
    )


def test_near_duplicate_pairs_decide_as_difflib_does():
    corpus = load_corpus()
    polluted, _ = pollute(corpus, 0.6, seed=3, source_index=1)
    texts = [d.text for d in corpus.documents[:25]] + [d.text for d in polluted.documents[:25]]
    texts += ["", "", "the a an", "Rollo Rollo Rollo", "Rollo"]  # empty after normalization; repeated tokens
    expected = {(i, j) for i in range(len(texts)) for j in range(i + 1, len(texts))
                if _difflib_near_duplicate(texts[i], texts[j])}  # fmt: skip
    found = set(near_duplicate_pairs(texts))
    assert found == expected
    # Each original and its polluted version are one passage; the shipped paragraphs are not one another's.
    assert {(i, i + 25) for i in range(25)} <= found
    assert not any(j < 25 for _, j in found)
    assert near_duplicate(texts[0], texts[25]) and not near_duplicate(texts[0], texts[1])
