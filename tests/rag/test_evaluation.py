"""The reliability experiment end to end on anvil, and its acceptance criteria (issues 6 and 18).

The full runs (300 queries, every scenario, two seeds) are the bench's: `trustmarket rag eval --scenario ...`
(figures in docs/benchmarks.md). Here: the independent experiment in full, and the collusion attack at 150
queries, whose goals hold with the tolerance stated at each assertion.
"""

from __future__ import annotations

import pytest

from rag.errors import RagError
from rag.evaluation import EvalConfig, run_evaluation
from rag.metrics import METRIC_SENTENCE

pytestmark = [pytest.mark.chain, pytest.mark.slow]

ROOT_KEYS = {"decentralized", "centralized", "sources", "gas", "metric", "queries", "canaries", "scenario"}


@pytest.fixture(scope="module")
def artifacts_path(compiled_artifacts):
    return compiled_artifacts.path


def test_acceptance_independent_pollution(artifacts_path, embedder):
    """Spearman >= 0.9 within 300 queries; +20 points over centralized when polluted (measured: +21.7); clean, no
    more than 2 points below centralized (measured: 4 points above, each witness asked deeper)."""
    report = run_evaluation(EvalConfig(queries=300), artifacts_path=artifacts_path, embedder=embedder)
    assert set(report) >= ROOT_KEYS and report["metric"] == METRIC_SENTENCE and report["queries"] == 300
    assert [s["pollution"] for s in report["sources"]] == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert report["spearman"] >= 0.9
    decentralized, centralized = report["decentralized"]["accuracy"], report["centralized"]["accuracy"]
    assert decentralized - centralized >= 0.20
    clean = report["clean"]
    assert clean["decentralized"]["accuracy"] >= clean["centralized"]["accuracy"] - 0.02
    assert report["gas"]["batches"] >= 29  # 300 queries in epochs of 10
    # 7,917 at 50 sources in the bench; here every record is full (the forgetting branch runs for each entry).
    assert report["gas"]["marginal_per_source"] <= 8500
    assert report["canaries"]["asked"] == 30
    assert all(0 < s["reliability"] < 1 for s in report["sources"])


def test_colluders_serving_one_polluted_copy_do_not_win(artifacts_path, embedder):
    """4 of 6 sources serve one polluted copy. Before: 5.3% against 62-64% centralized (the colluders got 98.9% of
    the slots). Goal: at least centralized, within 5 points of the clean upper bound; at 150 queries (half the
    run, so the learning phase weighs twice as much) we allow 2 more points."""
    report = run_evaluation(EvalConfig(queries=150, scenario="collude", clean=False), artifacts_path=artifacts_path,
                            embedder=embedder)  # fmt: skip
    decentralized, centralized = report["decentralized"]["accuracy"], report["centralized"]["accuracy"]
    assert decentralized >= centralized
    assert decentralized >= 0.757 - 0.07  # the clean run's 75.7% (seed 0), less 5 + 2 points
    assert report["attacker_slot_share"] < 0.3
    assert report["canaries"]["slashes"] >= 4 and all(
        s["burned"] > 0 for s in report["sources"] if s["attacker"]
    )
    honest = [s["reliability"] for s in report["sources"] if not s["attacker"]]
    assert min(honest) > max(s["reliability"] for s in report["sources"] if s["attacker"])


def test_bad_configurations(artifacts_path, tmp_path):
    with pytest.raises(RagError, match="queries"):
        run_evaluation(EvalConfig(queries=0), artifacts_path=artifacts_path)
    with pytest.raises(RagError, match="two sources"):
        run_evaluation(EvalConfig(pollution=(0.0,)), artifacts_path=artifacts_path)
    with pytest.raises(RagError, match="unknown scenario"):
        run_evaluation(EvalConfig(scenario="mutiny"), artifacts_path=artifacts_path)
    with pytest.raises(RagError, match="canary_fraction"):
        run_evaluation(EvalConfig(canary_fraction=1.5), artifacts_path=artifacts_path)
    no_questions = tmp_path / "nq.jsonl"
    no_questions.write_text('{"doc_id": "a", "context": "Text."}\n')
    with pytest.raises(RagError, match="no questions"):
        run_evaluation(EvalConfig(corpus=no_questions), artifacts_path=artifacts_path)
