"""Text helpers shared by the reader, the index and the metrics: SQuAD normalization, tokens, sentences."""

from __future__ import annotations

import re
import string
from collections.abc import Iterator, Sequence
from difflib import SequenceMatcher
from functools import lru_cache

__all__ = [
    "NEAR_DUPLICATE",
    "STOPWORDS",
    "contains_phrase",
    "content_tokens",
    "near_duplicate",
    "near_duplicate_pairs",
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


@lru_cache(maxsize=1 << 16)
def normalize_answer(text: str) -> str:
    """SQuAD's answer normalization: lower case, no punctuation, no articles, single spaces.

    From the official SQuAD v1.1/v2.0 evaluation script (Rajpurkar et al., 2016, 2018). Cached: a query
    normalizes the same retrieved passages many times over (versions, claims, the reader, the metrics).
    """
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def content_tokens(text: str) -> list[str]:
    """Normalized tokens without stopwords."""
    return list(_content_tokens(text))


@lru_cache(maxsize=1 << 16)
def _content_tokens(text: str) -> tuple[str, ...]:
    return tuple(tok for tok in normalize_answer(text).split() if tok not in STOPWORDS)


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
    return any(True for _ in near_duplicate_pairs([a, b], threshold))


def near_duplicate_pairs(
    texts: Sequence[str], threshold: float = NEAR_DUPLICATE
) -> Iterator[tuple[int, int]]:
    """The index pairs `(i, j)`, `i < j`, of `texts` that are versions of one passage (`near_duplicate`).

    Each text is tokenized once, and difflib's cheap upper bounds on the ratio are checked first from the token
    counts (most pairs of different passages stop there): its length bound, then the multiset overlap, here one
    set intersection in C over (token, occurrence) pairs. Only the pairs left pay for `SequenceMatcher.ratio`,
    computed as `SequenceMatcher(None, tokens[i], tokens[j], autojunk=False)`: the same decision, pair for pair.
    """
    tokens = [normalize_answer(text).split() for text in texts]
    bags = [_bag(t) for t in tokens]
    for i, a in enumerate(tokens):
        for j in range(i + 1, len(tokens)):
            b = tokens[j]
            length = len(a) + len(b)
            if _ratio(min(len(a), len(b)), length) < threshold:
                continue
            if _ratio(len(bags[i] & bags[j]), length) < threshold:
                continue
            if SequenceMatcher(None, a, b, autojunk=False).ratio() >= threshold:
                yield i, j


def _bag(tokens: list[str]) -> frozenset[tuple[str, int]]:
    # A multiset as a set: the k-th occurrence of a token is (token, k), so |A & B| is the multiset overlap.
    seen: dict[str, int] = {}
    items = []
    for tok in tokens:
        k = seen.get(tok, 0)
        seen[tok] = k + 1
        items.append((tok, k))
    return frozenset(items)


def _ratio(matches: int, length: int) -> float:
    # difflib's own formula (`_calculate_ratio`), so each bound is compared with the threshold exactly as it is.
    return 2.0 * matches / length if length else 1.0
