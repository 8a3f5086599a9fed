"""The attacks of issue 18 on shorter runs: one operator's seven copies and a sleeper (see test_evaluation.py for
the method, the tolerances and the colluders; a file of its own so the two halves run on separate workers)."""

from __future__ import annotations

import pytest
from rag_eval_helpers import CLEAN_SIX, CLEAN_SYBIL, TOL_SHORT, accuracies, run

pytestmark = [pytest.mark.chain, pytest.mark.slow]


def test_one_operator_with_seven_copies_is_one_witness(artifacts_path, embedder):
    """Sybil: one wallet registers 7 copies of a polluted corpus beside 5 sources polluted 0..80% (seed 0, 90
    queries). Before #18: 4.7% against 49.3%, the attacker got 98.8% of the slots. Goals: at least centralized,
    within 5 points of the clean upper bound less TOL_SHORT; the copies' slots (9.5% at 90 queries) under 20%;
    its seven bonds cost 28 minimum bonds."""
    report = run(artifacts_path, embedder, queries=90, scenario="sybil", clean=False)
    decentralized, centralized = accuracies(report)
    assert decentralized >= centralized
    assert decentralized >= CLEAN_SIX - 0.05 - TOL_SHORT
    assert decentralized >= CLEAN_SYBIL - 0.05 - TOL_SHORT
    assert report["attacker_slot_share"] < 0.2
    sybils = [s for s in report["sources"] if s["attacker"]]
    assert sum(s["bond"] for s in sybils) == 28 * sybils[0]["bond"]
    clean = next(s for s in report["sources"] if s["pollution"] == 0.0)
    assert clean["reliability"] > max(s["reliability"] for s in sybils)


def test_a_sleeper_falls_below_the_median_within_50_queries(artifacts_path, embedder):
    """A seventh source serves clean documents, builds a record, then turns (seed 1, at query 61 of 111): on chain
    it is below the median source within 50 queries of turning (the goal itself: no tolerance; measured 40 here),
    and the answers stay within 5 points of the clean bound less TOL_SHORT (77.5%). Turning at 31 it has no record
    to lose yet."""
    report = run(artifacts_path, embedder, queries=111, scenario="sleeper", seed=1, turn_at=61, clean=False)
    sleeper = report["sleeper"]
    assert sleeper["turned_at"] == 61 and sleeper["reliability_at_turn"] > 0.5
    assert sleeper["queries_to_below_median"] is not None and sleeper["queries_to_below_median"] <= 50
    decentralized, centralized = accuracies(report)
    assert decentralized >= centralized
    assert decentralized >= CLEAN_SIX - 0.05 - TOL_SHORT
