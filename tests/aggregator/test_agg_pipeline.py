"""run_round: determinism, fixed-point scores, bad submissions flagged, too few updates refused."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
from safetensors.torch import load

from aggregator.contribution import ContributionConfig
from aggregator.errors import AggregatorError, InsufficientUpdates
from aggregator.evaluation import builtin_evaluator
from aggregator.models import unflatten_state
from aggregator.pipeline import RoundInputs, run_round
from aggregator.report import SCORE_UNIT, canonical_json, fixed_point_scores, result_digest

HONEST = [f"0x{i:040x}" for i in range(1, 7)]


@pytest.fixture
def inputs(digits_round):
    updates = {
        t: unflatten_state(d, digits_round.global_state)
        for t, d in zip(HONEST, digits_round.honest, strict=True)
    }
    updates["0x" + "f" * 40] = unflatten_state(-5.0 * digits_round.honest[0], digits_round.global_state)
    return RoundInputs(
        evaluator=builtin_evaluator(
            "digits_mlp", digits_round.data.validation.X, digits_round.data.validation.y
        ),
        global_state=digits_round.global_state,
        updates=updates,
        rule="multi_krum",
        rule_params={"f": 1},
        contribution=ContributionConfig(max_permutations=20),
        round_index=3,
        context={"project": 7},
    )


def test_a_round_is_bit_identical_when_repeated(inputs):
    a, b = run_round(inputs), run_round(inputs)
    assert a.model_bytes == b.model_bytes and a.report_bytes == b.report_bytes
    assert a.result_digest == b.result_digest and a.scores_fixed == b.scores_fixed
    assert len(a.result_digest) == 64


def test_outcome_contents(inputs):
    out = run_round(inputs)
    attacker = "0x" + "f" * 40
    assert out.flagged == [attacker]
    assert sum(out.scores_fixed.values()) == SCORE_UNIT and out.scores_fixed[attacker] == 0
    assert all(0 <= v < 2**64 for v in out.scores_fixed.values())
    assert sum(out.scores.values()) == pytest.approx(1.0, abs=1e-12)
    assert out.metrics["accuracy_after"] > out.metrics["accuracy_before"]
    assert out.hyperparams.round == 1
    state = load(out.model_bytes)
    assert all(torch.equal(state[k], out.global_state[k]) for k in state)
    report = json.loads(out.report_bytes)
    assert canonical_json(report) == out.report_bytes  # canonical: re-encoding changes nothing
    assert report["round"] == 3 and report["context"] == {"project": 7}
    assert report["trainers"][attacker]["status"] == "flagged"
    assert report["trainers"][attacker]["flags"][0]["reason"] == "distance_outlier"
    assert report["new_model_sha256"] == out.model_sha256
    assert set(report["history"]) == set(out.scores)
    expected = result_digest(out.model_sha256, out.scores_fixed, out.flagged, out.report_sha256)
    assert out.result_digest == expected


def test_order_of_the_updates_mapping_does_not_matter(inputs):
    shuffled = replace(inputs, updates=dict(reversed(list(inputs.updates.items()))))
    assert run_round(shuffled).result_digest == run_round(inputs).result_digest


def test_any_change_in_the_inputs_changes_the_digest(inputs):
    base = run_round(inputs).result_digest
    assert run_round(replace(inputs, round_index=4)).result_digest != base
    assert (
        run_round(replace(inputs, contribution=ContributionConfig(max_permutations=20, seed=1))).result_digest
        != base
    )


def test_local_models_give_the_same_result_as_deltas(inputs, digits_round):
    g = digits_round.global_state
    models = {t: {k: g[k] + d[k] for k in g} for t, d in inputs.updates.items()}
    as_models = run_round(replace(inputs, updates=models, update_kind="model"))
    as_deltas = run_round(inputs)
    assert as_models.flagged == as_deltas.flagged
    assert max(abs(as_models.scores[t] - as_deltas.scores[t]) for t in as_models.scores) < 0.02


def test_garbage_submissions_are_flagged_and_the_round_still_finalizes(inputs, digits_round):
    g = digits_round.global_state
    bad = {
        "0xa1": {**inputs.updates[HONEST[0]], "0.bias": torch.zeros(3)},
        "0xa2": {**inputs.updates[HONEST[0]], "0.bias": torch.zeros(64, dtype=torch.float16)},
        "0xa3": {k: torch.full_like(v, float("nan")) for k, v in g.items()},
        "0xa4": "not a state dict",
        "0xa5": torch.zeros(7),
        "0xa6": {"0.weight": torch.zeros(64, 64)},
    }
    out = run_round(replace(inputs, updates={**inputs.updates, **bad}, invalid={"0xa7": "sha256 mismatch"}))
    report = json.loads(out.report_bytes)
    for t in [*bad, "0xa7"]:
        assert out.scores_fixed[t] == 0 and t in out.flagged
        assert report["trainers"][t]["flags"][0]["reason"] == "invalid"
    assert report["trainers"]["0xa7"]["flags"][0]["detail"] == {"error": "sha256 mismatch"}
    assert "shape" in report["trainers"]["0xa1"]["flags"][0]["detail"]["error"]
    assert "dtype" in report["trainers"]["0xa2"]["flags"][0]["detail"]["error"]
    assert sum(out.scores_fixed.values()) == SCORE_UNIT


def test_too_few_usable_updates_is_refused_before_any_work(inputs):
    few = {t: inputs.updates[t] for t in HONEST[:4]}
    with pytest.raises(InsufficientUpdates) as err:
        run_round(replace(inputs, updates=few, invalid={HONEST[5]: "download failed"}))
    assert (err.value.have, err.value.need) == (4, 5)


def test_too_few_left_after_outlier_detection_is_refused(inputs, digits_round):
    updates = {t: inputs.updates[t] for t in HONEST[:4]}
    zero = {k: torch.zeros_like(v) for k, v in digits_round.global_state.items()}
    updates.update({"0xfree1": zero, "0xfree2": zero})
    with pytest.raises(InsufficientUpdates, match="outlier"):
        run_round(replace(inputs, updates=updates))


@pytest.mark.parametrize(
    "change",
    [
        {"evaluator": "digits_mlp"},
        {"rule": "mean-ish"},
        {"rule_params": {"f": -1}},
        {"update_kind": "gradient"},
        {"round_index": -1},
    ],
)
def test_bad_round_settings_are_refused(inputs, change):
    with pytest.raises(AggregatorError):
        run_round(replace(inputs, **change))


@pytest.mark.parametrize(
    ("X", "y"),
    [
        (torch.zeros(5, 64), torch.zeros(4, dtype=torch.int64)),
        (torch.full((5, 64), float("nan")), torch.zeros(5, dtype=torch.int64)),
        (torch.zeros(5, 32), torch.zeros(5, dtype=torch.int64)),
        (torch.zeros(5, 64), torch.full((5,), 12, dtype=torch.int64)),
    ],
)
def test_validation_data_that_cannot_be_scored_is_refused(X, y):
    with pytest.raises(AggregatorError):
        builtin_evaluator("digits_mlp", X, y)


def test_a_global_model_of_another_shape_is_refused(inputs):
    broken = {**inputs.global_state, "0.bias": torch.zeros(3)}
    with pytest.raises(AggregatorError, match="global model"):
        run_round(replace(inputs, global_state=broken))


def test_fixed_point_scores_largest_remainder_with_address_ties():
    thirds = fixed_point_scores({"0xb": 1 / 3, "0xa": 1 / 3, "0xc": 1 / 3, "0xd": 0.0})
    assert sum(thirds.values()) == SCORE_UNIT and thirds["0xd"] == 0
    assert thirds["0xa"] == thirds["0xb"] + 1 == thirds["0xc"] + 1  # the tie goes to the smaller address
    assert fixed_point_scores({"x": 2.0, "y": 2.0}) == {"x": SCORE_UNIT // 2, "y": SCORE_UNIT // 2}
    for bad in ({}, {"x": 0.0}, {"x": -0.1, "y": 1.1}, {"x": float("nan")}):
        with pytest.raises(AggregatorError):
            fixed_point_scores(bad)
    with pytest.raises(AggregatorError):
        canonical_json({"x": float("inf")})


def test_the_default_round_runs_the_default_defenses_and_says_how_sure_each_score_is(inputs):
    out = run_round(replace(inputs, rule="trimmed_mean", rule_params=None))
    report = json.loads(out.report_bytes)
    names = [step["name"] for step in report["defenses"]]
    assert names == ["near_copies", "forged_updates", "shared_deviation", "norm_clip"]
    assert report["rule"] == {**report["rule"], "name": "trimmed_mean", "params": {"beta": 0.25}}
    for t in HONEST:
        entry = report["trainers"][t]
        low, high = entry["score_interval"]
        assert low <= entry["score"] <= high and entry["score_confidence"]
        assert entry["influence"] > 0 and entry["status"] == "scored"
    attacker = report["trainers"]["0x" + "f" * 40]
    assert attacker["flags"][0]["message"].startswith("far from the others")
    assert report["contribution"]["details"]["examples"] == len(inputs.evaluator)


def test_a_copied_trainer_is_not_flagged_and_shares_one_players_score_with_its_copiers(inputs):
    copier = "0x" + "c" * 40
    updates = {t: inputs.updates[t] for t in HONEST}
    updates[copier] = {k: v.clone() for k, v in updates[HONEST[2]].items()}
    out = run_round(replace(inputs, updates=updates, rule="trimmed_mean", rule_params=None))
    report = json.loads(out.report_bytes)
    assert out.flagged == []
    assert report["trainers"][HONEST[2]]["counted_with"] == sorted([HONEST[2], copier])
    assert out.scores[HONEST[2]] == out.scores[copier] > 0
    # Six players for seven submitters: the pair is paid like one trainer, not two.
    assert out.scores[HONEST[2]] * 2 < 1.5 * max(out.scores[t] for t in HONEST if t != HONEST[2])


def test_fltrust_trains_the_owners_reference_from_the_recipe_and_refuses_without_one(inputs):
    from aggregator.training import Recipe

    chain = [{"name": "fltrust"}]
    with pytest.raises(AggregatorError, match="recipe"):
        run_round(replace(inputs, defenses=chain, rule="fedavg", rule_params=None))
    out = run_round(replace(inputs, defenses=chain, rule="fedavg", rule_params=None, recipe=Recipe(epochs=2)))
    report = json.loads(out.report_bytes)
    trust = report["defenses"][0]["details"]["trust"]
    assert len(trust) == len(inputs.updates) - len(out.flagged) and max(trust) > 0
    assert (
        out.result_digest
        == run_round(
            replace(inputs, defenses=chain, rule="fedavg", rule_params=None, recipe=Recipe(epochs=2))
        ).result_digest
    )


@pytest.mark.parametrize("chain", [[{"name": "moat"}], [{"name": "nnm", "f": 99}], "nnm"])
def test_a_bad_defense_chain_is_refused(inputs, chain):
    with pytest.raises(AggregatorError):
        run_round(replace(inputs, defenses=chain))


def test_an_update_forged_from_the_others_is_rejected_in_words_and_paid_nothing(inputs, digits_round):
    forger = "0x" + "e" * 40
    updates = {t: inputs.updates[t] for t in HONEST}
    # IPM (Xie et al. 2020): minus half the honest mean, sent as is.
    updates[forger] = unflatten_state(-0.5 * digits_round.honest.mean(0), digits_round.global_state)
    out = run_round(replace(inputs, updates=updates, rule="trimmed_mean", rule_params=None))
    entry = json.loads(out.report_bytes)["trainers"][forger]
    assert entry["status"] == "rejected" and forger not in out.flagged and out.scores[forger] == 0.0
    rejection = entry["rejections"][0]
    assert rejection["defense"] == "forged_updates" and "carries no data of its own" in rejection["message"]
    assert entry["influence"] == 0.0 and "score_interval" not in entry


def test_among_exact_copies_the_first_submitted_keeps_its_row(inputs):
    copier = "0x" + "0" * 39 + "a"  # sorts before the original it copies
    updates = {t: inputs.updates[t] for t in HONEST}
    updates[copier] = {k: v.clone() for k, v in updates[HONEST[3]].items()}
    order = [*HONEST, copier]
    out = run_round(
        replace(inputs, updates=updates, rule="trimmed_mean", rule_params=None, submission_order=order)
    )
    report = json.loads(out.report_bytes)
    entry = report["trainers"][copier]
    assert entry["status"] == "rejected" and entry["rejections"][0]["detail"]["copy_of"] == [HONEST[3]]
    assert "copy of an update submitted earlier" in entry["rejections"][0]["message"]
    assert report["trainers"][HONEST[3]]["status"] == "scored" and out.scores[HONEST[3]] > 0
    assert out.flagged == [] and out.scores[copier] == 0.0
