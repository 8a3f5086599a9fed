"""Feedback without gold (leave-one-out peer grounding + contribution), with gold, with a rating, for failures."""

from __future__ import annotations

import math

import pytest

from rag.errors import RagError
from rag.signals import claim_variants, feedback_deltas, peer_grounding

TRUE = "Rollo was the leader of the Norse raiders in 911."
FALSE_A = "Hastein was the leader of the Norse raiders in 911."
FALSE_B = "Bjorn was the leader of the Norse raiders in 911."
OTHER = "The Duchy of Normandy was a great fief of medieval France."


def test_claim_variants_match_the_same_statement_with_another_entity():
    variants = claim_variants(TRUE, {1: [OTHER + " " + TRUE], 2: [FALSE_A], 3: [OTHER]})
    assert variants[1] == "rollo was leader of norse raiders in 911"
    assert variants[2] == "hastein was leader of norse raiders in 911"
    assert variants[3] is None


def test_peer_grounding_is_leave_one_out():
    variants = {1: "true", 2: "true", 3: "true", 4: "false a", 5: "false b", 6: None}
    weights = dict.fromkeys(variants, 0.5)
    assert peer_grounding(variants, weights) == {1: 1, 2: 1, 3: 1, 4: -1, 5: -1, 6: 0}
    # Without itself, a true source's peers split evenly (one true, two different falses): no evidence.
    assert peer_grounding({1: "true", 2: "true", 3: "false a", 4: "false b"}, dict.fromkeys(range(1, 5), 0.5)) == {
        1: 0, 2: 0, 3: -1, 4: -1,
    }  # fmt: skip
    # Two sources that disagree have no third opinion: no evidence either way.
    assert peer_grounding({1: "x", 2: "y"}, {1: 0.9, 2: 0.1}) == {1: -1, 2: -1}
    assert peer_grounding({1: "x", 2: "y", 3: "z"}, {1: 0.5, 2: 0.5, 3: 0.5}) == {1: 0, 2: 0, 3: 0}
    # Reliability weights decide between peers: the reliable source outvotes two unreliable ones.
    assert peer_grounding({1: "x", 2: "y", 3: "y", 4: "x"}, {1: 0.9, 2: 0.2, 3: 0.2, 4: 0.9})[2] == -1


def test_deltas_without_gold_reward_agreement_and_penalize_failures():
    evidence = {1: [TRUE], 2: [TRUE], 3: [TRUE], 4: [FALSE_A], 5: [OTHER]}
    deltas = feedback_deltas(TRUE, evidence, dict.fromkeys(evidence, 0.5), {}, failed=[6])
    assert {sid: (d.positive, d.negative) for sid, d in deltas.items()} == {
        1: (1, 0), 2: (1, 0), 3: (1, 0), 4: (0, 1), 5: (0, 0), 6: (0, 1),
    }  # fmt: skip


def test_contribution_credits_consensus_answers_and_blames_the_others():
    evidence = {1: [TRUE], 2: [TRUE], 3: [TRUE], 4: [FALSE_A]}
    weights = dict.fromkeys(evidence, 0.5)
    good = feedback_deltas(TRUE, evidence, weights, {1: 1.0})
    assert (good[1].positive, good[1].negative) == (1.5, 0)
    bad = feedback_deltas(FALSE_A, evidence, weights, {4: 1.0})
    assert (bad[4].positive, bad[4].negative) == (0, 1.5)


def test_gold_judges_each_source_directly():
    evidence = {1: [TRUE], 2: [FALSE_A], 3: [FALSE_B], 4: [OTHER]}
    deltas = feedback_deltas(
        FALSE_A, evidence, dict.fromkeys(evidence, 0.5), {}, judge=lambda s: "rollo" in s
    )
    assert {sid: (d.positive, d.negative) for sid, d in deltas.items()} == {1: (1, 0), 2: (0, 1), 3: (0, 1),
                                                                          4: (0, 0)}  # fmt: skip


def test_rating_goes_to_contributing_sources():
    evidence = {1: [TRUE], 2: [OTHER]}
    deltas = feedback_deltas(TRUE, evidence, {1: 0.5, 2: 0.5}, {1: 1.0, 2: 0.0}, rating=0.25)
    assert deltas[1].positive == pytest.approx(0.25 + 0.5) and deltas[1].negative == pytest.approx(0.75)
    assert (deltas[2].positive, deltas[2].negative) == (0, 0)


@pytest.mark.parametrize("kwargs", [{"rating": 1.5}, {"rating": math.nan}])
def test_bad_ratings(kwargs):
    with pytest.raises(RagError, match="rating"):
        feedback_deltas(TRUE, {1: [TRUE]}, {1: 0.5}, {}, **kwargs)


@pytest.mark.parametrize("value", [-0.1, 1.1, math.inf])
def test_bad_contributions(value):
    with pytest.raises(RagError, match="contribution"):
        feedback_deltas(TRUE, {1: [TRUE]}, {1: 0.5}, {1: value})


def test_a_source_cannot_answer_and_fail():
    with pytest.raises(RagError, match="both"):
        feedback_deltas(TRUE, {1: [TRUE]}, {1: 0.5}, {}, failed=[1])
