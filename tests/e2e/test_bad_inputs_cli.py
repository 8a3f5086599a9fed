"""Bad input from the command line is one line with exit code 2 that says what is wrong, and loses nothing:
data the model cannot read, labels it has no output for, an update of the wrong shape, an unfunded key."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import save as save_safetensors
from typer.testing import CliRunner

from aggregator.data import load_digits_data
from backend.chain.training_market import TrainingMarket
from backend.cli import app

pytestmark = pytest.mark.chain

OWNER, AGGREGATOR, ARBITER, TRAINER = 1, 2, 3, 4


def cli(env, *args):
    result = CliRunner().invoke(app, [str(a) for a in args], env=env)
    return result.exit_code, result.stdout, result.stderr


def one_line(code, err, *needles):
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1, err
    for needle in needles:
        assert needle in err, err


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad-data")
    digits = load_digits_data(0)
    X, y = digits.validation.X.numpy(), digits.validation.y.numpy()
    np.savez(folder / "validation.npz", X=X, y=y)
    np.savez(folder / "narrow.npz", X=X[:, :32], y=y)  # 32 features for a 64-feature model
    np.savez(folder / "label12.npz", X=X, y=np.where(y == 3, 12, y))
    return folder


def create(env, dev_accounts, validation):
    return cli(
        env, "project", "create", "--validation", validation, "--aggregator", dev_accounts[AGGREGATOR].address,
        "--arbiter", dev_accounts[ARBITER].address, "--reward", "1", "--rounds", "1", "--rule", "median",
        "--signer", f"dev:{OWNER}", "--json",
    )  # fmt: skip


def test_a_validation_set_the_model_cannot_read_is_refused_before_anything_is_escrowed(
    deployed_cli_env, dev_accounts, data, chain_client
):
    market = TrainingMarket(chain_client)
    before = market.project_count()
    one_line(*create(deployed_cli_env, dev_accounts, data / "narrow.npz")[::2], "classifies 64 features")
    one_line(*create(deployed_cli_env, dev_accounts, data / "label12.npz")[::2], "13 output(s)")
    assert market.project_count() == before


def test_training_data_and_updates_that_do_not_fit(
    deployed_cli_env, dev_accounts, data, chain_client, tmp_path
):
    env = deployed_cli_env
    code, out, err = create(env, dev_accounts, data / "validation.npz")
    assert code == 0, err
    project = json.loads(out)["project"]
    assert (
        cli(env, "trainer", "register", "-p", project, "--stake", "0.1", "--signer", f"dev:{TRAINER}")[0] == 0
    )
    for shard, needle in (
        ("narrow.npz", "each example has 32 features [32], the project's have [64]"),
        ("label12.npz", "label(s) 12 are not among the project's"),
    ):
        code, _, err = cli(
            env, "trainer", "train", "-p", project, "--data", data / shard, "--out", tmp_path / "u"
        )
        one_line(code, err, needle)
    assert not (tmp_path / "u").exists()

    # A (3, 3) tensor where the model has others: refused before it is stored or submitted.
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(
        save_safetensors({"w": torch.zeros(3, 3)}, {"project": str(project), "round": "0", "kind": "delta"})
    )
    code, _, err = cli(env, "trainer", "submit", "-p", project, "--update", bad, "--signer", f"dev:{TRAINER}")
    one_line(code, err)
    market = TrainingMarket(chain_client)
    assert int(market.submission_entry(project, 0, dev_accounts[TRAINER].address).commitment, 16) == 0
    code, _, err = cli(
        env, "trainer", "submit", "-p", project, "--update", tmp_path / "absent", "--signer", "dev:4"
    )
    one_line(code, err, "no update file")


def test_an_unfunded_key_says_which_keys_are_funded(deployed_cli_env, dev_accounts, data):
    code, out, err = create(deployed_cli_env, dev_accounts, data / "validation.npz")
    assert code == 0, err
    project = json.loads(out)["project"]
    code, _, err = cli(
        deployed_cli_env, "trainer", "register", "-p", project, "--stake", "0.1", "--signer", "dev:25"
    )
    one_line(code, err, "holds 0 ETH", "dev:0 to dev:19")
