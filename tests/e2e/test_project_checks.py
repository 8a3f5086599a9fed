"""A project that cannot run is refused by `project create` before anything is escrowed, a trainer's data that
does not fit is refused before any training, and an update that does not fit before anything is stored or sent:
each in one line, exit code 2."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from models_helpers import AGGREGATOR, ARBITER, OWNER, create, ok, one_line_error
from safetensors.torch import load, save

from backend.storage.codec import encode_state, state_metadata


@pytest.fixture
def env(deployed_cli_env):
    return deployed_cli_env


pytestmark = pytest.mark.slow  # a chain and a dozen CLI runs


def store_files(env) -> set[Path]:
    return {p for p in Path(env["TRUSTMARKET_STORE_PATH"]).rglob("*") if p.is_file()}


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "ten.npz", X=rng.normal(size=(40, 10)), y=rng.integers(0, 13, 40))
    labels = np.arange(40) % 13  # every class 0..12 present
    np.savez(tmp_path / "digits12.npz", X=rng.normal(size=(40, 64)), y=labels)
    nan = rng.normal(size=(40, 64))
    nan[3, 5] = np.nan
    np.savez(tmp_path / "nan.npz", X=nan, y=rng.integers(0, 10, 40))
    pd.DataFrame({"a": rng.normal(size=8), "label": ["x", "y"] * 4}).to_csv(
        tmp_path / "named.csv", index=False
    )
    np.savez(tmp_path / "wide.npz", X=rng.normal(size=(20, 32)), y=rng.integers(0, 13, 20))
    return tmp_path


def test_a_project_that_cannot_run_is_refused_before_anything_is_escrowed(
    env, dev_accounts, chain_client, files
):
    owner = dev_accounts[OWNER].address
    count, balance = chain_client.w3.eth.get_transaction_count(owner), chain_client.balance(owner)
    base = [
        "project", "create", "--aggregator", dev_accounts[AGGREGATOR].address,
        "--arbiter", dev_accounts[ARBITER].address, "--reward", "1", "--signer", f"dev:{OWNER}",
    ]  # fmt: skip
    cases = [
        (["--validation", files / "ten.npz"], "builtin:digits_mlp classifies 64 features into 10 classes"),
        (["--validation", files / "digits12.npz"], "13 output(s)"),
        (["--validation", files / "ten.npz", "--model", "resnet18"], "unknown model 'resnet18'"),
        (["--validation", files / "ten.npz", "--model", "builtin:cnn"], "needs image-shaped features"),
        (
            [
                "--validation",
                files / "ten.npz",
                "--model",
                "mlp",
                "--rule",
                "multi_krum",
                "--rule-param",
                "f=2",
                "--max-trainers",
                "5",
            ],
            'multi_krum with {"f": 2} needs at least 7 usable updates per round, but --max-trainers is 5',
        ),
        (["--validation", files / "ten.npz", "--model", "mlp", "--lora", "rank=4"], "--lora applies to hf"),
        (
            ["--validation", files / "ten.npz", "--model", "mlp", "--model-option", "hiden=3"],
            "takes no option",
        ),
        (["--validation", files / "ten.npz", "--model", "hf:/no/such/folder"], "no such folder"),
        (
            ["--validation", files / "ten.npz", "--model", "plugin:nope"],
            "plugin model 'nope' is not installed",
        ),
        (["--validation", files / "named.csv", "--model", "mlp", "--task", "regression"], "must be numbers"),
        (["--validation", files / "ten.npz", "--task", "text-classification"], "needs text data"),
        (["--validation", files / "ten.npz", "--task", "segmentation"], "unknown task 'segmentation'"),
        (["--validation", files / "ten.npz", "--model", "mlp", "--preprocess", "scale=x"], "scale=FACTOR"),
        (
            ["--validation", files / "ten.npz", "--model", "mlp", "--optimizer", "lion"],
            "optimizer must be one of",
        ),
        (
            [
                "--validation",
                files / "ten.npz",
                "--model",
                "mlp",
                "--rule",
                "multi_krum",
                "--rule-param",
                "f=-1",
            ],
            "f must be an integer >= 0",
        ),
        (
            ["--validation", files / "ten.npz", "--model", "mlp", "--rule-param", "g=1"],
            "unknown parameter(s) ['g']",
        ),
        (["--validation", files / "ten.npz", "--model", "mlp", "--defense", "nnm:f=x"], "nnm"),
        (["--validation", files / "ten.npz", "--model", "mlp", "--defense", "shield"], "unknown defense"),
        (
            ["--validation", files / "ten.npz", "--model", "mlp", "--defense", "nnm", "--no-defenses"],
            "--no-defenses cannot be combined with --defense",
        ),
        (["--validation", files / "nan.npz"], "NaN or Inf"),
        (["--validation", files / "named.csv", "--label-column", "y"], "no label column 'y'"),
    ]
    for args, message in cases:
        line = one_line_error(env, *base, *args)
        assert message in line, (args, line)
    # Nothing was sent: no transaction, no escrow, no project.
    assert chain_client.w3.eth.get_transaction_count(owner) == count
    assert chain_client.balance(owner) == balance
    # What the built-in zoo could not do before: 10 features and 13 classes, with a model sized from the data.
    created = create(env, dev_accounts, files / "ten.npz", "--model", "builtin:mlp", "--rule", "fedavg")
    assert created["checks"]["model"]["uri"] == "builtin:mlp"


def test_trainer_data_and_updates_are_checked_before_anything_happens(env, dev_accounts, files, tmp_path):
    project = create(env, dev_accounts, files / "ten.npz", "--model", "builtin:mlp", "--rule", "fedavg")[
        "project"
    ]
    ok(env, "trainer", "register", "-p", project, "--stake", "0.1", "--signer", "dev:4")
    out = tmp_path / "update.safetensors"
    line = one_line_error(env, "trainer", "train", "-p", project, "--data", files / "wide.npz", "--out", out)
    assert "each example has 32 features [32], the project's have [10]" in line and not out.exists()
    line = one_line_error(env, "trainer", "train", "-p", project, "--data", files / "named.csv", "--out", out)
    assert "each example has 1 features [1]" in line

    stored = store_files(env)
    status = ok(env, "project", "status", project)
    base_cid = status["project"]["initial_model_cid"]
    wrong = encode_state(
        {"0.weight": torch.zeros(64, 64)}, state_metadata(project, 0, base_cid, kind="delta")
    )
    (tmp_path / "wrong.safetensors").write_bytes(wrong)
    line = one_line_error(
        env,
        "trainer",
        "submit",
        "-p",
        project,
        "--update",
        tmp_path / "wrong.safetensors",
        "--signer",
        "dev:4",
    )
    assert "does not fit the project's model" in line and "missing tensor" in line
    assert store_files(env) == stored  # nothing stored
    assert (
        ok(env, "trainer", "status", "-p", project, "--address", dev_accounts[4].address)["submissions"] == 0
    )

    good = tmp_path / "good.safetensors"
    ok(env, "trainer", "train", "-p", project, "--data", files / "ten.npz", "--out", good)
    other = encode_state(load(good.read_bytes()), state_metadata(project, 1, base_cid, kind="delta"))
    (tmp_path / "later.safetensors").write_bytes(other)
    line = one_line_error(
        env,
        "trainer",
        "submit",
        "-p",
        project,
        "--update",
        tmp_path / "later.safetensors",
        "--signer",
        "dev:4",
    )
    assert "made for project" in line and "round 1" in line
    # The right tensors with a wrong shape, a wrong dtype or a NaN: refused by the spec, nothing stored or sent.
    tensors = load(good.read_bytes())
    name, first = next(iter(tensors.items()))
    meta = state_metadata(project, 0, base_cid, kind="delta")
    nan = first.clone()
    nan.view(-1)[0] = float("nan")
    for bad, needle in (
        ({**tensors, name: torch.zeros(first.shape[0] + 1, *first.shape[1:])}, f"tensor {name!r} has shape"),
        ({**tensors, name: first.double()}, f"tensor {name!r} has dtype float64"),
        ({**tensors, name: nan}, f"tensor {name!r} has 1 non-finite value(s)"),
    ):
        (tmp_path / "bad.safetensors").write_bytes(save(bad, meta))
        line = one_line_error(
            env,
            "trainer",
            "submit",
            "-p",
            project,
            "--update",
            tmp_path / "bad.safetensors",
            "--signer",
            "dev:4",
        )
        assert "does not fit the project's model" in line and needle in line, line
    assert store_files(env) == stored
    done = ok(env, "trainer", "submit", "-p", project, "--update", good, "--signer", "dev:4")
    assert done["round"] == 0


def test_the_demo_names_its_tasks(tmp_path):
    # Refused before any chain starts: no deployment needed.
    env = {"TRUSTMARKET_HOME": str(tmp_path / "home")}
    assert "--task must be digits or text" in one_line_error(env, "demo", "--task", "audio")
