"""Attested rounds end to end: a committee of three verifiers recomputes a real training round, signs, aggregates
and submits one BLS attestation; the attested round stays challengeable until its window ends (an attestation is
no reason to stop listening to challengers, F-4 of #12), and the trainers claim after it.

Everything runs on the session's deployment (`deploy_contracts`: VerifierCommittee first, TrainingMarket wired
to it), the project through the CLI (owner, trainers, aggregator) and the verifiers through
`backend.committee.service.CommitteeService`.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from sealed_helpers import reveal_round
from typer.testing import CliRunner

from aggregator.data import load_digits_data, non_iid_splits
from backend.chain.anvil import mine_at
from backend.chain.deploy import deploy_contracts
from backend.chain.errors import revert_class
from backend.chain.training_market import TrainingMarket
from backend.chain.verifier_committee import VerifierCommittee
from backend.cli import app
from backend.committee import bls
from backend.committee.attestation import join
from backend.committee.exchange import SignatureExchange
from backend.committee.service import CommitteeService
from backend.settings import Settings
from backend.storage import open_store

pytestmark = pytest.mark.chain

OWNER, AGGREGATOR, ARBITER, CHALLENGER = 1, 2, 3, 9
TRAINERS = [4, 5, 6]
VERIFIERS = [10, 11, 12]
KEYS = [bls.derive_keypair(hashlib.sha256(f"attested rounds key {i}".encode()).digest()) for i in range(3)]
CHALLENGE_WINDOW = 3600
ETH = 10**18


def cli(env, *args):
    result = CliRunner().invoke(app, [str(a) for a in args], env=env)
    assert result.exit_code == 0, result.stderr or result.stdout
    return json.loads(result.stdout)


@pytest.fixture
def env(deployed_cli_env):
    return deployed_cli_env


def test_the_deployed_market_trusts_the_deployed_committee(chain_client, dev_accounts):
    market = TrainingMarket(chain_client)
    assert market.committee_address() == chain_client.address_of("VerifierCommittee")
    # Deployed on its own, a market has no committee; one that is not a contract is refused.
    alone = deploy_contracts(chain_client, dev_accounts[0], network="test", names=("TrainingMarket",))
    assert TrainingMarket(chain_client, alone.contracts["TrainingMarket"].address).committee_address() is None
    with pytest.raises(revert_class("TrainingMarket", "InvalidParameter"), match="Committee"):
        deploy_contracts(
            chain_client,
            dev_accounts[0],
            network="test",
            names=("TrainingMarket",),
            overrides={"TrainingMarket": {"committee": dev_accounts[7].address}},
        )


@pytest.mark.slow
def test_an_attested_round_stays_challengeable_and_claims_open_after_its_window(
    env, tmp_path, chain_client, dev_accounts
):
    committee = VerifierCommittee(chain_client)
    for i, keys in zip(VERIFIERS, KEYS, strict=True):  # seated before the round: the snapshot is pinned then
        committee.admit(dev_accounts[0], dev_accounts[i].address)  # the deployer admits each member
        join(committee, dev_accounts[i], keys, committee.min_stake())

    data = load_digits_data(0)
    np.savez(tmp_path / "validation.npz", X=data.validation.X.numpy(), y=data.validation.y.numpy())
    project = cli(
        env, "project", "create", "--validation", tmp_path / "validation.npz",
        "--aggregator", dev_accounts[AGGREGATOR].address, "--arbiter", dev_accounts[ARBITER].address,
        "--reward", "1", "--stake", "0.1", "--rounds", "1", "--rule", "fedavg",
        "--challenge-window", CHALLENGE_WINDOW, "--signer", f"dev:{OWNER}", "--json",
    )["project"]  # fmt: skip
    for i, shard in zip(TRAINERS, non_iid_splits(data.train, len(TRAINERS), 5.0, 0), strict=True):
        np.savez(tmp_path / f"t{i}.npz", X=shard.X.numpy(), y=shard.y.numpy())
        update = tmp_path / f"u{i}.safetensors"
        cli(env, "trainer", "register", "-p", project, "--stake", "0.1", "--signer", f"dev:{i}", "--json")
        cli(env, "trainer", "train", "-p", project, "--data", tmp_path / f"t{i}.npz", "--out", update,
            "--epochs", 1, "--json")  # fmt: skip
        cli(env, "trainer", "submit", "-p", project, "--update", update, "--signer", f"dev:{i}", "--json")
    reveal_round(env, project, TRAINERS, owner=OWNER)
    cli(env, "aggregate", "-p", project, "--signer", f"dev:{AGGREGATOR}", "--json")

    market = TrainingMarket(chain_client)
    project = int(project)
    assert not market.claims_open(project) and not market.is_round_final(project, 0)
    store = open_store(Settings(store_path=env["TRUSTMARKET_STORE_PATH"]))
    exchange = SignatureExchange(tmp_path / "exchange")
    services = [
        CommitteeService(market, committee, store, keys, dev_accounts[i], exchange)
        for i, keys in zip(VERIFIERS, KEYS, strict=True)
    ]
    outcomes = [service.run_once() for service in services]
    # Each recomputes the round; the second signature reaches 2/3 of the stake and is submitted.
    assert [[o.action for o in batch] for batch in outcomes] == [["signed"], ["attested"], ["attested"]]
    assert outcomes[1][0].detail.startswith("2 signers") and outcomes[2][0].detail == "already attested"

    assert market.is_round_attested(project, 0)
    # Attested, but final only once its window ends: a challenge is still heard, and claims wait.
    assert not market.is_round_final(project, 0) and not market.claims_open(project)
    rpc = chain_client.w3.provider.make_request
    before = rpc("evm_snapshot", [])["result"]
    market.challenge(dev_accounts[CHALLENGER], project, 0, market.project(project).challenge_bond)
    assert market.project(project).open_challenges == 1
    rpc("evm_revert", [before])  # (the challenge's ruling is tested with the market)
    mine_at(chain_client, market.round(project, 0).finalized_at + CHALLENGE_WINDOW + 1)
    assert market.is_round_final(project, 0) and market.claims_open(project)
    paid = 0
    for i in [*TRAINERS, OWNER]:
        paid += int(
            cli(env, "trainer", "claim", "-p", project, "--signer", f"dev:{i}", "--json")["amount_wei"]
        )
    assert paid == ETH + len(TRAINERS) * ETH // 10
    assert chain_client.balance(market.address) == 0
