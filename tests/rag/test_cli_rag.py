"""`trustmarket rag`: register, serve (a real process), query and eval, and every failure as one line, exit 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from backend.chain.anvil import free_port
from backend.chain.client import ChainClient
from backend.chain.deploy import deploy_contracts
from backend.chain.source_registry import CONTRACT, DEFAULT_MAX_DELTA, SourceRegistry
from backend.cli import app

pytestmark = pytest.mark.chain

PACKAGED = Path(__file__).resolve().parents[2] / "rag" / "data" / "squad_paragraphs.jsonl"


@pytest.fixture
def env(tmp_path, anvil_node, compiled_artifacts):
    # A fresh home, but the project's embedding cache: vectors are keyed by content, so sharing them is safe.
    shared = PACKAGED.parents[2] / ".trustmarket" / "cache" / "embeddings"
    shared.mkdir(parents=True, exist_ok=True)
    (tmp_path / "home" / "cache").mkdir(parents=True)
    (tmp_path / "home" / "cache" / "embeddings").symlink_to(shared)
    return {
        "TRUSTMARKET_HOME": str(tmp_path / "home"),
        "TRUSTMARKET_CHAIN_URL": anvil_node.url,
        "TRUSTMARKET_DEPLOYMENTS_DIR": str(tmp_path / "deployments"),
        "TRUSTMARKET_ARTIFACTS_PATH": str(compiled_artifacts.path),
    }


@pytest.fixture
def small_jsonl(tmp_path):
    path = tmp_path / "small.jsonl"
    path.write_text("\n".join(PACKAGED.read_text().splitlines()[:6]) + "\n")
    return path


def run(env, *args):
    result = CliRunner().invoke(app, list(args), env=env)
    return result.exit_code, result.stdout, result.stderr


def test_errors_are_one_line_with_exit_2(env, tmp_path, small_jsonl):
    code, _, err = run(env, "rag", "eval", "--corpus", str(tmp_path / "absent.jsonl"))
    assert code == 2 and "no corpus at" in err and len(err.strip().splitlines()) == 1
    code, _, err = run(env, "rag", "query", "Who?")
    assert code == 2 and "no deployments file" in err
    code, _, err = run(env, "rag", "source", "serve", "--corpus", str(small_jsonl), "--source-id", "1",
                       "--signer", "dev:5")  # fmt: skip
    assert code == 2 and "no deployments file" in err
    code, _, err = run(env, "rag", "eval", "--queries", "0")
    assert code == 2 and "queries must be at least 1" in err
    code, _, err = run(env, "rag", "eval", "--scenario", "mutiny", "--queries", "1")
    assert code == 2 and "unknown scenario 'mutiny'" in err and len(err.strip().splitlines()) == 1
    bad = tmp_path / "bad.json"
    bad.write_text('{"sources": [{"pollution": 0}, {"polution": 1}]}')
    code, _, err = run(env, "rag", "eval", "--scenario-file", str(bad), "--queries", "1")
    assert (
        code == 2
        and "bad.json: source 1: unknown key(s) polution" in err
        and len(err.strip().splitlines()) == 1
    )
    code, _, err = run(env, "rag", "eval", "--pollution", "0,half", "--queries", "1")
    assert code == 2 and "--pollution takes fractions separated by commas" in err
    code, _, err = run(env, "rag", "eval", "--pollution", "0,nan", "--queries", "1")
    assert code == 2 and "pollution must lie in [0, 1]" in err


@pytest.mark.slow
def test_register_serve_and_query(env, small_jsonl, tmp_path, anvil_node, compiled_artifacts, dev_accounts):
    # Only the registry, with this package's defaults: the test does not depend on the other contracts' set-up.
    client = ChainClient(anvil_node.url, compiled_artifacts)
    deployments = deploy_contracts(client, dev_accounts[0], network="ethereum:local:foundry", names=(CONTRACT,),
                                   overrides={CONTRACT: {"maxDelta": DEFAULT_MAX_DELTA}})  # fmt: skip
    deployments.save(tmp_path / "deployments" / "local.json")
    port = free_port()
    code, out, err = run(env, "rag", "source", "register", "--corpus", str(small_jsonl), "--endpoint",
                         f"http://127.0.0.1:{port}", "--signer", "dev:5", "--json")  # fmt: skip
    assert code == 0, err
    source_id = json.loads(out)["source_id"]
    # The key must be the operator's, and the corpus the one committed on chain.
    code, _, err = run(env, "rag", "source", "serve", "--corpus", str(small_jsonl), "--source-id",
                       str(source_id), "--signer", "dev:6")  # fmt: skip
    assert code == 2 and "is operated by" in err
    other = tmp_path / "other.jsonl"
    other.write_text(small_jsonl.read_text().replace("Rollo", "Hastein"))
    code, _, err = run(env, "rag", "source", "serve", "--corpus", str(other), "--source-id", str(source_id),
                       "--signer", "dev:5")  # fmt: skip
    assert code == 2 and "does not match the commitment" in err
    command = [sys.executable, "-c", "from backend.cli import main; main()", "rag", "source", "serve", "--corpus",
               str(small_jsonl), "--source-id", str(source_id), "--signer", "dev:5", "--port", str(port)]  # fmt: skip
    server = subprocess.Popen(command, env={**os.environ, **env}, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert server.poll() is None, server.stderr.read().decode()
            assert time.monotonic() < deadline, "the source node did not start"
            time.sleep(0.5)
        code, out, err = run(env, "rag", "query", "Who was the Norse leader?", "--sources", "1", "--gold", "Rollo",
                             "--json")  # fmt: skip
        assert code == 0, err
        answer = json.loads(out)
        assert "Rollo" in answer["answer"] and answer["citations"][0]["source_id"] == source_id
        assert answer["sources"][0]["status"] == "ok"
        # No key was given: the feedback is stored, and goes on chain with a flush by an evaluator only (the
        # deployer, account 0, is one; account 2 is not).
        code, _, err = run(env, "rag", "flush", "--signer", "dev:2")
        assert code == 2 and "AccessControlUnauthorizedAccount" in err and len(err.strip().splitlines()) == 1
        registry = SourceRegistry(ChainClient(anvil_node.url, compiled_artifacts, deployments))
        registry.grant_evaluator(dev_accounts[0], dev_accounts[1].address)
        code, out, err = run(env, "rag", "flush", "--signer", "dev:1", "--json")
        assert code == 0, err
        flushed = json.loads(out)
        assert flushed["batch"] == 1 and flushed["epoch"] == registry.current_epoch()
        assert registry.reliability(source_id).observations > 0
        assert json.loads(run(env, "rag", "flush", "--signer", "dev:1", "--json")[1]) == {}
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.mark.slow
def test_eval_of_a_scenario_file_with_more_operators_than_default_wallets(env, small_jsonl, tmp_path):
    """A scenario of one's own: 19 operators (anvil starts with a wallet for each), 3 colluding on one copy, and
    two sleepers turning at users' queries 3 and 7."""
    path = tmp_path / "crowd.json"
    sources = [{"count": 14}, {"pollution": 1, "stream": 50, "attacker": True, "count": 3},
               {"pollution": 1, "turn_at": 3, "attacker": True}, {"pollution": 1, "turn_at": 7, "attacker": True}]  # fmt: skip
    path.write_text(json.dumps({"description": "a crowd", "sources": sources}))
    args = ["rag", "eval", "--corpus", str(small_jsonl), "--queries", "10", "--no-clean", "--json",
            "--probation", "0", "--scenario-file", str(path)]  # fmt: skip
    code, out, err = run(env, *args)
    assert code == 0, err
    report = json.loads(out)
    assert report["scenario"] == {"name": "crowd", "description": "a crowd"}
    sources = report["sources"]
    assert len(sources) == 19 and len({s["operator"] for s in sources}) == 19
    assert [s["attacker"] for s in sources] == [False] * 14 + [True] * 5
    assert all(s["bond"] > 0 for s in sources)
    assert [(s["source"], s["turned_at"]) for s in report["sleepers"]] == [
        (sources[17]["id"], 3),
        (sources[18]["id"], 7),
    ]
    assert report["sleeper"] in report["sleepers"]


@pytest.mark.slow
def test_eval_json_over_real_http(env, small_jsonl):
    """A small run of the experiment with the six nodes served by uvicorn on loopback ports."""
    args = ["rag", "eval", "--corpus", str(small_jsonl), "--queries", "12", "--no-clean", "--http", "--json",
            "--probation", "0"]  # fmt: skip
    code, out, err = run(env, *args)
    assert code == 0, err
    report = json.loads(out)
    assert set(report) >= {"decentralized", "centralized", "sources", "gas", "metric", "queries"}
    assert "clean" not in report and report["queries"] == 12 and len(report["sources"]) == 6
    assert report["scenario"]["name"] == "independent" and report["canaries"]["asked"] == 2  # one per epoch
    assert report["probation_epochs"] == 0
    assert report["gas"]["batches"] == 2  # one batch per epoch of 10 queries
    assert 0 <= report["decentralized"]["accuracy"] <= 1 and 0 <= report["centralized"]["accuracy"] <= 1
    assert sum(s["observations"] for s in report["sources"]) > 0
