"""The issue's goals on a small federation, with the defaults `project create` picks: no attacker paid, no
backdoor kept, accuracy kept, honest trainers not flagged, and honest pay that follows the data, not the noise.

A reduced suite (12 trainers of which 3 collude, 6 rounds, one seed; `bench/attacks.py` runs the whole suite
with 20 trainers, 3 seeds and 20 rounds): one attack of each kind, omniscient or not, jittered or not.
"""

from __future__ import annotations

import statistics

import pytest

from aggregator.attacks import AttackSpec
from aggregator.data import load_digits_data
from aggregator.simulation import simulate

TRAINERS, COLLUDERS, ROUNDS, SEED = 12, 3, 6, 0
REDUCED_SUITE = [
    AttackSpec("alie", COLLUDERS),
    AttackSpec("alie", COLLUDERS, jitter=0.2),
    AttackSpec("ipm", COLLUDERS, knowledge="own", jitter=0.2, params={"eps": 0.5}),
    AttackSpec("min_max", COLLUDERS, jitter=0.2),
    AttackSpec("mimic", COLLUDERS),
    AttackSpec("label_flip", COLLUDERS),
    AttackSpec("scaling", COLLUDERS),
    AttackSpec("backdoor", COLLUDERS, jitter=0.2, params={"boost": "norm"}),
]


@pytest.fixture(scope="module")
def data():
    return load_digits_data(SEED)


@pytest.fixture(scope="module")
def baseline(data):
    return simulate(TRAINERS, rounds=ROUNDS, seed=SEED, alpha=0.5, data=data)


@pytest.mark.slow
@pytest.mark.parametrize("spec", REDUCED_SUITE, ids=lambda s: s.label)
def test_no_attacker_paid_no_backdoor_kept(spec, data, baseline):
    run = simulate(TRAINERS - COLLUDERS, rounds=ROUNDS, seed=SEED, alpha=0.5, attack=spec, data=data)
    assert run.test_accuracy >= baseline.test_accuracy - 0.03
    # A backdoor's colluders look honest until their shared component shows (about round 4 of 6 with three
    # colluders): at 20 trainers and 20 rounds (bench/attacks.py) the whole suite stays under 5%.
    assert run.attackers_share <= (0.10 if spec.name == "backdoor" else 0.05)
    if spec.name == "backdoor":
        assert run.backdoor_success is not None and run.backdoor_success <= 0.10
    flagged = run.trainer_rounds(run.honest, "flagged")
    assert flagged <= 0.02 * len(run.honest) * ROUNDS


@pytest.mark.slow
def test_honest_shares_on_equal_iid_shards_vary_by_at_most_a_fifth(data):
    run = simulate(10, rounds=ROUNDS, seed=SEED, alpha=None, data=data)
    assert len(set(run.shard_sizes.values())) <= 2 and set(run.label_coverage.values()) == {10}
    shares = [run.mean_scores[t] for t in run.honest]
    assert statistics.pstdev(shares) / statistics.fmean(shares) <= 0.2
    # Each round says how sure every score is.
    for outcome in run.outcomes:
        for entry in outcome.report["trainers"].values():
            low, high = entry["score_interval"]
            assert low <= entry["score"] <= high and entry["score_confidence"]


@pytest.mark.slow
def test_the_baseline_flags_no_honest_trainer(baseline):
    assert baseline.trainer_rounds(baseline.honest, "flagged") == 0
    assert baseline.attackers_share == 0.0 and baseline.honest_share == pytest.approx(1.0)
