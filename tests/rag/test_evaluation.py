"""The reliability experiment end to end on anvil, and the goals of issues 6 and 18 on shorter runs.

The full runs (300 users' queries, every scenario, seeds 0 and 1) are the bench's: `trustmarket rag eval
--scenario ...` (figures and commands in docs/benchmarks.md). Here each goal is checked on a run of 90 to 150
queries, seeds 0 and 1 in turn, after the default probation epoch of canaries (before it, a short run weighed the
learning phase, when every source is a stranger, more than the 300-query run, and needed tolerances). Embeddings
come from the project's cache (tests/rag/conftest.py): a query costs the chain, the signatures and the reader.
"""

from __future__ import annotations

import pytest
from rag_eval_helpers import CLEAN_SIX, ROOT_KEYS, TOL_SHORT, accuracies, run

from rag.errors import RagError
from rag.evaluation import EvalConfig, run_evaluation
from rag.metrics import METRIC_SENTENCE

pytestmark = [pytest.mark.chain, pytest.mark.slow]


def test_acceptance_independent_pollution(artifacts_path, embedder):
    """Six sources polluted 0..100% (seed 0, 100 queries and the clean rerun): reliability ranks the sources
    (Spearman >= 0.9), decentralized beats centralized by 20 points and is within 5 of its clean run (an honest
    source holds a clean copy), and clean, it is not more than 2 points below centralized."""
    report = run(artifacts_path, embedder, queries=100)
    assert set(report) >= ROOT_KEYS and report["metric"] == METRIC_SENTENCE and report["queries"] == 100
    assert [s["pollution"] for s in report["sources"]] == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert report["spearman"] >= 0.9
    decentralized, centralized = accuracies(report)
    assert decentralized - centralized >= 0.20
    clean = report["clean"]
    assert decentralized >= clean["decentralized"]["accuracy"] - 0.05 - TOL_SHORT
    assert clean["decentralized"]["accuracy"] >= clean["centralized"]["accuracy"] - 0.02
    assert report["gas"]["batches"] >= 9  # 100 queries in epochs of 10
    # 7,917 at 50 sources in the bench; here every record is full (the forgetting branch runs for each entry).
    assert report["gas"]["marginal_per_source"] <= 8500
    assert (
        report["probation_epochs"] == 1 and report["canaries"]["asked"] == 20
    )  # 10 in probation, 1 per epoch
    assert all(0 < s["reliability"] < 1 for s in report["sources"])


def test_colluders_serving_one_polluted_copy_do_not_win(artifacts_path, embedder):
    """4 of 6 sources serve one polluted copy (seed 1, 150 queries). Before #18: 5.3% against 62-64% centralized
    (the colluders got 98.9% of the slots). Goals: at least centralized, within 5 points of the clean upper bound
    less TOL_SHORT; the colluders' slots (2.3% at 150 queries with the probation epoch; 30.1% without it, the
    strangers' first epochs sampled alike) under 10%."""
    report = run(artifacts_path, embedder, queries=150, scenario="collude", seed=1, clean=False)
    decentralized, centralized = accuracies(report)
    assert decentralized >= centralized
    assert decentralized >= CLEAN_SIX - 0.05 - TOL_SHORT
    assert decentralized >= CLEAN_SIX - 0.05 - TOL_SHORT
    assert report["attacker_slot_share"] < 0.10
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
    with pytest.raises(RagError, match="probation_epochs"):
        run_evaluation(EvalConfig(probation_epochs=-1), artifacts_path=artifacts_path)
    no_questions = tmp_path / "nq.jsonl"
    no_questions.write_text('{"doc_id": "a", "context": "Text."}\n')
    with pytest.raises(RagError, match="no questions"):
        run_evaluation(EvalConfig(corpus=no_questions), artifacts_path=artifacts_path)
