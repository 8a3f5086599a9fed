"""Beta posteriors, Bayes-UCB sampling without replacement, and the whitewashing guarantee off chain."""

from __future__ import annotations

import math
import random

import pytest

from backend.chain.source_registry import PRIOR_NEGATIVE, PRIOR_POSITIVE, SCALE, Reliability
from rag.errors import RagError
from rag.reliability import Posterior, sample_sources, upper_confidence

PRIOR = Posterior(PRIOR_POSITIVE / SCALE, PRIOR_NEGATIVE / SCALE)


def test_posterior_matches_the_facade():
    rel = Reliability(1, 21_000, 6_000)
    post = Posterior(21, 6)
    assert post.mean == pytest.approx(rel.mean) and post.std == pytest.approx(rel.std)


@pytest.mark.parametrize("alpha, beta", [(0, 1), (1, -1), (math.nan, 1), (1, math.inf)])
def test_posterior_rejects_bad_counts(alpha, beta):
    with pytest.raises(RagError):
        Posterior(alpha, beta)


def test_ucb_grows_with_rounds_and_shrinks_with_evidence():
    assert upper_confidence(PRIOR, 100) > upper_confidence(PRIOR, 2) > PRIOR.mean
    assert upper_confidence(Posterior(80, 20), 100) - 0.8 < upper_confidence(Posterior(8, 2), 100) - 0.8
    with pytest.raises(RagError):
        upper_confidence(PRIOR, 0)


def test_sampling_without_replacement_prefers_high_bounds():
    posteriors = {1: Posterior(50, 5), 2: Posterior(5, 50), 3: PRIOR, 4: Posterior(30, 30)}
    chosen = sample_sources(posteriors, 3, 10, random.Random(0))
    assert len(set(chosen)) == 3 and chosen[0] == 1 and 2 not in chosen
    assert sorted(sample_sources(posteriors, 10, 10, random.Random(0))) == [1, 2, 3, 4]


def test_equal_sources_share_traffic():
    posteriors = {i: PRIOR for i in range(1, 7)}
    rng = random.Random(1)
    firsts = {sample_sources(posteriors, 1, 5, rng)[0] for _ in range(60)}
    assert firsts == set(range(1, 7))


def test_sampling_errors():
    with pytest.raises(RagError):
        sample_sources({}, 1, 1, random.Random(0))
    with pytest.raises(RagError):
        sample_sources({1: PRIOR}, 0, 1, random.Random(0))


@pytest.mark.parametrize("t", [1, 10, 300, 10_000])
def test_whitewashing_a_new_identity_ranks_below_a_good_record(t):
    """A source with 20 good and 5 bad answers that re-registers gets the prior: lower mean and lower bound."""
    record = Posterior(PRIOR.alpha + 20, PRIOR.beta + 5)
    assert PRIOR.mean < record.mean
    assert upper_confidence(PRIOR, t) < upper_confidence(record, t)
    assert sample_sources({1: record, 2: PRIOR}, 1, t, random.Random(t)) == [1]
