"""Bring your own model, task and data, through the CLI on anvil, as separate owners, trainers, an aggregator and
a verifier would: digits with the CNN, breast-cancer CSV shards with a plugin model from a distribution the test
builds and installs, and all-MiniLM-L6-v2 with FFA-LoRA on SQuAD questions. Every round finalizes, improves the
validation metric and is verified by recomputation."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from models_helpers import (
    AGGREGATOR,
    build_plugin_wheel,
    cli,
    create,
    ok,
    one_line_error,
    pip_install_target,
    run_rounds,
    verify_all,
)
from sealed_helpers import reveal_round
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits

from aggregator.text_data import question_splits
from backend.api import ApiSettings, create_app
from backend.settings import Settings

TRAINERS = [4, 5, 6]


@pytest.fixture
def env(deployed_cli_env):
    return deployed_cli_env


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: on a shared 2-core machine OpenMP workers spinning for a core cost several times the
    work itself (measured: 0.35 s of CPU for one MiniLM evaluation on one thread, 2.6 s on two under load)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.mark.slow
def test_digits_with_the_cnn_and_the_pixel_scaling_on_record(env, dev_accounts, tmp_path):
    digits = (
        load_digits()
    )  # raw pixel values 0..16: the /16 scaling is the project's, written in its manifest
    rng = np.random.default_rng(0)
    order = rng.permutation(len(digits.target))
    val, shards = order[:300], np.array_split(order[300:1200], len(TRAINERS))
    np.savez(tmp_path / "validation.npz", X=digits.data[val], y=digits.target[val])
    data = {}
    for account, part in zip(TRAINERS, shards, strict=True):
        data[account] = tmp_path / f"trainer{account}.npz"
        np.savez(data[account], X=digits.data[part], y=digits.target[part])
    created = create(
        env, dev_accounts, tmp_path / "validation.npz", "--model", "builtin:digits_cnn",
        "--preprocess", "scale=0.0625", "--rule", "fedavg", "--lr", "0.05", "--epochs", "2",
    )  # fmt: skip
    assert cli(env, "storage", "get", created["manifest"]["cid"], "-o", tmp_path / "manifest.json")[0] == 0
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["model"]["source"] == "builtin" and manifest["model"]["name"] == "digits_cnn"
    assert manifest["data"]["preprocessing"] == [{"op": "scale", "factor": 0.0625}]
    rounds = run_rounds(env, created["project"], data, 2, tmp_path)
    for r in rounds:
        assert r["metrics"]["accuracy_after"] > r["metrics"]["accuracy_before"]
    assert rounds[-1]["metrics"]["accuracy_after"] > 0.8
    verify_all(env, created["project"], 2)


@pytest.mark.slow
def test_regression_on_the_diabetes_set_reports_r2_and_mse(env, dev_accounts, tmp_path):
    diabetes = load_diabetes(as_frame=True)
    frame = diabetes.frame.rename(columns={"target": "progression"}).sample(frac=1.0, random_state=0)
    frame.iloc[:100].to_parquet(tmp_path / "validation.parquet")
    data = {}
    for account, part in zip(
        TRAINERS, np.array_split(np.arange(100, len(frame)), len(TRAINERS)), strict=True
    ):
        data[account] = tmp_path / f"trainer{account}.csv"
        # The last trainer names its target column otherwise and says so with --label-column.
        shard = frame.iloc[part].rename(columns={"progression": "y"} if account == TRAINERS[-1] else {})
        shard.to_csv(data[account], index=False)
    created = create(
        env, dev_accounts, tmp_path / "validation.parquet", "--model", "builtin:mlp", "--task", "regression",
        "--label-column", "progression", "--preprocess", "standardize", "--optimizer", "adam", "--lr", "0.01",
        "--epochs", "20", "--rule", "median", "--label-range", "0,400", rounds=1,
    )  # fmt: skip
    assert created["checks"]["initial_metrics"].keys() == {"loss", "mse", "r2"}
    project = created["project"]
    for account, path in data.items():
        ok(env, "trainer", "register", "-p", project, "--stake", "0.1", "--signer", f"dev:{account}")
        update = tmp_path / f"update{account}.safetensors"
        own = ["--label-column", "y"] if account == TRAINERS[-1] else []
        ok(env, "trainer", "train", "-p", project, "--data", path, "--out", update, *own)
        ok(env, "trainer", "submit", "-p", project, "--update", update, "--signer", f"dev:{account}")
    reveal_round(env, project, data)
    code, out, err = cli(env, "aggregate", "-p", project, "--signer", f"dev:{AGGREGATOR}")
    assert code == 0, err
    assert "validation r2" in out
    report_cid = ok(env, "project", "status", project)["rounds"][0]["report_cid"]
    assert cli(env, "storage", "get", report_cid, "-o", tmp_path / "report.json")[0] == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["task"] == {"name": "regression", "loss": "mse", "metric": "r2"}
    assert report["metrics"]["r2_after"] > report["metrics"]["r2_before"]
    assert report["metrics"]["mse_after"] < report["metrics"]["mse_before"]
    verify_all(env, project, 1)

    # The explorer reads the schema 2 manifest and the report's task: R-squared where a classifier shows accuracy.
    with TestClient(create_app(explorer_settings(env), ApiSettings())) as client:
        page = client.get(f"/projects/{project}").text
        chart = next(
            json.loads(c)
            for c in re.findall(r'class="chart-data">(.*?)</script>', page, re.S)
            if "accuracy-loss" in c
        )
    assert "mlp · regression" in page and '<th scope="col">R²</th>' in page
    row = re.search(r'<tr data-round="0">(.*?)</tr>', page, re.S).group(1)
    assert float(re.search(r'data-metric="([^"]+)"', row).group(1)) == report["metrics"]["r2_after"]
    assert chart["series"][0]["values"] == [report["metrics"]["r2_before"], report["metrics"]["r2_after"]]
    assert chart["y_label"] == "R²" and chart["y2_label"] == "mean squared error" and chart["y_range"] is None


def explorer_settings(env) -> Settings:
    return Settings(
        home=Path(env["TRUSTMARKET_HOME"]), chain_url=env["TRUSTMARKET_CHAIN_URL"],
        deployments_dir=Path(env["TRUSTMARKET_DEPLOYMENTS_DIR"]), store_path=Path(env["TRUSTMARKET_STORE_PATH"]),
        artifacts_path=Path(env["TRUSTMARKET_ARTIFACTS_PATH"]),
    )  # fmt: skip


@pytest.fixture(scope="module")
def plugin_wheels(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheels")
    return {version: build_plugin_wheel(out, version) for version in ("0.1.0", "0.2.0")}


@pytest.mark.slow
def test_breast_cancer_csv_shards_with_a_plugin_model(
    env, dev_accounts, tmp_path, monkeypatch, plugin_wheels
):
    cancer = load_breast_cancer(as_frame=True)
    frame = cancer.data.copy()
    frame["diagnosis"] = np.array(cancer.target_names)[cancer.target]
    frame = frame.sample(frac=1.0, random_state=0).reset_index(drop=True)
    frame.iloc[:120].to_csv(tmp_path / "validation.csv", index=False)
    data = {}
    for account, part in zip(
        TRAINERS, np.array_split(np.arange(120, len(frame)), len(TRAINERS)), strict=True
    ):
        data[account] = tmp_path / f"trainer{account}.csv"
        # Columns in another order than the owner's: features are matched by name.
        shard = frame.iloc[part]
        shard[["diagnosis", *reversed(cancer.data.columns)]].to_csv(data[account], index=False)

    # The owner has the plugin installed and stores its wheel with the project.
    owner_site = tmp_path / "owner-site"
    pip_install_target(plugin_wheels["0.1.0"], owner_site)
    monkeypatch.syspath_prepend(str(owner_site))
    created = create(
        env, dev_accounts, tmp_path / "validation.csv", "--model", "plugin:tabular_mlp",
        "--plugin-wheel", plugin_wheels["0.1.0"], "--label-column", "diagnosis", "--preprocess", "standardize",
        "--model-option", "hidden=16", "--optimizer", "adam", "--lr", "0.01", "--epochs", "3", "--rule", "fedavg",
    )  # fmt: skip
    project = created["project"]
    assert created["checks"]["model"]["distribution"] == "tm-test-models"

    # A trainer's machine: the owner's copy gone, the project's wheel installed with `model install`.
    sys.path.remove(str(owner_site))
    trainer_site = tmp_path / "trainer-site"
    installed = ok(env, "model", "install", "--project", project, "--target", trainer_site)
    assert installed["installed"] == "tm-test-models==0.1.0"
    monkeypatch.syspath_prepend(str(trainer_site))
    listed = ok(env, "model", "list")
    assert listed["plugins"]["plugin:tabular_mlp"]["version"] == "0.1.0"

    rounds = run_rounds(env, project, data, 1, tmp_path)
    assert rounds[0]["metrics"]["accuracy_after"] > rounds[0]["metrics"]["accuracy_before"]

    # Another version of the plugin on the aggregator's path: the round refuses to run, nothing is posted.
    other_site = tmp_path / "other-site"
    pip_install_target(plugin_wheels["0.2.0"], other_site)
    monkeypatch.syspath_prepend(str(other_site))
    for account, path in data.items():
        update = tmp_path / f"round1-{account}.safetensors"
        assert "0.2.0 is installed, the project pins 0.1.0" in one_line_error(
            env, "trainer", "train", "-p", project, "--data", path, "--out", update
        )
    sys.path.remove(str(other_site))
    for account, path in data.items():
        update = tmp_path / f"round1-{account}.safetensors"
        ok(env, "trainer", "train", "-p", project, "--data", path, "--out", update)
        ok(env, "trainer", "submit", "-p", project, "--update", update, "--signer", f"dev:{account}")
    reveal_round(env, project, data)
    monkeypatch.syspath_prepend(str(other_site))
    message = one_line_error(env, "aggregate", "-p", project, "--signer", f"dev:{AGGREGATOR}")
    assert "tm-test-models 0.2.0 is installed, the project pins 0.1.0" in message
    assert ok(env, "project", "status", project)["rounds"][1]["finalized_at"] == 0
    # A verifier with that version refuses the same way instead of recomputing another model.
    assert "tm-test-models 0.2.0 is installed, the project pins 0.1.0" in one_line_error(
        env, "verify", "-p", project
    )
    sys.path.remove(str(other_site))
    finalized = ok(env, "aggregate", "-p", project, "--signer", f"dev:{AGGREGATOR}")
    assert finalized["metrics"]["accuracy_after"] > 0.9
    verify_all(env, project, 2)


@pytest.mark.slow
def test_minilm_with_ffa_lora_on_squad_questions(env, dev_accounts, tmp_path):
    from backend.marketplace.demo_text import minilm_folder

    splits = question_splits(len(TRAINERS), 48, 36, 0, seed=0)

    def jsonl(path, questions, titles):
        path.write_text(
            "".join(
                json.dumps({"question": q, "article": t}) + "\n"
                for q, t in zip(questions, titles, strict=True)
            )
        )
        return path

    validation = jsonl(tmp_path / "validation.jsonl", *splits.validation)
    data = {
        a: jsonl(tmp_path / f"trainer{a}.jsonl", *s) for a, s in zip(TRAINERS, splits.shards, strict=True)
    }
    folder = minilm_folder()
    created = create(
        env, dev_accounts, validation, "--model", f"hf:{folder}", "--task", "text-classification",
        "--text-column", "question", "--label-column", "article", "--lora", "rank=4,ffa",
        "--model-option", "max_length=32", "--optimizer", "adamw", "--lr", "0.003", "--max-steps", "6",
        "--batch-size", "8", "--rule", "fedavg", "--seed", "1",
    )  # fmt: skip
    assert created["checks"]["model"]["lora"]["ffa"] is True
    assert "model.safetensors" in created["checks"]["hf_files"]
    rounds = run_rounds(env, created["project"], data, 2, tmp_path)
    full_model = (folder / "model.safetensors").stat().st_size
    for r in rounds:
        assert r["metrics"]["accuracy_after"] > r["metrics"]["accuracy_before"]
        assert max(r["update_bytes"]) < 0.05 * full_model  # only the B matrices and the head travel
    verify_all(env, created["project"], 2)
