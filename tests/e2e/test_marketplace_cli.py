"""The marketplace from the command line, as an owner, trainers and an aggregator would drive it, on anvil."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sealed_helpers import reveal_round
from typer.testing import CliRunner

from aggregator.data import load_digits_data, non_iid_splits
from backend.chain.anvil import advance_clock
from backend.chain.keys import create_keystore
from backend.cli import app

OWNER, AGGREGATOR, ARBITER = 1, 2, 3
TRAINERS = [4, 5, 6, 7, 8]


def cli(env, *args):
    result = CliRunner().invoke(app, [str(a) for a in args], env=env)
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def env(deployed_cli_env):
    return deployed_cli_env


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    """The owner's validation set and each trainer's private shard, as files."""
    folder = tmp_path_factory.mktemp("data")
    data = load_digits_data(0)
    np.savez(folder / "validation.npz", X=data.validation.X.numpy(), y=data.validation.y.numpy())
    for i, shard in zip(TRAINERS, non_iid_splits(data.train, len(TRAINERS), 5.0, 0), strict=True):
        np.savez(folder / f"trainer{i}.npz", X=shard.X.numpy(), y=shard.y.numpy())
    return folder


def create_project(env, datasets, dev_accounts, *extra):
    code, out, err = cli(
        env, "project", "create", "--validation", datasets / "validation.npz",
        "--aggregator", dev_accounts[AGGREGATOR].address, "--arbiter", dev_accounts[ARBITER].address,
        "--reward", "5", "--stake", "0.1", "--rounds", "1", "--rule", "fedavg",
        "--challenge-window", "1", "--signer", f"dev:{OWNER}", "--json", *extra,
    )  # fmt: skip
    assert code == 0, err
    return json.loads(out)["project"]


@pytest.mark.slow
def test_a_round_from_registration_to_claims(env, datasets, dev_accounts, chain_client, tmp_path):
    project = create_project(env, datasets, dev_accounts)
    for i in TRAINERS:
        code, _, err = cli(
            env, "trainer", "register", "-p", project, "--stake", "0.1", "--signer", f"dev:{i}"
        )
        assert code == 0, err
    for i in TRAINERS:
        update = tmp_path / f"update{i}.safetensors"
        code, out, err = cli(
            env,
            "trainer",
            "train",
            "-p",
            project,
            "--data",
            datasets / f"trainer{i}.npz",
            "--out",
            update,
            "--epochs",
            "2",
            "--json",
        )
        assert code == 0, err
        assert json.loads(out)["round"] == 0
        code, out, err = cli(
            env, "trainer", "submit", "-p", project, "--update", update, "--signer", f"dev:{i}", "--json"
        )
        assert code == 0, err
        assert len(json.loads(out)["sha256"]) == 64

    # Every commitment is in; once the commit window ends, the shard and the updates are revealed.
    code, _, err = cli(env, "aggregate", "-p", project, "--signer", f"dev:{AGGREGATOR}")
    assert code == 2 and "takes commitments until" in err
    reveal_round(env, project, TRAINERS, owner=OWNER)
    code, out, err = cli(env, "aggregate", "-p", project, "--signer", f"dev:{AGGREGATOR}", "--json")
    assert code == 0, err
    finalized = json.loads(out)
    assert finalized["metrics"]["accuracy_after"] > finalized["metrics"]["accuracy_before"]
    assert sum(finalized["scores"].values()) == pytest.approx(1.0)

    code, out, err = cli(env, "verify", "-p", project, "--json")
    assert code == 0, err
    assert [r["match"] for r in json.loads(out)] == [True]

    code, out, _ = cli(env, "project", "status", project, "--json")
    assert json.loads(out)["project"]["status"] == "Completed"

    # Claims open once the challenge window has passed.
    code, _, err = cli(env, "trainer", "claim", "-p", project, "--signer", f"dev:{TRAINERS[0]}")
    assert code == 2 and "ClaimsNotOpen" in err
    advance_clock(chain_client, 5)
    paid = 0
    for i in [*TRAINERS, OWNER]:
        code, out, err = cli(env, "trainer", "claim", "-p", project, "--signer", f"dev:{i}", "--json")
        assert code == 0, err
        paid += int(json.loads(out)["amount_wei"])
    assert paid == 5 * 10**18 + len(TRAINERS) * 10**17
    assert chain_client.balance(chain_client.address_of("TrainingMarket")) == 0
    code, _, err = cli(env, "trainer", "claim", "-p", project, "--signer", f"dev:{TRAINERS[0]}")
    assert code == 2 and "AlreadyClaimed" in err


def test_insufficient_stake_is_a_reverted_transaction_reported_in_one_line(env, datasets, dev_accounts):
    project = create_project(env, datasets, dev_accounts)
    code, _, err = cli(
        env, "trainer", "register", "-p", project, "--stake", "0.01", "--signer", f"dev:{TRAINERS[0]}"
    )
    assert code == 2
    assert "StakeTooLow" in err and len(err.strip().splitlines()) == 1


def test_unknown_project(env, dev_accounts):
    code, _, err = cli(
        env, "trainer", "register", "-p", 999, "--stake", "1", "--signer", f"dev:{TRAINERS[0]}"
    )
    assert code == 2 and "UnknownProject(projectId=999)" in err
    code, _, err = cli(env, "project", "status", 999)
    assert code == 2 and "UnknownProject" in err


def test_round_closed(env, datasets, dev_accounts, chain_client, tmp_path):
    project = create_project(env, datasets, dev_accounts, "--round-duration", "60")
    i = TRAINERS[0]
    assert cli(env, "trainer", "register", "-p", project, "--stake", "0.1", "--signer", f"dev:{i}")[0] == 0
    update = tmp_path / "update.safetensors"
    assert (
        cli(
            env,
            "trainer",
            "train",
            "-p",
            project,
            "--data",
            datasets / f"trainer{i}.npz",
            "--out",
            update,
            "--epochs",
            "1",
        )[0]
        == 0
    )
    advance_clock(chain_client, 120)
    code, _, err = cli(env, "trainer", "submit", "-p", project, "--update", update, "--signer", f"dev:{i}")
    assert code == 2 and "CommitWindowClosed" in err


def test_wrong_keystore_password(env, datasets, dev_accounts, tmp_path):
    keystore = tmp_path / "trainer.json"
    create_keystore(keystore, "right horse battery", dev_accounts[TRAINERS[0]].key)
    project = create_project(env, datasets, dev_accounts)
    env = {**env, "TRUSTMARKET_KEYSTORE_PASSWORD": "wrong"}
    code, _, err = cli(env, "trainer", "register", "-p", project, "--stake", "0.1", "--signer", keystore)
    assert code == 2 and "wrong password" in err
    env["TRUSTMARKET_KEYSTORE_PASSWORD"] = "right horse battery"
    code, out, err = cli(
        env, "trainer", "register", "-p", project, "--stake", "0.1", "--signer", keystore, "--json"
    )
    assert code == 0, err
    assert json.loads(out)["trainer"] == dev_accounts[TRAINERS[0]].address


def test_bad_inputs_are_one_line_errors(env, datasets, dev_accounts, tmp_path):
    (tmp_path / "garbage.npz").write_bytes(b"garbage")
    code, _, err = cli(
        env,
        "project",
        "create",
        "--validation",
        tmp_path / "garbage.npz",
        "--aggregator",
        dev_accounts[AGGREGATOR].address,
        "--arbiter",
        dev_accounts[ARBITER].address,
        "--reward",
        "1",
        "--signer",
        f"dev:{OWNER}",
    )
    assert code == 2 and "unreadable dataset" in err
    code, _, err = cli(
        env,
        "project",
        "create",
        "--validation",
        datasets / "validation.npz",
        "--aggregator",
        dev_accounts[AGGREGATOR].address,
        "--arbiter",
        dev_accounts[ARBITER].address,
        "--reward",
        "lots",
        "--signer",
        f"dev:{OWNER}",
    )
    assert code == 2 and "not a number of ether" in err
    project = create_project(env, datasets, dev_accounts)
    code, _, err = cli(
        env,
        "trainer",
        "submit",
        "-p",
        project,
        "--update",
        tmp_path / "missing.safetensors",
        "--signer",
        f"dev:{TRAINERS[0]}",
    )
    assert code == 2 and "no update file" in err
    (tmp_path / "bad.safetensors").write_bytes(b"\x00" * 16)
    code, _, err = cli(
        env,
        "trainer",
        "submit",
        "-p",
        project,
        "--update",
        tmp_path / "bad.safetensors",
        "--signer",
        f"dev:{TRAINERS[0]}",
    )
    assert code == 2 and "safetensors" in err
    code, _, err = cli(env, "aggregate", "-p", project, "--signer", f"dev:{AGGREGATOR}")
    assert code == 2 and "is not ready: round 0 takes commitments until" in err
