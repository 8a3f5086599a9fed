"""`trustmarket chain`: deploy and status against anvil, and each failure as one line with exit code 2."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from backend.chain.anvil import free_port
from backend.chain.deploy import CONTRACTS
from backend.chain.deployments import ContractDeployment, Deployments
from backend.cli import app


@pytest.fixture
def env(tmp_path, anvil_node, compiled_artifacts):
    return {
        "TRUSTMARKET_HOME": str(tmp_path / "home"),
        "TRUSTMARKET_CHAIN_URL": anvil_node.url,
        "TRUSTMARKET_DEPLOYMENTS_DIR": str(tmp_path / "deployments"),
        "TRUSTMARKET_ARTIFACTS_PATH": str(compiled_artifacts.path),
    }


def run(env, *args):
    result = CliRunner().invoke(app, list(args), env=env)
    return result.exit_code, result.stdout, result.stderr


def test_deploy_then_status(env, tmp_path, compiled_artifacts):
    code, out, _ = run(env, "chain", "deploy", "--signer", "dev:0", "--json")
    assert code == 0, out
    deployed = json.loads(out)
    expected = [name for name in CONTRACTS if name in compiled_artifacts.names()]
    assert expected and sorted(deployed["contracts"]) == sorted(expected)
    record = Deployments.load(tmp_path / "deployments" / "local.json")
    assert record.chain_id == 31337
    assert {k: v.address for k, v in record.contracts.items()} == deployed["contracts"]

    code, out, _ = run(env, "chain", "status", "--json")
    assert code == 0
    assert json.loads(out)["chain_id"] == 31337


def test_chain_unreachable(env):
    env["TRUSTMARKET_CHAIN_URL"] = f"http://127.0.0.1:{free_port()}"
    code, _out, err = run(env, "chain", "deploy", "--signer", "dev:0")
    assert code == 2
    assert "cannot reach the chain" in err
    assert len(err.strip().splitlines()) == 1


def test_wrong_chain_id(env):
    env["TRUSTMARKET_CHAIN_ID"] = "1"
    code, _, err = run(env, "chain", "deploy", "--signer", "dev:0")
    assert code == 2
    assert "serves chain 31337, expected 1" in err


def test_contract_not_deployed_at_the_address(env, tmp_path, dev_accounts):
    Deployments(
        network="ethereum:local:foundry",
        chain_id=31337,
        contracts={
            "TrainingMarket": ContractDeployment(address=dev_accounts[7].address, block=0, transaction="0x")
        },
    ).save(tmp_path / "deployments" / "local.json")
    code, _, err = run(env, "chain", "status")
    assert code == 2
    assert f"no contract code at {dev_accounts[7].address}" in err


def test_no_deployments_file(env):
    code, _, err = run(env, "chain", "status")
    assert code == 2
    assert "run `trustmarket chain deploy`" in err


def test_a_signing_command_needs_a_signer(env):
    env.pop("TRUSTMARKET_SIGNER", None)
    code, _, err = run(env, "chain", "deploy")
    assert code == 2
    assert "Missing option '--signer'" in err and len(err.strip().splitlines()) == 1
