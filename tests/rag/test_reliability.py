"""Beta posteriors, vote weights, Thompson sampling with groups and a floor, and whitewashing off chain."""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest

from backend.chain.source_registry import PRIOR_NEGATIVE, PRIOR_POSITIVE, SCALE, Reliability
from rag.errors import RagError
from rag.reliability import FALSE_VALUES, Posterior, vote_weight
from rag.sampling import sample_sources

PRIOR = Posterior(PRIOR_POSITIVE / SCALE, PRIOR_NEGATIVE / SCALE)


def test_posterior_matches_the_facade():
    rel = Reliability(1, 21_000, 6_000)
    post = Posterior(21, 6)
    assert post.mean == pytest.approx(rel.mean) and post.std == pytest.approx(rel.std)
    assert post.evidence == pytest.approx(rel.observations)


@pytest.mark.parametrize("alpha, beta", [(0, 1), (1, -1), (math.nan, 1), (1, math.inf)])
def test_posterior_rejects_bad_counts(alpha, beta):
    with pytest.raises(RagError):
        Posterior(alpha, beta)


def test_vote_weight_is_accu_log_odds_scaled_by_evidence():
    assert vote_weight(PRIOR) == 0.0  # a newcomer says nothing, for or against, whatever its prior mean
    good, bad = Posterior(36, 4), Posterior(1, 39)
    assert vote_weight(good) == pytest.approx(math.log(FALSE_VALUES * 39 / 4) * 35 / 40)
    assert vote_weight(bad) < 0  # a known liar (accuracy below 1 / (n + 1)) counts against what it states
    # A source right 60% of the time is still a witness for what it states: independent wrong witnesses scatter.
    assert vote_weight(Posterior(24, 16)) > 1.0
    assert 0 < vote_weight(Posterior(9, 1)) < vote_weight(good)  # the same mean on less evidence weighs less
    # A young source with a good start (two right, one half-miss) is not a liar, though its mean is below 1/2.
    assert Posterior(3, 4.5).mean < 0.5 and vote_weight(Posterior(3, 4.5)) > 0
    # Clipped at both ends.
    assert vote_weight(Posterior(1000, 0.001)) == pytest.approx(
        math.log(FALSE_VALUES * 0.98 / 0.02), rel=0.01
    )
    assert vote_weight(Posterior(0.001, 1000)) == pytest.approx(
        math.log(FALSE_VALUES * 0.02 / 0.98), rel=0.01
    )


def test_thompson_sampling_prefers_good_records_but_keeps_exploring():
    posteriors = {1: Posterior(36, 4), 2: Posterior(30, 10), 3: Posterior(20, 20), 4: Posterior(2, 38)}
    rng = random.Random(0)
    counts = Counter(sid for _ in range(500) for sid in sample_sources(posteriors, 2, rng, floor_slots=0))
    assert counts[1] > counts[2] > counts[3] > counts[4]
    assert counts[3] > 0  # no lock-in: the middling source is still asked now and then
    # A known liar is not asked just because a slot is free (its draw is below 1 / (n + 1)); a middling one is.
    assert all(4 not in sample_sources(posteriors, 9, rng, floor_slots=0) for _ in range(20))
    assert sum(3 in sample_sources(posteriors, 1, rng, floor_slots=0) for _ in range(200)) < 20
    assert all(3 in sample_sources(posteriors, 9, rng, floor_slots=0) for _ in range(20))
    assert len(sample_sources(posteriors, 9, rng, floor_slots=0, cutoff=0.0)) == 4


def test_one_source_per_group_while_groups_remain():
    """Seven copies (one group) cannot take more than one slot while other groups are left."""
    posteriors = {i: Posterior(36, 4) for i in range(1, 8)} | {8: Posterior(20, 20), 9: Posterior(15, 25)}
    groups = {i: 1 for i in range(1, 8)} | {8: 8, 9: 9}
    for seed in range(20):
        chosen = sample_sources(posteriors, 3, random.Random(seed), groups=groups, floor_slots=0, cutoff=0.0)
        assert sorted(groups[s] for s in chosen) == [1, 8, 9]
    # Fewer groups than slots: the other members fill the rest.
    assert len(sample_sources(posteriors, 5, random.Random(0), groups=groups, cutoff=0.0)) == 5


def test_floor_gives_an_under_observed_source_a_slot():
    posteriors = {1: Posterior(36, 4), 2: Posterior(35, 5), 3: Posterior(34, 6), 4: PRIOR}
    rng = random.Random(3)
    assert all(4 in sample_sources(posteriors, 2, rng, floor_slots=1) for _ in range(50))
    assert sum(4 in sample_sources(posteriors, 2, rng, floor_slots=0) for _ in range(200)) < 10


def test_a_group_shares_one_record_for_the_floor():
    """Seven copies of one operator: once one is measured, the others get no floor slot of their own."""
    posteriors = {1: Posterior(36, 4), 2: Posterior(35, 5), 3: Posterior(2, 14)} | {
        i: PRIOR for i in range(4, 10)
    }
    groups = {1: 1, 2: 2} | {i: 3 for i in range(3, 10)}
    rng = random.Random(5)
    asked = Counter(s for _ in range(200) for s in sample_sources(posteriors, 2, rng, groups=groups))
    assert sum(asked[i] for i in range(3, 10)) < 20
    assert sum(3 in sample_sources(posteriors, 2, rng) for _ in range(50)) == 0  # no groups: 4..9 are new
    assert all(set(sample_sources(posteriors, 2, rng)) & set(range(4, 10)) for _ in range(50))


def test_sampling_errors():
    with pytest.raises(RagError):
        sample_sources({}, 1, random.Random(0))
    with pytest.raises(RagError):
        sample_sources({1: PRIOR}, 0, random.Random(0))
    with pytest.raises(RagError):
        sample_sources({1: PRIOR}, 1, random.Random(0), floor_slots=-1)


@pytest.mark.parametrize(
    "record", [(21, 6), (70, 30), (36, 4)], ids=["20-good-5-bad", "mean-0.7", "mean-0.9"]
)
def test_whitewashing_a_new_identity_is_asked_less_than_a_good_record(record):
    """F-7 (off chain): under Bayes-UCB a fresh identity's bound (0.822 at t=1000) beat an honest record of mean
    0.7 (0.771); drawn from its pessimistic prior it is asked far less often than the record it shed."""
    posteriors = {1: Posterior(*record), 2: PRIOR}
    rng = random.Random(7)
    firsts = Counter(sample_sources(posteriors, 1, rng, floor_slots=0)[0] for _ in range(2000))
    assert firsts[2] < 0.05 * firsts[1]
    assert vote_weight(PRIOR) < vote_weight(Posterior(*record))
