"""Feedback: gold judges each source alone; without gold, independent witnesses (copies once, liars against)."""

from __future__ import annotations

import math

import pytest

from rag.errors import RagError
from rag.signals import GOLD_WEIGHT, MISS_WEIGHT, TAMPER_WEIGHT, claim_variants, feedback_deltas

TRUE = "Rollo was the leader of the Norse raiders in 911."
FALSE_A = "Hastein was the leader of the Norse raiders in 911."
FALSE_B = "Bjorn was the leader of the Norse raiders in 911."
OTHER = "The Duchy of Normandy was a great fief of medieval France."
T, FA, FB = (claim_variants(s, {0: [s]})[0] for s in (TRUE, FALSE_A, FALSE_B))


def as_tuples(deltas):
    return {sid: (round(d.positive, 6), round(d.negative, 6)) for sid, d in deltas.items()}


def test_claim_variants_match_the_same_statement_with_another_entity():
    variants = claim_variants(TRUE, {1: [OTHER + " " + TRUE], 2: [FALSE_A], 3: [OTHER]})
    assert variants[1] == "rollo was leader of norse raiders in 911"
    assert variants[2] == "hastein was leader of norse raiders in 911"
    assert variants[3] is None


def test_unknown_sources_give_no_evidence_either_way():
    """Everyone new (vote weight 0): agreement with strangers proves nothing, nor does disagreement."""
    variants = {1: T, 2: T, 3: FA, 4: FB, 5: None}
    deltas = feedback_deltas(TRUE, variants, dict.fromkeys(variants, 0.0), {})
    assert as_tuples(deltas) == dict.fromkeys(variants, (0.0, 0.0))


def test_trusted_witnesses_reward_agreement_and_penalize_the_rest():
    variants = {1: T, 2: T, 3: FA, 4: None}
    weights = {1: 2.0, 2: 2.0, 3: 2.0, 4: 2.0}
    deltas = as_tuples(feedback_deltas(TRUE, variants, weights, {}, failed=[6]))
    p_true_for_1 = 1 / (1 + math.exp(-(2.0 - 2.0)))  # source 2 backs it, source 3 the rival: even
    assert deltas[1] == (0.0, 0.0) == (round(max(0, 2 * p_true_for_1 - 1), 6), 0.0)
    p_false = 1 / (1 + math.exp(-(0 - 4.0)))  # the two others both back the rival
    assert deltas[3] == (0.0, round(1 - 2 * p_false, 6))
    assert deltas[4] == (0.0, 0.0) and deltas[6] == (0.0, 1.0)


def test_colluding_copies_cannot_outvote_an_honest_witness():
    """Four copies of one polluted corpus (one group) against one honest source with a good record."""
    variants = {1: T, 2: FA, 3: FA, 4: FA, 5: FA}
    weights = {1: 1.5, 2: 1.5, 3: 1.5, 4: 1.5, 5: 1.5}
    by_source = as_tuples(feedback_deltas(TRUE, variants, weights, {}))
    assert by_source[1][1] > 0.99  # counted per source the honest one loses badly
    copies = {1: 1, 2: 2, 3: 2, 4: 2, 5: 2}
    grouped = as_tuples(feedback_deltas(TRUE, variants, weights, {}, groups=copies))
    # One witness each: the honest source's penalty is bounded by one rival's weight, the copies' likewise, and
    # copies never vouch for one another.
    assert grouped[1] == grouped[2] == grouped[5] == (0.0, round(1 - 2 / (1 + math.exp(1.5)), 6))
    # Once the canaries have shown the copies wrong (negative weight), their claim counts against itself.
    weights = {1: 1.5, 2: -1.5, 3: -1.5, 4: -1.5, 5: -1.5}
    learned = as_tuples(feedback_deltas(TRUE, variants, weights, {}, groups=copies))
    assert learned[1][0] > 0.6 and learned[2][1] > 0.6


def test_contribution_credits_probable_answers_and_blames_improbable_ones():
    variants = {1: T, 2: T, 3: T, 4: FA}
    weights = dict.fromkeys(variants, 1.0)
    good = feedback_deltas(TRUE, variants, weights, {1: 1.0})
    bad = feedback_deltas(FALSE_A, variants, weights, {4: 1.0})
    assert good[1].positive > feedback_deltas(TRUE, variants, weights, {})[1].positive
    assert bad[4].negative > feedback_deltas(FALSE_A, variants, weights, {})[4].negative


def test_gold_judges_each_source_on_its_own_answer():
    variants = {1: T, 2: FA, 3: FB, 4: None}
    judge = lambda s: "rollo" in s.lower()  # noqa: E731
    deltas = feedback_deltas(FALSE_A, variants, dict.fromkeys(variants, 5.0), {}, judge=judge)
    assert as_tuples(deltas) == {1: (GOLD_WEIGHT, 0), 2: (0, MISS_WEIGHT), 3: (0, MISS_WEIGHT), 4: (0, 0)}
    # With own answers (what each source's documents alone answer), those are judged instead of variants.
    own = {1: FALSE_B, 2: TRUE, 3: OTHER, 4: TRUE}
    deltas = feedback_deltas(FALSE_A, variants, {}, {}, judge=judge, own_answers=own)
    assert as_tuples(deltas) == {
        1: (0, MISS_WEIGHT),
        2: (GOLD_WEIGHT, 0),
        3: (0, MISS_WEIGHT),
        4: (GOLD_WEIGHT, 0),
    }
    # A source caught serving a tampered copy of the reference passage is shown wrong, whatever it answered.
    deltas = feedback_deltas(TRUE, variants, {}, {}, judge=judge, own_answers=own, tampered={2})
    assert as_tuples(deltas)[2] == (0, TAMPER_WEIGHT)


def test_rating_goes_to_contributing_sources():
    variants = {1: T, 2: None}
    deltas = feedback_deltas(TRUE, variants, {}, {1: 1.0, 2: 0.0}, rating=0.25)
    assert deltas[1].positive == pytest.approx(0.25) and deltas[1].negative == pytest.approx(0.75)
    assert (deltas[2].positive, deltas[2].negative) == (0, 0)


@pytest.mark.parametrize("kwargs", [{"rating": 1.5}, {"rating": math.nan}])
def test_bad_ratings(kwargs):
    with pytest.raises(RagError, match="rating"):
        feedback_deltas(TRUE, {1: T}, {1: 0.5}, {}, **kwargs)


@pytest.mark.parametrize("value", [-0.1, 1.1, math.inf])
def test_bad_contributions(value):
    with pytest.raises(RagError, match="contribution"):
        feedback_deltas(TRUE, {1: T}, {1: 0.5}, {1: value})


def test_bad_weights_and_a_source_that_answers_and_fails():
    with pytest.raises(RagError, match="vote weight"):
        feedback_deltas(TRUE, {1: T}, {1: math.nan}, {})
    with pytest.raises(RagError, match="both"):
        feedback_deltas(TRUE, {1: T}, {1: 0.5}, {}, failed=[1])
