"""`trustmarket chain`: deploy and status against anvil, and each failure as one line with exit code 2."""

from __future__ import annotations

import json
from pathlib import Path

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


def _answers(url):
    from backend.chain.anvil import node_answers

    return node_answers(url) is not None


def test_up_remembers_the_url_and_each_node_has_its_own_pid_file(tmp_path):
    import json as _json

    env = {"TRUSTMARKET_HOME": str(tmp_path / "home")}
    first, second = (f"http://127.0.0.1:{free_port()}" for _ in range(2))
    try:
        for url in (first, second):
            code, out, err = run(env, "chain", "up", "--url", url, "--detach", "--json")
            assert code == 0, err
            assert _json.loads(out)["started"] is True
        remembered = _json.loads((tmp_path / "home" / "settings.json").read_text())
        assert remembered["chain_url"] == second
        pids = sorted((tmp_path / "home" / "nodes").glob("*.pid"))
        assert len(pids) == 2
        # A second `up` on a running node attaches: it keeps the pid file of the node that serves there.
        before = (tmp_path / "home" / "nodes" / f"127.0.0.1-{first.rsplit(':', 1)[1]}.pid").read_text()
        code, out, _ = run(env, "chain", "up", "--url", first, "--detach", "--json")
        assert code == 0 and _json.loads(out)["started"] is False
        assert (
            tmp_path / "home" / "nodes" / f"127.0.0.1-{first.rsplit(':', 1)[1]}.pid"
        ).read_text() == before
        # Later commands go to the remembered node (the first, since `up` just chose it again).
        code, out, err = run(env, "chain", "advance", "3600", "--json")
        assert code == 0, err
        code, out, _ = run(env, "chain", "down", "--url", second, "--json")
        assert code == 0 and _json.loads(out)["stopped"] is True
        assert _answers(first) and not _answers(second)
        code, _, err = run(env, "chain", "down", "--url", second)
        assert code == 2 and "no anvil started here" in err
    finally:
        for url in (first, second):
            run(env, "chain", "down", "--url", url)
    assert not _answers(first)


def test_advance_moves_only_a_local_clock(tmp_path, anvil_node):
    from web3 import Web3

    env = {"TRUSTMARKET_HOME": str(tmp_path / "home"), "TRUSTMARKET_CHAIN_URL": anvil_node.url}
    w3 = Web3(Web3.HTTPProvider(anvil_node.url))
    before = w3.eth.get_block("latest")["timestamp"]
    snapshot = w3.provider.make_request("evm_snapshot", [])["result"]
    try:
        code, out, err = run(env, "chain", "advance", "7200", "--json")
        assert code == 0, err
        assert json.loads(out)["timestamp"] >= before + 7200
    finally:
        w3.provider.make_request("evm_revert", [snapshot])
    code, _, err = run(env, "chain", "advance", "0")
    assert code == 2 and "--help" in err
    url = f"http://127.0.0.1:{free_port()}"
    other = {"TRUSTMARKET_HOME": str(tmp_path / "other"), "TRUSTMARKET_CHAIN_ID": "5"}
    try:
        assert run(other, "chain", "up", "--url", url, "--detach")[0] == 0
        code, _, err = run(other, "chain", "advance", "60")
        assert code == 2 and "chain 5 is not a local chain" in err
    finally:
        run(other, "chain", "down", "--url", url)


def test_others_attach_to_a_deployment_by_cid(env, tmp_path):
    store = str(tmp_path / "shared-store")
    owner = {**env, "TRUSTMARKET_STORE": store}
    code, out, err = run(owner, "chain", "deploy", "--signer", "dev:0", "--json")
    assert code == 0, err
    deployed = json.loads(out)
    someone = {
        "TRUSTMARKET_HOME": str(tmp_path / "someone"),
        "TRUSTMARKET_STORE": store,
        "TRUSTMARKET_ARTIFACTS_PATH": env["TRUSTMARKET_ARTIFACTS_PATH"],
    }
    code, out, err = run(
        someone, "chain", "attach", "--deployments", deployed["cid"], "--url", env["TRUSTMARKET_CHAIN_URL"]
    )
    assert code == 0, err
    code, out, err = run(someone, "chain", "status", "--json")  # the URL and the deployment are remembered
    assert code == 0, err
    assert json.loads(out)["contracts"] == deployed["contracts"]
    wrong = tmp_path / "wrong.json"
    wrong.write_text(Path(deployed["file"]).read_text().replace('"chain_id": 31337', '"chain_id": 5'))
    code, _, err = run(someone, "chain", "attach", "--deployments", str(wrong))
    assert code == 2 and "serves chain 31337, expected 5" in err
    code, _, err = run(
        someone, "chain", "attach", "--deployments", "QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn"
    )
    assert code == 2 and "content not found" in err
