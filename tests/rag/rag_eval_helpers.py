"""What the evaluation tests share: the clean upper bounds, the tolerances, one run, its accuracies."""

from __future__ import annotations

from rag.evaluation import EvalConfig, run_evaluation

ROOT_KEYS = {"decentralized", "centralized", "sources", "gas", "metric", "queries", "canaries", "scenario"}

# Clean upper bounds (docs/benchmarks.md): the scenario with no pollution, decentralized, 300 queries, seed 0.
CLEAN_SIX = 0.793  # six sources (independent; the collusion scenarios hold the same six copies)
CLEAN_SYBIL = 0.793  # twelve sources
# With the probation epoch the short runs measured (2026-12-02): independent 83.0% / 52.0% at 100 queries (clean
# 83.0%), collude 78.7% at 150 (seed 1), sybil 81.1% at 90, the sleeper's run 77.5% at 111 (seed 1): 3.2 to 7.0
# points above the bound less 5. TOL_SHORT covers float differences between machines (the embeddings are
# computed where the suite runs), not the learning phase any more.
TOL_SHORT = 0.02


def run(artifacts_path, embedder, **config):
    return run_evaluation(EvalConfig(**config), artifacts_path=artifacts_path, embedder=embedder)


def accuracies(report) -> tuple[float, float]:
    print({k: report.get(k) for k in ("decentralized", "centralized", "attacker_slot_share", "spearman", "sleeper",
                                      "canaries", "clean")})  # shown on failure (and with -rP)  # fmt: skip
    return report["decentralized"]["accuracy"], report["centralized"]["accuracy"]
