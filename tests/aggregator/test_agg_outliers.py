"""Outlier detection: each attack is flagged with its reason, honest trainers are not, garbage never crashes."""

from __future__ import annotations

import json

import pytest
import torch

from aggregator.errors import AggregatorError
from aggregator.history import TrainerHistory, history_from_report, update_history
from aggregator.outliers import REASONS, OutlierConfig, detect_outliers, flag_outliers

HONEST = [f"honest-{i}" for i in range(6)]


def reasons(flags):
    out = {}
    for f in flags:
        out.setdefault(f.trainer, []).append(f.reason)
    return out


@pytest.mark.parametrize("center", ["geometric_median", "coordinate_median"])
def test_honest_round_raises_no_flag(digits_round, center):
    assert flag_outliers(digits_round.honest, HONEST, config=OutlierConfig(center=center)) == []


@pytest.mark.parametrize("center", ["geometric_median", "coordinate_median"])
def test_each_attack_is_flagged_with_its_reason(digits_round, center):
    h = digits_round.honest
    attackers = {
        "scaled": 10.0 * h.mean(dim=0),
        "sign-flip-x5": -5.0 * h[1],
        "free-rider": torch.zeros_like(h[0]),
        "sybil-a": digits_round.label_flipped,
        "sybil-b": digits_round.label_flipped.clone(),
        "nan": torch.full_like(h[0], float("nan")),
        "short": h[0][:-3],
        "ints": torch.zeros(h.shape[1], dtype=torch.int64),
        "huge": torch.full_like(h[0], 1e20),
        "not-a-tensor": "garbage",
    }
    ids = HONEST + list(attackers)
    rows = [*h, *attackers.values()]
    config = OutlierConfig(center=center, sybil_cosine=0.99)
    report = detect_outliers(rows, ids, config=config, expected_dim=h.shape[1])
    got = reasons(report.flags)
    assert not set(got) & set(HONEST)
    assert got["scaled"] == ["distance_outlier"] and got["sign-flip-x5"] == ["distance_outlier"]
    assert got["free-rider"] == ["free_rider"]
    assert got["sybil-a"] == got["sybil-b"] == ["sybil_cluster"]
    for bad in ("nan", "short", "ints", "huge", "not-a-tensor"):
        assert got[bad] == ["invalid"]
    details = {(f.trainer, f.reason): f.detail for f in report.flags}
    assert "NaN" in details["nan", "invalid"]["error"]
    assert "shape" in details["short", "invalid"]["error"]
    assert "float" in details["ints", "invalid"]["error"]
    assert "norm" in details["huge", "invalid"]["error"]
    assert details["sybil-a", "sybil_cluster"]["cluster"] == ["sybil-a", "sybil-b"]
    assert details["scaled", "distance_outlier"]["z_score"] > 3.5
    assert set(report.stats) == set(HONEST) | {"scaled", "sign-flip-x5", "free-rider", "sybil-a", "sybil-b"}
    json.dumps(report.stats)  # the figures go into the report as they are


def test_flags_come_in_trainer_order_then_reason_order(digits_round):
    h = digits_round.honest
    ids = ["z", "y", *HONEST, "x"]
    rows = [torch.zeros_like(h[0]), torch.full_like(h[0], float("inf")), *h, 10 * h.mean(dim=0)]
    flags = flag_outliers(rows, ids)
    assert [f.trainer for f in flags] == ["z", "y", "x"]
    assert all(f.reason in REASONS for f in flags)


def test_a_noise_trainer_is_inconsistent_across_rounds(digits_round):
    h = digits_round.honest
    gen = torch.Generator().manual_seed(0)
    scale = float(h.norm(dim=1).median()) / h.shape[1] ** 0.5
    ids = [*HONEST, "noise"]
    history: dict[str, TrainerHistory] = {}
    # Round 1 builds history; in round 2 honest directions persist (same data), the noise does not.
    for round_ in range(2):
        noise = scale * torch.randn(h.shape[1], generator=gen)
        honest_now = h * (1.0 - 0.2 * round_)
        report = detect_outliers([*honest_now, noise], ids, history)
        if round_ == 0:
            assert report.flags == []
        history = update_history(history, report.sketches)
    got = reasons(report.flags)
    assert set(got) == {"noise"} and "inconsistent_direction" in got["noise"]
    assert all(report.stats[t]["self_consistency"] > 0.9 for t in HONEST)


def test_a_copy_of_an_honest_update_flags_both_even_rescaled_when_the_sybil_check_is_on(digits_round):
    """Near-duplicates are judged by cosine, as FoolsGold does: the copier cannot be told from the copied, which is
    why the check is off by default (the `near_copies` defense counts copies once instead)."""
    h = digits_round.honest
    rows, ids = [*h, 3.0 * h[4]], [*HONEST, "copycat"]
    got = reasons(flag_outliers(rows, ids, config=OutlierConfig(sybil_cosine=0.99)))
    assert got == {"honest-4": ["sybil_cluster"], "copycat": ["sybil_cluster"]}
    assert reasons(flag_outliers(rows, ids)) == {}


def test_history_round_trips_through_the_report(digits_round):
    report = detect_outliers(digits_round.honest, HONEST)
    history = update_history({}, report.sketches)
    assert all(h.rounds == 1 and len(h.direction) == 256 for h in history.values())
    stored = json.loads(json.dumps({t: h.to_dict() for t, h in history.items()}))
    assert history_from_report(stored) == history
    assert history_from_report({"version": 1, "history": stored, "trainers": {}}) == history
    again = update_history(history, report.sketches, decay=0.5)
    assert again[HONEST[0]].rounds == 2
    with pytest.raises(AggregatorError):
        update_history(history, report.sketches, decay=1.0)
    for bad in ({"rounds": 1}, {"rounds": -1, "direction": [1.0]}, {"rounds": 1, "direction": []}):
        with pytest.raises(AggregatorError):
            TrainerHistory.from_dict(bad)


def test_sketches_do_not_depend_on_the_chunk_size(digits_round):
    a = detect_outliers(digits_round.honest, HONEST, config=OutlierConfig(chunk=100))
    b = detect_outliers(digits_round.honest, HONEST, config=OutlierConfig(chunk=4096))
    assert all(torch.equal(a.sketches[t], b.sketches[t]) for t in HONEST)


def test_a_history_of_another_sketch_size_is_refused(digits_round):
    history = {HONEST[0]: TrainerHistory(2, (1.0, 0.0))}
    with pytest.raises(AggregatorError, match="dims"):
        detect_outliers(digits_round.honest, HONEST, history)


def test_too_few_rows_for_mad_skip_the_distance_check(digits_round):
    h = digits_round.honest
    assert flag_outliers([h[0], h[1], 50 * h[2]], ["a", "b", "c"]) == []


def test_bad_calls_are_refused(digits_round):
    h = digits_round.honest
    with pytest.raises(AggregatorError):
        flag_outliers(h, HONEST[:5])
    with pytest.raises(AggregatorError):
        flag_outliers(h, ["same"] * 6)
    assert [f.reason for f in flag_outliers([float("nan")], ["x"])] == ["invalid"]


@pytest.mark.parametrize(
    "bad",
    [
        {"center": "mean"},
        {"mad_threshold": 0.0},
        {"sybil_cosine": 1.5},
        {"free_rider_ratio": 1.0},
        {"min_rows_for_mad": 2},
        {"history_decay": 1.0},
        {"sketch_dim": 0},
        {"max_norm": float("inf")},
    ],
)
def test_bad_settings_are_refused(bad):
    with pytest.raises(AggregatorError):
        OutlierConfig(**bad)
