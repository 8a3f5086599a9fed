"""The hybrid index (all-MiniLM-L6-v2 + BM25) and the extractive reader on real SQuAD paragraphs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rag.errors import RagError
from rag.index import Embedder, HybridIndex
from rag.reader import Context, ExtractiveReader


@pytest.fixture(scope="module")
def index(small_corpus, embedder):
    return HybridIndex(small_corpus, embedder)


def test_embedder_is_normalized_and_cached(embedder, tmp_path):
    vectors = embedder.encode(["Rollo led the Norse.", "Rollo led the Norse.", "Paris"])
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(vectors[0], vectors[1])
    assert embedder.encode([]).shape == (0, 384)
    cached = Embedder(cache_dir=tmp_path)
    cached._model = embedder.model  # share the loaded weights; the cache files are what is tested
    first = cached.encode(["a sentence to persist"])
    assert len(list(tmp_path.glob("*.npy"))) == 1
    fresh = Embedder(cache_dir=tmp_path, model_path=tmp_path / "no-model-here")
    assert np.array_equal(fresh.encode(["a sentence to persist"]), first)  # read from disk, no model load


@pytest.mark.parametrize(
    "damage",
    [b"", b"\x93NUMPY\x01\x00v\x00{'descr': '<f4', 'fortran_order': False, 'shape': (384,), }", b"not numpy"],
    ids=["empty", "half-written", "garbage"],
)
def test_a_partial_cache_file_is_recomputed_not_an_error(embedder, tmp_path, damage):
    """A file another process is still writing (or left half-written) reads as a miss, and is replaced."""
    import hashlib

    text = "a sentence whose cache file was cut short"
    expected = embedder.encode([text])[0]
    path = tmp_path / f"{hashlib.sha256(text.encode()).hexdigest()}.npy"
    path.write_bytes(damage)
    cached = Embedder(cache_dir=tmp_path)
    cached._model = embedder.model
    recomputed = cached.encode([text])[0]
    # Recomputed, so equal up to float rounding (torch's thread count may differ between the two encodes).
    assert np.allclose(recomputed, expected, atol=1e-6)
    assert np.array_equal(np.load(path), recomputed)  # rewritten whole
    assert not list(tmp_path.glob(".*.tmp"))


def test_cache_writes_are_atomic(embedder, tmp_path, monkeypatch):
    """A write that fails half-way leaves no file under the final name (readers see a miss, not half a file)."""
    cached = Embedder(cache_dir=tmp_path)
    cached._model = embedder.model

    def dies_half_way(handle, vector):
        handle.write(b"\x93NUMPY")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "save", dies_half_way)
    vector = cached.encode(["a sentence on a full disk"])[0]  # the query still gets its vector
    assert vector.shape == (384,)
    assert list(tmp_path.iterdir()) == []


def test_search_finds_the_paragraph_of_most_questions(small_corpus, index):
    questions = small_corpus.questions
    top3 = sum(q.doc_id in {small_corpus.documents[h.position].doc_id for h in index.search(q.question, 3)}
               for q in questions)  # fmt: skip
    assert top3 / len(questions) >= 0.8
    hits = index.search(questions[0].question, 5)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert all(0.0 <= h.lexical <= 1.0 for h in hits)
    assert len(index.search("Normans", 100)) == len(small_corpus)


def test_search_errors(small_corpus, embedder, index):
    with pytest.raises(RagError, match="empty"):
        index.search("   ", 3)
    with pytest.raises(RagError, match="k must"):
        index.search("Normans", 0)
    with pytest.raises(RagError, match="dense_weight"):
        HybridIndex(small_corpus, embedder, dense_weight=1.5)
    assert index.search("zzzz qqqq", 1)[0].lexical == 0.0  # no shared term: dense only, no division by zero


def test_reader_picks_the_answer_sentence(squad, embedder):
    doc = squad.documents[0]
    reader = ExtractiveReader(embedder)
    answer = reader.read("Who was the Norse leader?", [Context(doc.text, 1.0, 1, doc.doc_id)])
    assert "Rollo" in answer.text and answer.context_index == 0


def test_reader_follows_context_weights_between_conflicting_copies(squad, embedder):
    doc = squad.documents[0]
    forged = doc.text.replace("Rollo", "Hastein")
    reader = ExtractiveReader(embedder)
    question = "Who was the Norse leader?"
    trusted = reader.read(
        question, [Context(forged, 0.3, 2, doc.doc_id), Context(doc.text, 0.9, 1, doc.doc_id)]
    )
    assert "Rollo" in trusted.text and trusted.context_index == 1
    fooled = reader.read(
        question, [Context(forged, 0.9, 2, doc.doc_id), Context(doc.text, 0.3, 1, doc.doc_id)]
    )
    assert "Hastein" in fooled.text


@pytest.mark.parametrize("weight", [0.0, -1.0, math.nan, math.inf])
def test_reader_rejects_bad_weights(embedder, weight):
    with pytest.raises(RagError, match="weight"):
        ExtractiveReader(embedder).read("Who?", [Context("Rollo led.", weight, 1, "d")])


def test_reader_errors(embedder):
    reader = ExtractiveReader(embedder)
    with pytest.raises(RagError, match="no context"):
        reader.read("Who?", [])
    with pytest.raises(RagError, match="empty question"):
        reader.read(" ", [Context("Rollo led.", 1.0, 1, "d")])
    with pytest.raises(RagError, match="dense_weight"):
        ExtractiveReader(embedder, dense_weight=math.nan)
