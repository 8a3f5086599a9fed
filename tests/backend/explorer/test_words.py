"""Flags in words: every reason the outlier detector writes, a sentence the report already carries, and reasons
or details of a shape nobody wrote yet, all read as sentences with their figures, never as keys."""

from __future__ import annotations

import pytest

from backend.api.explorer.words import defense_words, duration, ether, flag_sentence, number, reason_title

CONFIG = {
    "center": "geometric_median",
    "mad_threshold": 3.5,
    "sybil_cosine": 0.99,
    "free_rider_ratio": 0.05,
    "consistency_threshold": 0.2,
}


def test_a_distance_outlier_reads_as_so_many_times_the_median_distance():
    flag = {
        "reason": "distance_outlier",
        "detail": {"distance": 14.0, "median": 1.0, "scale": 0.5, "z_score": 26.0},
    }
    text = flag_sentence(flag, CONFIG)
    assert text.startswith("update 14x the median distance from the geometric median")
    assert "robust z-score 26" in text and "limit of 3.5" in text


def test_free_riders_sybils_direction_and_invalid_updates_have_their_own_sentences():
    rider = flag_sentence(
        {"reason": "free_rider", "detail": {"norm": 0.01, "median_norm": 2.0, "ratio": 0.05}}
    )
    assert rider.startswith("update 0.005x the median norm") and "0.05x" in rider
    zero = flag_sentence({"reason": "free_rider", "detail": {"norm": 0.0, "median_norm": 2.0}}, CONFIG)
    assert zero.startswith("update all zeros")
    sybil = flag_sentence(
        {"reason": "sybil_cluster", "detail": {"cluster": ["0xa", "0xb", "0xc"], "min_cosine": 0.99998}},
        CONFIG,
    )
    assert "nearly identical to 2 other updates" in sybil and "0.99998" in sybil and "0.99000" in sybil
    turned = flag_sentence(
        {"reason": "inconsistent_direction", "detail": {"cosine": -0.41, "threshold": 0.2, "rounds": 2}}
    )
    assert (
        turned == "update points away from its own direction over 2 earlier rounds (cosine -0.41, below 0.2)"
    )
    nan = flag_sentence({"reason": "invalid", "detail": {"error": "contains NaN or Inf"}})
    assert nan == "the update contains NaN or infinite values"
    missing = flag_sentence(
        {"reason": "invalid", "detail": {"error": "ContentNotFound: Qmabc is not stored"}}
    )
    assert missing.startswith("the update is not in the content store")
    replay = flag_sentence(
        {"reason": "invalid", "detail": {"error": "CodecError: update metadata round='0', expected '1'"}}
    )
    assert replay == "the update was made for round 0, not 1: a replay of another round's update"


def test_a_sentence_in_the_report_wins_and_unknown_reasons_still_read_as_words():
    assert flag_sentence({"reason": "free_rider", "message": "sent the model back"}) == "sent the model back"
    text = flag_sentence({"reason": "label_flip_suspect", "detail": {"loss_gain": 0.25, "class_pairs": 3}})
    assert text == "label flip suspect (class pairs 3, loss gain 0.25)"
    assert reason_title("label_flip_suspect") == "label flip suspect"
    assert reason_title("sybil_cluster") == "near-copy of other updates"


def test_a_copied_update_of_a_sealed_round_reads_as_a_copy():
    flag = {"reason": "copied_update", "detail": {"error": "the update names trainer 0xAb, not 0xCd"}}
    assert reason_title("copied_update") == "copied another trainer's update"
    assert flag_sentence(flag).startswith("the revealed update was made by another trainer")
    assert flag_sentence(flag).endswith("(the update names trainer 0xAb, not 0xCd)")


@pytest.mark.parametrize(
    "flag",
    [
        {"reason": "distance_outlier", "detail": "not a mapping"},
        {"reason": "distance_outlier", "detail": {"distance": "far", "median": None}},
        {"reason": "sybil_cluster", "detail": {"cluster": None}},
        {},
    ],
)
def test_malformed_flags_never_raise_and_never_show_a_key(flag):
    text = flag_sentence(flag, CONFIG)
    assert text and "_" not in text


def test_figures_read_plainly():
    assert (
        number(0.123456) == "0.123"
        and number(12345.678) == "12,346"
        and number(2e-5) == "2.00e-05"
        and number(float("nan")) == "not a number"
    )
    assert ether(10**18 // 3) == "0.3333 ETH" and ether(None) == "-"
    assert duration(3725) == "1 h 02 min" and duration(59) == "59 s" and duration(-5) == "0 s"
    assert defense_words(CONFIG)[0] == "free riders below 0.05x the median norm"
