"""Rounds over update files read a chunk at a time give the in-memory round's bytes; bad files are refused."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
from safetensors.torch import save_file

from aggregator.contribution import ContributionConfig
from aggregator.errors import InvalidUpdate
from aggregator.evaluation import builtin_evaluator
from aggregator.models import flatten_state, model_spec, unflatten_state
from aggregator.outliers import OutlierConfig
from aggregator.pipeline import RoundInputs, run_round
from aggregator.report import tensor_sha256
from aggregator.rows import DeltaRow, SafetensorsRow, read_layout, row_summary

MLP = "digits_mlp"
TRAINERS = [f"0x{i:040x}" for i in range(1, 8)]


def _write(path, state, dtype=None):
    # Sorted names, as safetensors itself orders them: not the model's order.
    save_file({k: (v.to(dtype) if dtype else v).contiguous() for k, v in sorted(state.items())}, str(path))
    return path


@pytest.fixture
def states(digits_round):
    deltas = [*digits_round.honest, -5.0 * digits_round.honest[0]]
    return {t: unflatten_state(d, digits_round.global_state) for t, d in zip(TRAINERS, deltas, strict=True)}


@pytest.fixture
def inputs(digits_round, states):
    return RoundInputs(
        evaluator=builtin_evaluator(MLP, digits_round.data.validation.X, digits_round.data.validation.y),
        global_state=digits_round.global_state,
        updates=states,
        rule="multi_krum",
        rule_params={"f": 1},
        # Chunks far smaller than a row: every pass crosses tensor boundaries inside the files.
        outliers=OutlierConfig(chunk=1000),
        contribution=ContributionConfig(max_permutations=12),
        round_index=2,
    )


def _files(tmp_path, states):
    names = list(model_spec(MLP))
    return {
        t: SafetensorsRow.open(_write(tmp_path / f"{t}.safetensors", s), names) for t, s in states.items()
    }


@pytest.mark.parametrize("method", ["gtg_shapley", "leave_one_out", "similarity"])
def test_a_round_over_update_files_is_bit_identical_to_the_in_memory_round(inputs, tmp_path, states, method):
    inputs = replace(inputs, contribution=ContributionConfig(method=method, max_permutations=12))
    in_memory = run_round(inputs)
    from_files = run_round(replace(inputs, updates=_files(tmp_path, states)))
    assert from_files.report_bytes == in_memory.report_bytes
    assert from_files.model_bytes == in_memory.model_bytes
    assert from_files.result_digest == in_memory.result_digest
    assert in_memory.flagged == [TRAINERS[-1]]


def test_local_models_as_files_give_the_delta_round(inputs, tmp_path, states, digits_round):
    g = digits_round.global_state
    models = {t: {k: g[k] + d[k] for k, _ in d.items()} for t, d in states.items()}
    as_states = run_round(replace(inputs, updates=models, update_kind="model"))
    as_files = run_round(replace(inputs, updates=_files(tmp_path, models), update_kind="model"))
    assert as_files.result_digest == as_states.result_digest


def test_a_file_with_nan_is_flagged_as_in_memory(inputs, tmp_path, states):
    poisoned = {k: v.clone() for k, v in states[TRAINERS[0]].items()}
    poisoned["2.bias"][3] = float("nan")
    updates = {**states, TRAINERS[0]: poisoned}
    in_memory = run_round(replace(inputs, updates=updates))
    from_files = run_round(replace(inputs, updates=_files(tmp_path, updates)))
    assert from_files.result_digest == in_memory.result_digest
    entry = json.loads(from_files.report_bytes)["trainers"][TRAINERS[0]]
    assert entry["status"] == "flagged" and "non-finite" in entry["flags"][0]["detail"]["error"]
    assert entry["update_sha256"] is None


def test_a_row_is_the_flat_delta_in_the_models_order_whatever_the_file_dtype(tmp_path, states):
    state = states[TRAINERS[0]]
    names = list(model_spec(MLP))
    flat = flatten_state(state, model_spec(MLP))
    row = SafetensorsRow.open(_write(tmp_path / "a.safetensors", state), names)
    out = torch.empty(row.numel)
    for start in range(0, row.numel, 777):
        row.read_into(start, min(start + 777, row.numel), out[start : start + 777])
    assert row.numel == flat.numel() and torch.equal(out, flat)
    half = SafetensorsRow.open(_write(tmp_path / "h.safetensors", state, torch.float16), names)
    out16 = torch.empty(half.numel, dtype=torch.float64)
    half.read_into(0, half.numel, out16)
    assert torch.equal(out16, flat.half().double()) and half.dtype == torch.float32


def test_the_first_pass_names_each_row_by_the_sha256_of_its_float32_values(states):
    flat = flatten_state(states[TRAINERS[0]], model_spec(MLP))
    summary = row_summary(flat, chunk=100)
    assert summary.problem is None and summary.sha256 == tensor_sha256(flat)
    assert summary.norm == pytest.approx(float(flat.double().norm()), rel=1e-12)
    assert "limit" in row_summary(flat, 100, max_norm=summary.norm / 2).problem
    assert row_summary(torch.zeros(0), 100).problem == "empty update"


def test_bad_update_files_are_refused_with_the_reason(tmp_path, states):
    names = list(model_spec(MLP))
    state = states[TRAINERS[0]]
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}......")
    with pytest.raises(InvalidUpdate, match="not a safetensors file"):
        read_layout(garbage)
    partial = {k: v for k, v in state.items() if k != "0.bias"}
    with pytest.raises(InvalidUpdate, match="missing tensor"):
        SafetensorsRow.open(_write(tmp_path / "p.safetensors", partial), names)
    ints = {**state, "0.bias": torch.zeros(64, dtype=torch.int32)}
    with pytest.raises(InvalidUpdate, match="not a float type"):
        SafetensorsRow.open(_write(tmp_path / "i.safetensors", ints), names)
    # A file cut short after it was opened (the header promised more): a clear error, not garbage values.
    path = _write(tmp_path / "cut.safetensors", state)
    row = SafetensorsRow.open(path, names)
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(InvalidUpdate, match="shorter than its header"):
        row.read_into(0, row.numel, torch.empty(row.numel))
    assert read_layout(_write(tmp_path / "ok.safetensors", state))[0]["0.weight"] == ((64, 64), "float32")


def test_a_delta_row_subtracts_the_base_and_refuses_another_size(tmp_path, states):
    names = list(model_spec(MLP))
    row = SafetensorsRow.open(_write(tmp_path / "a.safetensors", states[TRAINERS[0]]), names)
    base = torch.arange(row.numel, dtype=torch.float32)
    out = torch.empty(10)
    DeltaRow(row, base).read_into(5, 15, out)
    whole = torch.empty(row.numel)
    row.read_into(0, row.numel, whole)
    assert torch.equal(out, whole[5:15] - base[5:15])
    with pytest.raises(InvalidUpdate):
        DeltaRow(row, base[:-1])
