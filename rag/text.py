"""Text helpers shared by the reader, the index and the metrics: SQuAD normalization, tokens, sentences."""

from __future__ import annotations

import re
import string
from difflib import SequenceMatcher

__all__ = [
    "NEAR_DUPLICATE",
    "STOPWORDS",
    "contains_phrase",
    "content_tokens",
    "near_duplicate",
    "normalize_answer",
    "split_sentences",
]

# Token-sequence similarity (difflib's ratio) above which two documents are versions of one passage: on the
# SQuAD excerpt a fully polluted paragraph keeps at least 0.54 of its original, two different paragraphs share
# at most 0.30.
NEAR_DUPLICATE = 0.45

_PUNCTUATION = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")
# A sentence ends at . ! or ? followed by space and something that can start a sentence.
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(\[])")

# Function words carry no evidence about which sentence answers a question.
STOPWORDS = frozenset(
    [
        "a",
        "an",
        "the",
        "of",
        "in",
        "on",
        "at",
        "to",
        "for",
        "by",
        "with",
        "from",
        "and",
        "or",
        "is",
        "was",
        "were",
        "are",
        "be",
        "been",
        "being",
        "what",
        "which",
        "who",
        "whom",
        "whose",
        "when",
        "where",
        "why",
        "how",
        "did",
        "do",
        "does",
        "that",
        "this",
        "these",
        "those",
        "it",
        "its",
        "as",
        "into",
        "than",
        "then",
        "there",
        "their",
        "they",
        "he",
        "she",
        "his",
        "her",
        "him",
        "them",
        "not",
        "no",
        "can",
        "could",
        "would",
        "should",
        "will",
        "has",
        "have",
        "had",
        "also",
        "about",
        "after",
        "before",
        "during",
    ]
)


def normalize_answer(text: str) -> str:
    """SQuAD's answer normalization: lower case, no punctuation, no articles, single spaces.

    From the official SQuAD v1.1/v2.0 evaluation script (Rajpurkar et al., 2016, 2018).
    """
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def content_tokens(text: str) -> list[str]:
    """Normalized tokens without stopwords."""
    return [tok for tok in normalize_answer(text).split() if tok not in STOPWORDS]


def contains_phrase(text: str, phrase: str) -> bool:
    """Whether normalized `phrase` occurs in normalized `text` on token boundaries."""
    needle = normalize_answer(phrase)
    return bool(needle) and f" {needle} " in f" {normalize_answer(text)} "


def split_sentences(paragraph: str) -> list[str]:
    """Sentences of a paragraph (a rule-based splitter: enough for encyclopedic prose)."""
    return [s.strip() for s in _SENTENCE_END.split(paragraph) if s.strip()]


def near_duplicate(a: str, b: str, threshold: float = NEAR_DUPLICATE) -> bool:
    """Whether two texts are versions of one passage: the ratio of their matching normalized token runs
    (`difflib.SequenceMatcher`) is at least `threshold`, so a few replaced spans keep them together."""
    matcher = SequenceMatcher(None, normalize_answer(a).split(), normalize_answer(b).split(), autojunk=False)
    # The cheap upper bounds first: most pairs of different passages stop there.
    return (
        matcher.real_quick_ratio() >= threshold
        and matcher.quick_ratio() >= threshold
        and (matcher.ratio() >= threshold)
    )
