"""Answer accuracy (SQuAD exact match, or sentence correctness for the extractive reader) and rank agreement."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence

from scipy.stats import spearmanr

from rag.errors import RagError
from rag.text import contains_phrase, normalize_answer

__all__ = ["METRIC_EXACT_MATCH", "METRIC_SENTENCE", "exact_match", "sentence_correct", "spearman", "token_f1"]

METRIC_EXACT_MATCH = "squad_exact_match"
METRIC_SENTENCE = "sentence_contains_gold_not_planted"


def exact_match(prediction: str, golds: Iterable[str]) -> bool:
    """SQuAD exact match: the normalized prediction equals some normalized gold answer."""
    predicted = normalize_answer(prediction)
    return any(predicted == normalize_answer(gold) for gold in golds)


def sentence_correct(
    sentence: str,
    golds: Iterable[str],
    planted: Iterable[str] = (),
    clean_sentences: Collection[str] = frozenset(),
) -> bool:
    """A sentence answer is right when it contains a gold answer and none of the wrong entities planted for it.

    A sentence of the clean corpus (`clean_sentences`, normalized) is judged on the golds alone: the wrong
    strings planted for a question are ordinary words and names too ("time", "California"), and a clean
    sentence that holds one was not polluted by it (in the control scenario, 8 of the 20 answers the
    pollution seemed to cost were the clean run's own sentence, word for word)."""
    if not any(contains_phrase(sentence, g) for g in golds):
        return False
    return normalize_answer(sentence) in clean_sentences or not any(
        contains_phrase(sentence, w) for w in planted
    )


def spearman(scores: Sequence[float], truth: Sequence[float]) -> float:
    """Spearman's rank correlation (ties averaged); raises on fewer than two or constant inputs."""
    if len(scores) != len(truth) or len(scores) < 2:
        raise RagError("spearman needs two sequences of the same length, at least 2")
    if len(set(scores)) < 2 or len(set(truth)) < 2:
        raise RagError("spearman is undefined for a constant sequence")
    return float(spearmanr(scores, truth).statistic)


def token_f1(prediction: str, gold: str) -> float:
    """SQuAD's token F1 between two answers after normalization (1.0 when both are empty)."""
    predicted, expected = normalize_answer(prediction).split(), normalize_answer(gold).split()
    if not predicted or not expected:
        return float(predicted == expected)
    common = sum(min(predicted.count(w), expected.count(w)) for w in set(predicted))
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted), common / len(expected)
    return 2 * precision * recall / (precision + recall)
