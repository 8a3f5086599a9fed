"""The offline extractive reader: the answer is the best-supported sentence of the retrieved contexts.

A sentence-selection reader in the line of the sliding-window baseline of Richardson et al. (MCTest, EMNLP 2013)
and answer-sentence selection (Yang et al., WikiQA, EMNLP 2015): each sentence scores the idf-weighted overlap of
its content words with the question plus the dense cosine similarity of the two, and that relevance is
multiplied by the weight of the context it came from (retrieval score, and reliability when the orchestrator
reranks with it). No model download, deterministic, and it cites exactly one context.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rag.errors import RagError
from rag.index import Embedder
from rag.text import content_tokens, split_sentences

__all__ = ["Context", "ExtractiveReader", "ReaderAnswer"]


@dataclass(frozen=True)
class Context:
    """A retrieved passage handed to a generator, with the weight the reranker gave it (> 0)."""

    text: str
    weight: float
    source_id: int
    doc_id: str
    title: str = ""


@dataclass(frozen=True)
class ReaderAnswer:
    text: str
    context_index: int  # which of the given contexts the sentence came from
    score: float


class ExtractiveReader:
    """Pick the sentence maximizing `context.weight * (lexical + dense_weight * cosine)`."""

    def __init__(self, embedder: Embedder, dense_weight: float = 2.0):
        if not math.isfinite(dense_weight) or dense_weight < 0:
            raise RagError(f"dense_weight must be a finite non-negative number, got {dense_weight}")
        self.embedder = embedder
        self.dense_weight = dense_weight

    def read(self, question: str, contexts: Sequence[Context]) -> ReaderAnswer:
        if not question.strip():
            raise RagError("empty question")
        candidates: list[tuple[int, str]] = [
            (i, sentence) for i, ctx in enumerate(contexts) for sentence in split_sentences(ctx.text)
        ]
        if not candidates:
            raise RagError("no context to read an answer from")
        for ctx in contexts:
            if not math.isfinite(ctx.weight) or ctx.weight <= 0:
                raise RagError(f"context weight must be finite and positive, got {ctx.weight}")
        tokens = [set(content_tokens(sentence)) for _, sentence in candidates]
        # idf over the candidate pool: a word every passage shares says nothing about which sentence answers.
        df = Counter(word for words in tokens for word in words)
        n = len(candidates)
        asked = set(content_tokens(question))
        lexical = np.array(
            [sum(math.log((n + 1) / (df[w] + 0.5)) for w in asked & words) for words in tokens]
        )
        if lexical.max() > 0:
            lexical = lexical / lexical.max()
        vectors = self.embedder.encode([sentence for _, sentence in candidates])
        dense = vectors @ self.embedder.encode([question])[0]
        weights = np.array([contexts[i].weight for i, _ in candidates])
        scores = weights * (lexical + self.dense_weight * dense) / (1.0 + self.dense_weight)
        best = int(np.lexsort((np.arange(n), -scores))[0])
        return ReaderAnswer(candidates[best][1], candidates[best][0], float(scores[best]))
