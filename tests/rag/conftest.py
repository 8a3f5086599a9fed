"""Fixtures for the dRAG tests: one embedder per session (with the project's embedding cache), small corpora."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SQUAD = ROOT / "tests" / "fixtures" / "squad" / "paragraphs.jsonl"


@pytest.fixture(scope="session")
def squad():
    from rag.corpus import load_corpus

    return load_corpus(SQUAD)


@pytest.fixture(scope="session")
def small_corpus(squad):
    """Twelve paragraphs (two articles) with their questions: enough to retrieve among, cheap to embed."""
    from rag.corpus import Corpus

    keep = squad.documents[:8] + squad.documents[40:44]
    ids = {d.doc_id for d in keep}
    return Corpus(tuple(keep), tuple(q for q in squad.questions if q.doc_id in ids))


@pytest.fixture(scope="session")
def embedder():
    from rag.index import Embedder

    return Embedder(cache_dir=ROOT / ".trustmarket" / "cache" / "embeddings")


@pytest.fixture(scope="module")
def artifacts_path(compiled_artifacts):
    return compiled_artifacts.path
