"""The Ray engine computes what the local engine computes, bit for bit, and refuses what it refuses."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from safetensors.torch import save_file

from aggregator.contribution import ContributionConfig
from aggregator.engine import LOCAL, get_engine
from aggregator.errors import AggregatorError, InvalidUpdate
from aggregator.evaluation import builtin_evaluator
from aggregator.matrix import UpdateMatrix, gram_stats
from aggregator.models import model_spec, unflatten_state
from aggregator.outliers import OutlierConfig
from aggregator.pipeline import RoundInputs, run_round
from aggregator.rows import SafetensorsRow
from aggregator.rules import RULES, get_rule

pytestmark = pytest.mark.slow  # a Ray instance for the session: ~10 s before the first task runs

TRAINERS = [f"0x{i:040x}" for i in range(1, 10)]


@pytest.fixture(scope="module")
def round_inputs(digits_round, tmp_path_factory):
    """Nine updates (six honest, a scaled copy of the second, a sign flip, a label flip) as files, chunked far
    below a row."""
    deltas = [
        *digits_round.honest,
        3.0 * digits_round.honest[1],
        -digits_round.honest[2],
        digits_round.label_flipped,
    ]
    folder = tmp_path_factory.mktemp("updates")
    names = list(model_spec("digits_mlp"))
    rows = {}
    for t, d in zip(TRAINERS, deltas, strict=False):
        state = unflatten_state(d, digits_round.global_state)
        save_file({k: v.contiguous() for k, v in state.items()}, str(folder / f"{t}.safetensors"))
        rows[t] = SafetensorsRow.open(folder / f"{t}.safetensors", names)
    return RoundInputs(
        evaluator=builtin_evaluator(
            "digits_mlp", digits_round.data.validation.X, digits_round.data.validation.y
        ),
        global_state=digits_round.global_state,
        updates=rows,
        rule="multi_krum",
        rule_params={"f": 1},
        outliers=OutlierConfig(chunk=700, center="coordinate_median"),
        contribution=ContributionConfig(max_permutations=24),
        round_index=1,
    )


@pytest.mark.parametrize(
    ("rule", "params", "method"),
    [
        ("multi_krum", {"f": 1}, "gtg_shapley"),
        ("trimmed_mean", {"beta": 0.2}, "leave_one_out"),
        ("bulyan", {"f": 0}, "gtg_shapley"),
        ("geometric_median", {}, "similarity"),
    ],
)
def test_a_round_on_ray_has_the_local_engines_digest(round_inputs, ray_engine, rule, params, method):
    inputs = replace(
        round_inputs,
        rule=rule,
        rule_params={**params, "chunk": 500},
        contribution=ContributionConfig(method=method, max_permutations=24),
    )
    local, on_ray = run_round(inputs), run_round(inputs, ray_engine)
    assert on_ray.report_bytes == local.report_bytes
    assert on_ray.result_digest == local.result_digest
    # The round had something to catch: the default defenses count the scaled copy with its original, and the
    # sign flip earns nothing.
    entries = local.report["trainers"]
    assert entries[TRAINERS[6]]["counted_with"] == [TRAINERS[1], TRAINERS[6]]
    assert entries[TRAINERS[7]]["score"] == 0.0


@pytest.mark.parametrize("name", RULES)
def test_every_rule_on_ray_matches_the_local_engine(ray_engine, name):
    gen = torch.Generator().manual_seed(3)
    rows = list(torch.randn(11, 2000, generator=gen))
    rows[10] = rows[10] * -20.0
    local = get_rule(name, chunk=300).aggregate(UpdateMatrix(rows))
    remote = get_rule(name, chunk=300).aggregate(UpdateMatrix(rows, engine=ray_engine))
    assert torch.equal(local.aggregate, remote.aggregate) and torch.equal(local.weights, remote.weights)


def test_a_bad_row_found_by_a_ray_task_is_named(ray_engine):
    rows = list(torch.ones(4, 1000))
    rows[2] = rows[2].clone()
    rows[2][900] = float("inf")
    with pytest.raises(InvalidUpdate) as err:
        gram_stats(UpdateMatrix(rows, engine=ray_engine), chunk=128)
    assert err.value.rows == (2,)
    with pytest.raises(InvalidUpdate):
        get_rule("median", chunk=128).aggregate(UpdateMatrix(rows, engine=ray_engine))


def test_engines_by_name():
    assert get_engine("local") is LOCAL and LOCAL.workers == 1
    with pytest.raises(AggregatorError, match="unknown engine"):
        get_engine("spark")
