"""`trustmarket verifier` end to end against anvil: keygen, register, sign, aggregate, submit, status, exit."""

from __future__ import annotations

import json
import stat

import pytest
from typer.testing import CliRunner

from backend.chain.artifacts import Artifacts
from backend.chain.client import ChainClient
from backend.chain.keys import dev_account
from backend.cli import app

pytestmark = pytest.mark.chain

PROJECT = 3
DIGEST = "0x" + "ab" * 32


@pytest.fixture(scope="module")
def artifacts_path(compiled_artifacts):
    # The test market is compiled by path (Ape's 500-file source scan does not reach contracts/test/).
    import ape

    ape.project.load_contracts("contracts/test/TestRoundMarket.sol")
    return ape.project.path / ".build" / "__local__.json"


@pytest.fixture
def env(tmp_path, anvil_node, artifacts_path):
    env = {
        "TRUSTMARKET_HOME": str(tmp_path / "home"),
        "TRUSTMARKET_CHAIN_URL": anvil_node.url,
        "TRUSTMARKET_DEPLOYMENTS_DIR": str(tmp_path / "deployments"),
        "TRUSTMARKET_ARTIFACTS_PATH": str(artifacts_path),
    }
    client = ChainClient(anvil_node.url, Artifacts.load(artifacts_path))
    snapshot = client.w3.provider.make_request("evm_snapshot", [])["result"]
    code, _, err = run(env, "chain", "deploy", "--signer", "dev:0", "--json")
    assert code == 0, err
    owner = dev_account(0, 31337)
    market = client.deploy(owner, "TestRoundMarket")["contractAddress"]
    client.transact(owner, "TestRoundMarket", "setRoundResultDigest", PROJECT, 0, DIGEST, address=market)
    env["market"] = market
    yield env
    client.w3.provider.make_request("evm_revert", [snapshot])


def run(env, *args):
    clean = {k: v for k, v in env.items() if k.startswith("TRUSTMARKET_")}
    result = CliRunner().invoke(app, list(args), env=clean)
    return result.exit_code, result.stdout, result.stderr


def ok(env, *args):
    code, out, err = run(env, *args, "--json")
    assert code == 0, err or out
    return json.loads(out)


def seat(env, tmp_path, n):
    for i in range(1, n + 1):
        ok(
            env, "verifier", "admit", dev_account(i, 31337).address, "--signer", "dev:0"
        )  # the deployer admits
        ok(env, "verifier", "keygen", "--out", str(tmp_path / f"v{i}.json"))
        ok(env, "verifier", "register", "--bls-key", str(tmp_path / f"v{i}.json"), "--signer", f"dev:{i}")


def sign(env, tmp_path, i, digest=DIGEST):
    return run(
        env, "verifier", "sign", "--bls-key", str(tmp_path / f"v{i}.json"),
        "--verifier", dev_account(i, 31337).address, "--digest", digest, "--project", str(PROJECT),
        "--round", "0", "--market", env["market"], "--out", str(tmp_path / f"s{i}.json"),
    )  # fmt: skip


def test_keygen_writes_a_private_key_file(env, tmp_path):
    key = tmp_path / "key.json"
    shown = ok(env, "verifier", "keygen", "--out", str(key))
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert "secret" not in shown and len(shown["public_g2"]) == 4
    code, _, err = run(env, "verifier", "keygen", "--out", str(key))
    assert code == 2 and "--force" in err


def test_a_committee_attests_through_the_cli(env, tmp_path):
    seat(env, tmp_path, 4)
    assert [m["index"] for m in ok(env, "verifier", "members")] == [0, 1, 2, 3]
    for i in (1, 2, 3):
        code, _, err = sign(env, tmp_path, i)
        assert code == 0, err
    files = [str(tmp_path / f"s{i}.json") for i in (1, 2, 3)]
    aggregated = ok(env, "verifier", "aggregate", *files, "--out", str(tmp_path / "att.json"))
    assert aggregated["left_out"] == {} and len(aggregated["signers"]) == 3
    status = ["verifier", "status", "--project", str(PROJECT), "--round", "0", "--market", env["market"]]
    assert ok(env, *status)["attested"] is False
    result = ok(env, "verifier", "submit", str(tmp_path / "att.json"), "--signer", "dev:9")
    assert result["signed_weight"] * 4 == result["total_weight"] * 3
    assert ok(env, *status) == {"attested": True, "digest": DIGEST, "epoch": 4, "pinned": True}
    code, _, err = run(env, "verifier", "submit", str(tmp_path / "att.json"), "--signer", "dev:9")
    assert code == 2 and "AlreadyAttested" in err and len(err.strip().splitlines()) == 1


def test_sign_refuses_a_digest_the_market_does_not_store(env, tmp_path):
    seat(env, tmp_path, 1)
    code, _, err = sign(env, tmp_path, 1, digest="0x" + "cd" * 32)
    assert code == 2 and "raise a challenge instead" in err
    code, _, err = sign(env, tmp_path, 1, digest="0x12")
    assert code == 2 and "32 bytes" in err
    ok(env, "verifier", "keygen", "--out", str(tmp_path / "v2.json"))  # a key that is not registered
    code, _, err = run(
        env, "verifier", "sign", "--bls-key", str(tmp_path / "v2.json"), "--verifier", dev_account(1, 31337).address,
        "--digest", DIGEST, "--project", str(PROJECT), "--round", "0", "--market", env["market"],
        "--out", str(tmp_path / "s.json"),
    )  # fmt: skip
    assert code == 2 and "not registered with this BLS key" in err


def test_aggregate_without_quorum_and_bad_files(env, tmp_path):
    seat(env, tmp_path, 3)
    sign(env, tmp_path, 1)
    code, _, err = run(
        env, "verifier", "aggregate", str(tmp_path / "s1.json"), "--out", str(tmp_path / "a.json")
    )
    assert code == 2 and "no quorum" in err
    (tmp_path / "junk.json").write_text("{not json")
    code, _, err = run(
        env, "verifier", "aggregate", str(tmp_path / "junk.json"), "--out", str(tmp_path / "a.json")
    )
    assert code == 2 and "invalid JSON" in err
    (tmp_path / "nokey.json").write_text('{"public": 1}')
    code, _, err = run(
        env, "verifier", "register", "--bls-key", str(tmp_path / "nokey.json"), "--signer", "dev:5"
    )
    assert code == 2 and "not a BLS key file" in err


def test_exit_and_early_withdraw(env, tmp_path):
    seat(env, tmp_path, 1)
    assert ok(env, "verifier", "exit", "--signer", "dev:1")["withdrawable_at"] > 0
    code, _, err = run(env, "verifier", "withdraw", "--signer", "dev:1")
    assert code == 2 and "ExitDelayNotOver" in err
    code, _, err = run(env, "verifier", "status", "--project", "9", "--round", "0", "--market", env["market"])
    assert code == 2 and "not finalized" in err
