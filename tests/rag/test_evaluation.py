"""The reliability experiment end to end on anvil, and its acceptance criteria (issue 6)."""

from __future__ import annotations

import pytest

from rag.errors import RagError
from rag.evaluation import EvalConfig, run_evaluation
from rag.metrics import METRIC_SENTENCE

pytestmark = [pytest.mark.chain, pytest.mark.slow]

ROOT_KEYS = {"decentralized", "centralized", "sources", "gas", "metric", "queries"}


@pytest.fixture(scope="module")
def artifacts_path(compiled_artifacts):
    return compiled_artifacts.path


def test_acceptance_reliability_ranks_pollution_and_beats_centralized(artifacts_path, embedder):
    """Spearman >= 0.9 within 300 queries; +10 points when polluted; within 2 points when clean."""
    report = run_evaluation(EvalConfig(queries=300), artifacts_path=artifacts_path, embedder=embedder)
    assert set(report) >= ROOT_KEYS and report["metric"] == METRIC_SENTENCE and report["queries"] == 300
    assert [s["pollution"] for s in report["sources"]] == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert report["spearman"] >= 0.9
    decentralized, centralized = report["decentralized"]["accuracy"], report["centralized"]["accuracy"]
    assert decentralized - centralized >= 0.10
    clean = report["clean"]
    assert abs(clean["decentralized"]["accuracy"] - clean["centralized"]["accuracy"]) <= 0.02
    assert report["gas"]["batches"] >= 29  # 300 queries in batches of 10 (the last flush may be empty)
    assert report["gas"]["marginal_per_source"] <= 8000
    assert all(0 < s["reliability"] < 1 for s in report["sources"])


def test_bad_configurations(artifacts_path, tmp_path):
    with pytest.raises(RagError, match="queries"):
        run_evaluation(EvalConfig(queries=0), artifacts_path=artifacts_path)
    with pytest.raises(RagError, match="two sources"):
        run_evaluation(EvalConfig(pollution=(0.0,)), artifacts_path=artifacts_path)
    no_questions = tmp_path / "nq.jsonl"
    no_questions.write_text('{"doc_id": "a", "context": "Text."}\n')
    with pytest.raises(RagError, match="no questions"):
        run_evaluation(EvalConfig(corpus=no_questions), artifacts_path=artifacts_path)
