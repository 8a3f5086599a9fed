"""What the evaluation tests share: the clean upper bounds, the tolerances, one run, its accuracies."""

from __future__ import annotations

from rag.evaluation import EvalConfig, run_evaluation

ROOT_KEYS = {"decentralized", "centralized", "sources", "gas", "metric", "queries", "canaries", "scenario"}

# Clean upper bounds (docs/benchmarks.md): the scenario with no pollution, decentralized, 300 queries, seed 0.
CLEAN_SIX = 0.793  # six sources (independent; the collusion scenarios hold the same six copies)
CLEAN_SYBIL = 0.793  # twelve sources
# At 150 queries the runs measured: independent +24.7 points (seed 0), collude 74.0% (seed 1, 0.3 below the bound
# less 5), sybil 73.3% (seed 0, 1.0 below); at 100 the first epoch's strangers weigh a third more again.
TOL_INDEPENDENT = 0.03
TOL_SHORT = 0.04


def run(artifacts_path, embedder, **config):
    return run_evaluation(EvalConfig(**config), artifacts_path=artifacts_path, embedder=embedder)


def accuracies(report) -> tuple[float, float]:
    print({k: report.get(k) for k in ("decentralized", "centralized", "attacker_slot_share", "spearman", "sleeper",
                                      "canaries", "clean")})  # shown on failure (and with -rP)  # fmt: skip
    return report["decentralized"]["accuracy"], report["centralized"]["accuracy"]
