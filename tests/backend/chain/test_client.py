"""The chain client against a real anvil: calls, transactions, decoded custom errors, events, failure modes."""

from __future__ import annotations

import json

import pytest

from backend.chain.anvil import free_port
from backend.chain.artifacts import Artifacts
from backend.chain.client import ChainClient
from backend.chain.deployments import Deployments
from backend.chain.errors import (
    ArtifactsMissing,
    ChainUnavailable,
    ContractRevert,
    NotDeployed,
    WrongChain,
    revert_class,
)


@pytest.fixture
def probe(anvil_node, compiled_artifacts, dev_accounts):
    client = ChainClient(anvil_node.url, compiled_artifacts)
    receipt = client.deploy(dev_accounts[0], "ChainClientProbe", 41)
    return client, receipt["contractAddress"]


def test_call_and_transact_round_trip(probe, dev_accounts):
    client, address = probe
    assert client.call("ChainClientProbe", "value", address=address) == 41
    receipt = client.transact(dev_accounts[1], "ChainClientProbe", "store", 5, address=address)
    assert receipt["status"] == 1
    assert client.call("ChainClientProbe", "value", address=address) == 5


def test_custom_error_is_raised_with_its_solidity_name_and_arguments(probe, dev_accounts):
    client, address = probe
    with pytest.raises(revert_class("ChainClientProbe", "ZeroValue")) as caught:
        client.transact(dev_accounts[1], "ChainClientProbe", "store", 0, address=address)
    assert isinstance(caught.value, ContractRevert)
    assert caught.value.error_args == {"caller": dev_accounts[1].address, "code": 7}
    assert "ZeroValue(caller=" in str(caught.value)
    # Nothing was stored.
    assert client.call("ChainClientProbe", "value", address=address) == 41


def test_string_revert_and_panic_are_decoded(probe, dev_accounts):
    client, address = probe
    with pytest.raises(revert_class("ChainClientProbe", "Error"), match="plain failure"):
        client.call("ChainClientProbe", "fail", address=address)
    with pytest.raises(revert_class("ChainClientProbe", "Panic"), match="0x12"):
        client.call("ChainClientProbe", "divide", 0, address=address)


def test_events_by_block_range(probe, dev_accounts):
    client, address = probe
    start = client.block_number()
    for v in (1, 2, 3):
        client.transact(dev_accounts[2], "ChainClientProbe", "store", v, address=address)
    logs = client.events("ChainClientProbe", "Stored", from_block=start, address=address)
    assert [log["args"]["value"] for log in logs] == [1, 2, 3]
    filtered = client.events(
        "ChainClientProbe",
        "Stored",
        from_block=start,
        address=address,
        filters={"who": dev_accounts[3].address},
    )
    assert filtered == []


def test_chain_unreachable_is_a_clear_error(compiled_artifacts):
    client = ChainClient(f"http://127.0.0.1:{free_port()}", compiled_artifacts, request_timeout=1)
    with pytest.raises(ChainUnavailable, match="cannot reach the chain"):
        _ = client.chain_id


def test_wrong_chain_id_is_refused(anvil_node, compiled_artifacts):
    client = ChainClient(anvil_node.url, compiled_artifacts, expected_chain_id=1)
    with pytest.raises(WrongChain, match="serves chain 31337, expected 1"):
        client.check()


def test_contract_not_deployed_at_the_address(anvil_node, compiled_artifacts, dev_accounts):
    deployments = Deployments(network="local", chain_id=31337)
    client = ChainClient(anvil_node.url, compiled_artifacts, deployments)
    with pytest.raises(NotDeployed, match="TrainingMarket is not deployed"):
        client.contract("TrainingMarket")
    with pytest.raises(NotDeployed, match="no contract code at"):
        client.contract("ChainClientProbe", address=dev_accounts[5].address)


def test_deployments_file_round_trip_and_malformed(tmp_path):
    deployments = Deployments(network="local", chain_id=31337)
    path = tmp_path / "local.json"
    deployments.save(path)
    assert Deployments.load(path) == deployments
    path.write_text("{not json")
    with pytest.raises(NotDeployed, match="not valid JSON"):
        Deployments.load(path)
    path.write_text(json.dumps({"network": "local"}))
    with pytest.raises(NotDeployed, match="malformed"):
        Deployments.load(path)
    with pytest.raises(NotDeployed, match="run `trustmarket chain deploy`"):
        Deployments.load(tmp_path / "missing.json")


def test_missing_artifacts(tmp_path, compiled_artifacts):
    with pytest.raises(ArtifactsMissing, match="ape compile"):
        Artifacts.load(tmp_path / "nope.json")
    with pytest.raises(ArtifactsMissing, match="Nonexistent"):
        compiled_artifacts.abi("Nonexistent")


def test_deploy_writes_a_usable_record(deployed, anvil_node, compiled_artifacts):
    client = ChainClient(anvil_node.url, compiled_artifacts, deployed, expected_chain_id=31337)
    assert client.check() == 31337
    for name in deployed.contracts:
        assert client.contract(name).address == deployed.address(name)


def test_deployer_may_apply_source_feedback(deployed, anvil_node, compiled_artifacts):
    from web3 import Web3

    from backend.chain.source_registry import EVALUATOR_ROLE

    client = ChainClient(anvil_node.url, compiled_artifacts, deployed)
    assert client.call(
        "SourceRegistry", "hasRole", EVALUATOR_ROLE, Web3.to_checksum_address(deployed.deployer)
    )


def test_a_node_that_refuses_to_mine_is_one_chain_error_not_a_silent_no_op():
    from types import SimpleNamespace

    from backend.chain.anvil import advance_clock
    from backend.chain.errors import ChainError

    refusing = SimpleNamespace(
        make_request=lambda method, params: {"error": {"message": f"{method} disabled"}}
    )
    client = SimpleNamespace(
        chain_id=31337, url="http://node", timestamp=lambda: 1_000, w3=SimpleNamespace(provider=refusing)
    )
    with pytest.raises(ChainError, match=r"refused to mine at 1060: .*evm_mine disabled"):
        advance_clock(client, 60)
