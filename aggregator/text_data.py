"""The text task of the demo and the tests: which article of the shipped SQuAD paragraphs a question comes from.

The questions are those of `rag/data/squad_paragraphs.jsonl` (three articles of the SQuAD 2.0 development set:
Rajpurkar, Jia, Liang 2018, "Know What You Don't Know: Unanswerable Questions for SQuAD", ACL; CC BY-SA 4.0), read
as a file: nothing of the rag package is imported. The splits are drawn by a seed, stratified by article.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aggregator.errors import AggregatorError

__all__ = ["TextSplits", "question_splits", "squad_path", "squad_questions"]


def squad_path() -> Path:
    """The shipped SQuAD paragraphs (beside the rag package, which is not imported)."""
    spec = importlib.util.find_spec("rag")
    if spec is None or not spec.submodule_search_locations:
        raise AggregatorError("the rag package (and its SQuAD data) is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "data" / "squad_paragraphs.jsonl"


def squad_questions(path: Path | None = None) -> tuple[list[str], list[str]]:
    """Every question and the title of the article it was asked about, in file order."""
    questions, titles = [], []
    with (path or squad_path()).open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                row = json.loads(line)
                for q in row["questions"]:
                    questions.append(q["question"])
                    titles.append(row["title"])
    return questions, titles


@dataclass(frozen=True)
class TextSplits:
    """(questions, titles) pairs: the owner's validation set, a held-out test set and one shard per trainer."""

    validation: tuple[list[str], list[str]]
    test: tuple[list[str], list[str]]
    shards: list[tuple[list[str], list[str]]]


def question_splits(
    trainers: int, per_trainer: int, validation: int, test: int, seed: int = 0, path: Path | None = None
) -> TextSplits:
    """Disjoint splits, each with the articles in the proportions of the whole (stratified, then shuffled)."""
    questions, titles = squad_questions(path)
    need = trainers * per_trainer + validation + test
    if need > len(questions):
        raise AggregatorError(f"{need} questions asked for, the data has {len(questions)}")
    rng = np.random.default_rng(seed)
    by_title: dict[str, list[int]] = {}
    for i, title in enumerate(titles):
        by_title.setdefault(title, []).append(i)
    # Each article's shuffled questions at evenly spaced ranks (j + 0.5) / n: sorted by rank, any stretch of
    # the order holds the articles in the proportions of the whole.
    ranked = []
    for k, (_, idx) in enumerate(sorted(by_title.items())):
        for j, i in enumerate(rng.permutation(idx).tolist()):
            ranked.append(((j + 0.5) / len(idx), k, i))
    order = [i for _, _, i in sorted(ranked)]
    sizes = [validation, test] + [per_trainer] * trainers
    parts, start = [], 0
    for size in sizes:
        # A split's own order is shuffled too: no run of one article in it.
        picked = [order[j] for j in rng.permutation(np.arange(start, start + size))] if size else []
        parts.append(([questions[i] for i in picked], [titles[i] for i in picked]))
        start += size
    return TextSplits(parts[0], parts[1], parts[2:])
