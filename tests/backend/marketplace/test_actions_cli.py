"""Every action a person takes on the contracts has a command: cancel, challenge, resolve, expire, roles, terms,
a source's update, exit and withdrawal; and each refusal is one line that says what to do next."""

from __future__ import annotations

import json

import pytest
from marketplace_helpers import ETH, open_marketplace
from typer.testing import CliRunner

from backend.cli import app

pytestmark = pytest.mark.chain


@pytest.fixture
def marketplace(chain_client, dev_accounts, tmp_path):
    return open_marketplace(chain_client, dev_accounts, tmp_path)


@pytest.fixture
def env(deployed_cli_env, marketplace):
    return {**deployed_cli_env, "TRUSTMARKET_STORE_PATH": str(marketplace.store.root)}


def run(env, *args):
    result = CliRunner().invoke(app, [str(a) for a in args], env=env)
    return result.exit_code, result.stdout, result.stderr


def ok(env, *args):
    code, out, err = run(env, *args, "--json")
    assert code == 0, err
    return json.loads(out)


def refused(env, *args, needles=()):
    code, _, err = run(env, *args)
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1, err
    for needle in needles:
        assert needle in err, err
    return err


def test_a_challenged_round_from_the_challenge_to_the_claims(env, marketplace):
    m = marketplace
    project = m.create(n_trainers=3, challenge_window=3600, challenge_bond=ETH // 10)
    m.submit_honest(project)
    m.runner().finalize(project.id, 0)
    trainer = "dev:5"
    refused(env, "trainer", "claim", "-p", project.id, "--signer", trainer,
            needles=["ClaimsNotOpen", "claims open at", "round 0's challenge window ends", "chain advance"])  # fmt: skip
    shown = ok(env, "project", "status", project.id)
    assert "challenge window ends" in shown["claims"]

    done = ok(env, "project", "challenge", project.id, "-r", 0, "--signer", "dev:4")
    assert done["bond_wei"] == str(ETH // 10)
    refused(env, "trainer", "claim", "-p", project.id, "--signer", trainer,
            needles=["round 0 is under challenge", "project resolve"])  # fmt: skip
    refused(
        env, "project", "challenge", project.id, "-r", 0, "--signer", "dev:4", needles=["AlreadyChallenged"]
    )
    refused(
        env, "project", "resolve", project.id, "-r", 0, "--reject", "--signer", "dev:4", needles=["reverted"]
    )
    refused(env, "project", "resolve", project.id, "-r", 0, "--signer", "dev:3", needles=["--uphold"])
    assert (
        ok(env, "project", "resolve", project.id, "-r", 0, "--reject", "--signer", "dev:3")["upheld"] is False
    )
    refused(
        env, "project", "expire-challenge", project.id, "-r", 0, "--signer", "dev:4", needles=["reverted"]
    )

    ok(env, "chain", "advance", 3601)
    paid = ok(env, "trainer", "claim", "-p", project.id, "--signer", trainer)
    assert int(paid["amount_wei"]) > 0


def test_a_stalled_project_is_cancelled_by_anyone_after_the_deadline(env, marketplace):
    project = marketplace.create(n_trainers=3, round_duration=60, reveal_window=60, aggregation_window=60)
    refused(env, "project", "cancel", project.id, "--signer", "dev:4",
            needles=["DeadlineNotPassed", "anyone may cancel after that", "chain advance"])  # fmt: skip
    ok(env, "chain", "advance", 181)  # commits, reveals and the aggregator's window
    ok(env, "project", "cancel", project.id, "--signer", "dev:4")
    status = ok(env, "project", "status", project.id)
    assert "Cancelled" in str(status["project"]["status"])
    refused(env, "project", "challenge", project.id, "-r", 0, "--signer", "dev:4", needles=["reverted"])


def test_roles_and_terms(env, dev_accounts, tmp_path):
    evaluator = dev_accounts[9].address
    assert ok(env, "roles", "check", "EVALUATOR_ROLE", evaluator)["has_role"] is False
    refused(env, "roles", "grant", "EVALUATOR_ROLE", evaluator, "--signer", "dev:9",
            needles=["lacks DEFAULT_ADMIN_ROLE", "trustmarket roles grant DEFAULT_ADMIN_ROLE"])  # fmt: skip
    ok(env, "roles", "grant", "EVALUATOR_ROLE", evaluator, "--signer", "dev:0")
    assert ok(env, "roles", "check", "EVALUATOR_ROLE", evaluator)["has_role"] is True
    refused(
        env, "roles", "grant", "DEFAULT_ADMIN_ROLE", evaluator, "--signer", "dev:0", needles=["--contract"]
    )
    refused(env, "roles", "grant", "NO_ROLE", evaluator, "--signer", "dev:0", needles=["unknown role"])

    assert ok(env, "terms", "show")["uri"] is None
    terms = tmp_path / "terms.md"
    terms.write_text("# Terms\nUse the models for research only.\n")
    published = ok(env, "terms", "publish", terms, "--signer", "dev:0")
    assert published["version"] == 1 and published["uri"].startswith("ipfs://Qm")
    shown = ok(env, "terms", "show")
    assert shown == {"version": 1, "terms_hash": published["terms_hash"], "uri": published["uri"]}
    refused(env, "terms", "publish", terms, "--signer", "dev:9", needles=["lacks TERMS_ADMIN_ROLE"])
    (tmp_path / "empty.md").write_text(" \n")
    refused(env, "terms", "publish", tmp_path / "empty.md", "--signer", "dev:0", needles=["is empty"])


def test_a_source_updates_exits_and_withdraws(env, tmp_path):
    from pathlib import Path

    packaged = Path(__file__).resolve().parents[3] / "rag" / "data" / "squad_paragraphs.jsonl"
    lines = packaged.read_text().splitlines()
    (tmp_path / "a.jsonl").write_text("\n".join(lines[:4]) + "\n")
    (tmp_path / "b.jsonl").write_text("\n".join(lines[4:8]) + "\n")
    source = ok(env, "rag", "source", "register", "--corpus", tmp_path / "a.jsonl", "--endpoint", "http://a:1",
                "--signer", "dev:11")["source_id"]  # fmt: skip
    refused(
        env,
        "rag",
        "source",
        "update",
        "--source-id",
        source,
        "--signer",
        "dev:11",
        needles=["nothing to update"],
    )
    updated = ok(env, "rag", "source", "update", "--source-id", source, "--endpoint", "http://b:2",
                 "--corpus", tmp_path / "b.jsonl", "--signer", "dev:11")  # fmt: skip
    assert updated["endpoint"] == "http://b:2"
    refused(env, "rag", "source", "update", "--source-id", source, "--endpoint", "http://c:3", "--signer", "dev:12",
            needles=["NotOperator"])  # fmt: skip
    ok(env, "rag", "source", "exit", "--source-id", source, "--signer", "dev:11")
    refused(env, "rag", "source", "withdraw", "--source-id", source, "--signer", "dev:11",
            needles=["ExitNotReady", "can be withdrawn from", "chain advance"])  # fmt: skip
    info = ok(env, "chain", "advance", 30 * 86400)
    assert info["advanced"] == 30 * 86400
    assert (
        int(
            ok(env, "rag", "source", "withdraw", "--source-id", source, "--signer", "dev:11", "--wei")[
                "withdrawn_wei"
            ]
        )
        > 0
    )
