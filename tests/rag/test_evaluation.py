"""The reliability experiment end to end on anvil, and the goals of issues 6 and 18 on shorter runs.

The full runs (300 users' queries, every scenario, seeds 0 and 1) are the bench's: `trustmarket rag eval
--scenario ...` (figures and commands in docs/benchmarks.md). Here each goal is checked on a run of 90 to 150
queries, seeds 0 and 1 in turn, with the tolerance stated beside it: a short run weighs the learning phase (the
first epochs, when every source is a stranger and sampled alike) more than the 300-query run does. Embeddings
come from the project's cache (tests/rag/conftest.py): a query costs the chain, the signatures and the reader.
"""

from __future__ import annotations

import pytest

from rag.errors import RagError
from rag.evaluation import EvalConfig, run_evaluation
from rag.metrics import METRIC_SENTENCE

pytestmark = [pytest.mark.chain, pytest.mark.slow]

ROOT_KEYS = {"decentralized", "centralized", "sources", "gas", "metric", "queries", "canaries", "scenario"}

# Clean upper bounds (docs/benchmarks.md): the scenario with no pollution, decentralized, 300 queries, seed 0.
CLEAN_SIX = 0.793  # six sources (independent; the collusion scenarios hold the same six copies)
CLEAN_SYBIL = 0.793  # twelve sources
# At 150 queries the runs measured: independent +24.7 points (seed 0), collude 74.0% (seed 1, 0.3 below the bound
# less 5), sybil 73.3% (seed 0, 1.0 below); at 100 the first epoch's strangers weigh a third more again.
TOL_INDEPENDENT = 0.03
TOL_SHORT = 0.04


@pytest.fixture(scope="module")
def artifacts_path(compiled_artifacts):
    return compiled_artifacts.path


def run(artifacts_path, embedder, **config):
    return run_evaluation(EvalConfig(**config), artifacts_path=artifacts_path, embedder=embedder)


def accuracies(report) -> tuple[float, float]:
    print({k: report.get(k) for k in ("decentralized", "centralized", "attacker_slot_share", "spearman", "sleeper",
                                      "canaries", "clean")})  # shown on failure (and with -rP)  # fmt: skip
    return report["decentralized"]["accuracy"], report["centralized"]["accuracy"]


def test_acceptance_independent_pollution(artifacts_path, embedder):
    """Six sources polluted 0..100% (seed 0, 100 queries and the clean rerun): reliability ranks the sources
    (Spearman >= 0.9), decentralized beats centralized by 20 points (TOL_INDEPENDENT below at this length), and
    clean, it is not more than 2 points below centralized."""
    report = run(artifacts_path, embedder, queries=100)
    assert set(report) >= ROOT_KEYS and report["metric"] == METRIC_SENTENCE and report["queries"] == 100
    assert [s["pollution"] for s in report["sources"]] == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert report["spearman"] >= 0.9
    decentralized, centralized = accuracies(report)
    assert decentralized - centralized >= 0.20 - TOL_INDEPENDENT
    clean = report["clean"]
    assert clean["decentralized"]["accuracy"] >= clean["centralized"]["accuracy"] - 0.02
    assert report["gas"]["batches"] >= 9  # 100 queries in epochs of 10
    # 7,917 at 50 sources in the bench; here every record is full (the forgetting branch runs for each entry).
    assert report["gas"]["marginal_per_source"] <= 8500
    assert report["canaries"]["asked"] == 10
    assert all(0 < s["reliability"] < 1 for s in report["sources"])


def test_colluders_serving_one_polluted_copy_do_not_win(artifacts_path, embedder):
    """4 of 6 sources serve one polluted copy (seed 1, 150 queries). Before #18: 5.3% against 62-64% centralized
    (the colluders got 98.9% of the slots). Goals: at least centralized, within 5 points of the clean upper bound
    less TOL_SHORT at this length; the colluders' slots (16.5% at 300 queries; 30.1% at 150 and 36.8% at 100, the
    strangers' first epochs sampled alike) under 35%."""
    report = run(artifacts_path, embedder, queries=150, scenario="collude", seed=1, clean=False)
    decentralized, centralized = accuracies(report)
    assert decentralized >= centralized
    assert decentralized >= CLEAN_SIX - 0.05 - TOL_SHORT
    assert report["attacker_slot_share"] < 0.35
    assert report["canaries"]["slashes"] >= 4 and all(
        s["burned"] > 0 for s in report["sources"] if s["attacker"]
    )
    honest = [s["reliability"] for s in report["sources"] if not s["attacker"]]
    assert min(honest) > max(s["reliability"] for s in report["sources"] if s["attacker"])


def test_one_operator_with_seven_copies_is_one_witness(artifacts_path, embedder):
    """Sybil: one wallet registers 7 copies of a polluted corpus beside 5 sources polluted 0..80% (seed 0, 90
    queries). Before #18: 4.7% against 49.3%, the attacker got 98.8% of the slots. Goals: at least centralized,
    within 5 points of the clean upper bound less TOL_SHORT; the copies' slots (7.2% at 300 queries, 11.8% at
    150) under 20%; its seven bonds cost 28 minimum bonds."""
    report = run(artifacts_path, embedder, queries=90, scenario="sybil", clean=False)
    decentralized, centralized = accuracies(report)
    assert decentralized >= centralized
    assert decentralized >= CLEAN_SYBIL - 0.05 - TOL_SHORT
    assert report["attacker_slot_share"] < 0.2
    sybils = [s for s in report["sources"] if s["attacker"]]
    assert sum(s["bond"] for s in sybils) == 28 * sybils[0]["bond"]
    clean = next(s for s in report["sources"] if s["pollution"] == 0.0)
    assert clean["reliability"] > max(s["reliability"] for s in sybils)


def test_a_sleeper_falls_below_the_median_within_50_queries(artifacts_path, embedder):
    """A seventh source serves clean documents, builds a record, then turns (seed 1, at query 61 of 111): on chain
    it is below the median source within 50 queries of turning (the goal itself: no tolerance; measured 30 here,
    20 and 40 when turning at 151 in the 300-query runs). Turning at 31 it has no record to lose yet (0.29)."""
    report = run(artifacts_path, embedder, queries=111, scenario="sleeper", seed=1, turn_at=61, clean=False)
    sleeper = report["sleeper"]
    assert sleeper["turned_at"] == 61 and sleeper["reliability_at_turn"] > 0.5
    assert sleeper["queries_to_below_median"] is not None and sleeper["queries_to_below_median"] <= 50
    decentralized, centralized = accuracies(report)
    assert decentralized >= centralized


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
