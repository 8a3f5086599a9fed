"""The verifier service (`backend.committee.service`, `trustmarket verifier run`) on a real training round.

A project runs one round through the CLI (owner, trainers, aggregator); four committee members recompute it with
the deterministic aggregator. Honest result: three signatures reach the quorum and the round is attested. A result
the aggregator tampered with: the verifier raises the market's challenge and signs nothing.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from aggregator.data import load_digits_data, non_iid_splits
from backend.chain.training_market import ChallengeState, RoundResult, TrainingMarket
from backend.chain.verifier_committee import CommitteeError, VerifierCommittee
from backend.cli import app
from backend.committee import bls
from backend.committee.attestation import join
from backend.committee.exchange import SignatureExchange
from backend.committee.service import CommitteeService
from backend.marketplace.manifest import ContentRef
from backend.marketplace.runner import RoundRunner
from backend.settings import Settings
from backend.storage import open_store

pytestmark = [pytest.mark.chain, pytest.mark.slow]

OWNER, AGGREGATOR, ARBITER = 1, 2, 3
TRAINERS = [4, 5, 6]
VERIFIERS = [10, 11, 12, 13]
KEYS = [bls.derive_keypair(hashlib.sha256(f"service key {i}".encode()).digest()) for i in range(4)]


def cli(env, *args):
    result = CliRunner().invoke(app, [str(a) for a in args], env=env)
    assert result.exit_code == 0, result.stderr or result.stdout
    return json.loads(result.stdout) if "--json" in args else result.stdout


@pytest.fixture
def env(deployed_cli_env):
    return deployed_cli_env


@pytest.fixture
def store(env):
    return open_store(Settings(store_path=env["TRUSTMARKET_STORE_PATH"]))


@pytest.fixture
def committee(chain_client, dev_accounts):
    vc = VerifierCommittee(chain_client)
    for i, keys in zip(VERIFIERS, KEYS, strict=True):
        vc.admit(dev_accounts[0], dev_accounts[i].address)  # the deployer admits each member
        join(vc, dev_accounts[i], keys, vc.min_stake())
    return vc


def run_round(env, tmp_path, dev_accounts) -> int:
    """A one-round project with three trainers, everything committed and revealed; returns the project id."""
    data = load_digits_data(0)
    np.savez(tmp_path / "validation.npz", X=data.validation.X.numpy(), y=data.validation.y.numpy())
    project = cli(
        env, "project", "create", "--validation", tmp_path / "validation.npz",
        "--aggregator", dev_accounts[AGGREGATOR].address, "--arbiter", dev_accounts[ARBITER].address,
        "--reward", "1", "--stake", "0.1", "--rounds", "1", "--rule", "fedavg", "--signer", f"dev:{OWNER}", "--json",
    )["project"]  # fmt: skip
    shards = non_iid_splits(data.train, len(TRAINERS), 5.0, 0)
    for i, shard in zip(TRAINERS, shards, strict=True):
        np.savez(tmp_path / f"t{i}.npz", X=shard.X.numpy(), y=shard.y.numpy())
        cli(env, "trainer", "register", "-p", project, "--stake", "0.1", "--signer", f"dev:{i}")
        update = tmp_path / f"u{project}-{i}.safetensors"
        cli(
            env,
            "trainer",
            "train",
            "-p",
            project,
            "--data",
            tmp_path / f"t{i}.npz",
            "--out",
            update,
            "--epochs",
            1,
        )
        cli(env, "trainer", "submit", "-p", project, "--update", update, "--signer", f"dev:{i}")
    # The commit window ends; the owner reveals the round's validation shard, the trainers their updates.
    cli(env, "chain", "advance", 3601)  # past the window: commits close at its last second
    cli(env, "project", "reveal-validation", project, "--signer", f"dev:{OWNER}")
    for i in TRAINERS:
        cli(env, "trainer", "reveal", "-p", project, "--signer", f"dev:{i}")
    return int(project)


def service(chain_client, committee, store, dev_accounts, index, exchange, **kwargs):
    market = TrainingMarket(chain_client)
    return CommitteeService(
        market, committee, store, KEYS[index], dev_accounts[VERIFIERS[index]], exchange, **kwargs
    )


def test_honest_round_is_attested_by_the_committee(
    env, tmp_path, chain_client, committee, store, dev_accounts
):
    project = run_round(env, tmp_path, dev_accounts)
    cli(env, "aggregate", "-p", project, "--signer", f"dev:{AGGREGATOR}", "--json")
    exchange = SignatureExchange(tmp_path / "exchange")
    market = TrainingMarket(chain_client)
    (exchange.root / market.address / str(project) / "0").mkdir(parents=True)
    (exchange.root / market.address / str(project) / "0" / "junk.json").write_text("{")  # ignored
    first, second, third = (
        service(chain_client, committee, store, dev_accounts, i, exchange) for i in range(3)
    )
    assert [o.action for o in first.run_once()] == ["signed"]
    assert [o.action for o in first.run_once()] == ["signed"]  # waits for the quorum, without recomputing
    assert [o.action for o in second.run_once()] == ["signed"]
    assert not committee.is_attested(market.address, project, 0)
    (outcome,) = third.run_once()
    assert outcome.action == "attested" and outcome.detail.startswith("3 signers")
    assert committee.is_attested(market.address, project, 0)
    assert [o.action for o in first.run_once()] == ["attested"]
    assert first.run_once() == []  # settled
    # The fourth member, through the CLI: nothing left to do but to see it attested.
    key_file = tmp_path / "v4.json"
    key_file.write_text(json.dumps({"secret": hex(KEYS[3].secret)}))
    out = cli(
        env, "verifier", "run", "--bls-key", key_file, "--exchange", exchange.root, "--once",
        "--signer", f"dev:{VERIFIERS[3]}", "--json",
    )  # fmt: skip
    assert out == [{"action": "attested", "detail": "already attested", "project": project, "round": 0}]


def test_a_tampered_result_is_challenged_not_signed(
    env, tmp_path, chain_client, committee, store, dev_accounts
):
    project = run_round(env, tmp_path, dev_accounts)
    market = TrainingMarket(chain_client)
    runner = RoundRunner(market, store, dev_accounts[AGGREGATOR])
    _, outcome = runner.compute(project, 0)
    trainers = sorted(outcome.scores_fixed, key=lambda a: int(a, 16))
    scores = [outcome.scores_fixed[t] for t in trainers]
    scores[0] += 1000  # the aggregator favours one trainer
    model = ContentRef(cid=store.put(outcome.model_bytes), sha256=outcome.model_sha256)
    report = ContentRef(cid=store.put(outcome.report_bytes), sha256=outcome.report_sha256)
    result = RoundResult(model.cid, model.sha256, trainers, scores, [], report.cid, report.sha256)
    market.finalize_round(dev_accounts[AGGREGATOR], project, 0, result)
    exchange = SignatureExchange(tmp_path / "exchange")

    quiet = service(chain_client, committee, store, dev_accounts, 1, exchange, challenge=False)
    (seen,) = quiet.run_once()
    assert seen.action == "mismatch" and f"score of {trainers[0]}: posted {scores[0]}" in seen.detail
    (raised,) = service(chain_client, committee, store, dev_accounts, 0, exchange).run_once()
    assert raised.action == "challenged"
    assert market.round(project, 0).challenge is ChallengeState.OPEN
    assert exchange.collect(market.address, project, 0) == []  # nobody signed
    (again,) = service(chain_client, committee, store, dev_accounts, 2, exchange).run_once()
    assert again.action == "mismatch" and "challenge not raised" in again.detail


def test_a_service_needs_a_registered_key(chain_client, committee, store, dev_accounts, tmp_path):
    market = TrainingMarket(chain_client)
    with pytest.raises(CommitteeError, match="not a committee member"):
        CommitteeService(
            market, committee, store, KEYS[1], dev_accounts[VERIFIERS[0]], SignatureExchange(tmp_path)
        )
