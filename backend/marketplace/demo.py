"""`make demo`: the training marketplace end to end on a local anvil chain with the local content store.

An owner escrows a reward; ten trainers on non-IID shards of scikit-learn digits register with a stake: five honest,
one sign-flipper, one label-flipper, one free-rider and two Sybil copies of one label-flipping attacker. Each round
every trainer fetches the global model (verified by hash), trains or misbehaves and commits to its update (kept in
its own home); once the commits close the owner reveals the round's validation shard and every trainer stores and
reveals its update; the aggregator removes outliers, aggregates, scores on that shard and finalizes. An outsider verifies every round,
everyone claims, and the run is written to `runs/demo/report.json`.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from eth_account.signers.local import LocalAccount
from web3.types import RPCEndpoint

from aggregator.data import NUM_CLASSES, load_digits_data, non_iid_splits
from aggregator.defaults import DEFAULT_RULE, default_defenses, default_rule_params
from aggregator.examples import Examples
from aggregator.models import evaluate
from aggregator.schema import DataSchema
from aggregator.simulation import DEMO_ATTACKERS, role_updates, simulate
from backend.chain.anvil import Anvil, start_anvil
from backend.chain.artifacts import Artifacts
from backend.chain.client import ChainClient
from backend.chain.deploy import deploy_contracts
from backend.chain.deployments import Deployments
from backend.chain.keys import dev_account
from backend.chain.training_market import TrainingMarket
from backend.marketplace.local import play_sealed_round
from backend.marketplace.publish import publish_project
from backend.marketplace.recompute import verify_round
from backend.marketplace.runner import FinalizedRound, RoundRunner
from backend.marketplace.trainer import current_model, encode_update
from backend.settings import Settings
from backend.storage import LocalStore

__all__ = ["DemoConfig", "LocalMarket", "local_market", "run_demo", "settle"]

ETH = 10**18


@dataclass(frozen=True)
class DemoConfig:
    n_honest: int = 5
    attackers: dict[str, int] = field(default_factory=lambda: dict(DEMO_ATTACKERS))
    rounds: int = 5
    seed: int = 0
    # What `project create` picks with no flags (aggregator.defaults).
    rule: str = DEFAULT_RULE
    rule_params: dict[str, Any] = field(default_factory=default_rule_params)
    defenses: list[dict[str, Any]] = field(default_factory=default_defenses)
    epochs: int = 10
    batch_size: int = 16
    pool_wei: int = 10 * ETH
    stake_wei: int = ETH // 10
    challenge_window: int = 2  # seconds: long enough to be real, short enough for a demo
    slash_after_flags: int = 3
    slash_bps: int = 5_000


def _roles(config: DemoConfig) -> list[str]:
    roles = ["honest"] * config.n_honest
    for role, count in sorted(config.attackers.items()):
        roles += [role] * count
    return roles


def run_demo(
    out_dir: Path = Path("runs/demo"),
    config: DemoConfig | None = None,
    *,
    settings: Settings | None = None,
    chain_url: str | None = None,
    deployments: Deployments | None = None,
    on_round: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Run the demo and return (and write) its report. With `deployments` (on the node at `chain_url`) the demo
    uses the market deployed there, e.g. one wired to a verifier committee, instead of deploying its own."""
    config = config or DemoConfig()
    settings = settings or Settings()
    out_dir.mkdir(parents=True, exist_ok=True)
    node: Anvil = start_anvil(chain_url, attach=chain_url is not None)
    # Digits-sized tensors gain nothing from intra-op threads, and on a busy machine OpenMP workers waiting for a
    # core make every small op many times slower.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _run(out_dir, config, settings, node.url, deployments, on_round)
    finally:
        torch.set_num_threads(threads)
        node.stop()


@dataclass(frozen=True)
class LocalMarket:
    """A freshly deployed TrainingMarket on a local chain, a content store and the demo's fixed roles."""

    client: ChainClient
    market: TrainingMarket
    store: LocalStore
    owner: LocalAccount
    aggregator: LocalAccount
    arbiter: LocalAccount


def local_market(
    settings: Settings, url: str, out_dir: Path, deployments: Deployments | None = None
) -> LocalMarket:
    """TrainingMarket on the chain at `url`: `deployments` when given, else deployed now (dev accounts 0-3
    deploy, own, aggregate, arbitrate)."""
    client = ChainClient(url, Artifacts.load(settings.artifacts_path))
    deployer, owner, aggregator, arbiter = (dev_account(i, client.chain_id) for i in range(4))
    if deployments is None:
        deployments = deploy_contracts(
            client, deployer, names=("TrainingMarket",), network="ethereum:local:foundry"
        )
    client.deployments = deployments
    return LocalMarket(
        client, TrainingMarket(client), LocalStore(out_dir / "store"), owner, aggregator, arbiter
    )


def settle(
    local: LocalMarket, project_id: int, trainers: list[LocalAccount], rounds: int, challenge_window: int
) -> tuple[list[dict[str, Any]], dict[str, dict[str, int]]]:
    """After the last round: wait out the challenge window, verify every round as an outsider, let everyone
    claim. The verification reports and each trainer's payout."""
    client, market = local.client, local.market
    deadline = client.timestamp() + challenge_window + 1
    while client.timestamp() < deadline:
        time.sleep(0.5)
        client.w3.provider.make_request(RPCEndpoint("evm_mine"), [])
    verified = [verify_round(market, local.store, project_id, r).to_dict() for r in range(rounds)]
    payouts: dict[str, dict[str, int]] = {}
    for trainer in trainers:
        reward = market.trainer(project_id, trainer.address).reward
        claim = market.claim(trainer, project_id)
        payouts[str(trainer.address)] = {
            "reward_wei": reward,
            "stake_returned_wei": claim.amount - reward,
            "slashed_wei": claim.slashed,
        }
    market.claim(local.owner, project_id)
    return verified, payouts


def _run(out_dir, config, settings, url, deployments, on_round) -> dict[str, Any]:
    local = local_market(settings, url, out_dir, deployments)
    client, market, store = local.client, local.market, local.store
    owner, aggregator, arbiter = local.owner, local.aggregator, local.arbiter

    roles = _roles(config)
    trainers: list[LocalAccount] = [dev_account(4 + i, client.chain_id) for i in range(len(roles))]
    role_of: dict[str, str] = {str(t.address): r for t, r in zip(trainers, roles, strict=True)}
    data = load_digits_data(config.seed)
    data_owners = [t.address for t, r in zip(trainers, roles, strict=True) if r not in ("free_rider",)]
    sybils = [t.address for t, r in zip(trainers, roles, strict=True) if r == "sybil"]
    shard_owners = [a for a in data_owners if a not in sybils[1:]]
    shards: dict[str, Any] = dict(
        zip(shard_owners, non_iid_splits(data.train, len(shard_owners), 1.0, config.seed), strict=True)
    )
    for address in sybils[1:]:
        shards[address] = shards[sybils[0]]  # Sybil copies share their operator's data
    # (load_digits_data's shards are already scaled: exactly what the schema's preprocessing makes of raw pixels.)

    # The owner publishes raw pixel values (0..16) and the /16 scaling as the schema's preprocessing: every
    # trainer's and the aggregator's data goes through it, and it is on record in the manifest.
    raw = Examples(data.validation.y, features=data.validation.X * 16)
    schema = DataSchema(
        task="classification",
        kind="tensor",
        labels=tuple(range(NUM_CLASSES)),
        feature_shape=(64,),
        preprocessing=({"op": "scale", "factor": 1 / 16},),
    )
    published = publish_project(
        store,
        model="digits_mlp",
        schema=schema,
        validation=raw,
        rounds=config.rounds,
        rule=config.rule,
        rule_params=config.rule_params,
        defenses=config.defenses,
        seed=config.seed,
        max_trainers=len(trainers),
    )
    # Each person keeps its secrets in its own home: the owner its sealed validation shards, every trainer its
    # sealed updates until it reveals them.
    # A fresh chain each run: the homes of an earlier run hold seals for rounds this chain never saw.
    shutil.rmtree(out_dir / "homes", ignore_errors=True)
    homes = {t.address: out_dir / "homes" / t.address for t in trainers}
    owner_home = out_dir / "homes" / "owner"
    published.validation.save(owner_home)
    project_id = market.create_project(
        owner,
        published.project_params(
            rounds=config.rounds,
            round_duration=3600,
            reveal_window=1800,
            aggregation_window=3600,
            min_stake=config.stake_wei,
            max_trainers=len(trainers),
            aggregator=aggregator.address,
            arbiter=arbiter.address,
            challenge_window=config.challenge_window,
            challenge_bond=ETH // 10,
            slash_after_flags=config.slash_after_flags,
            slash_bps=config.slash_bps,
        ),
        value=config.pool_wei,
    )
    for trainer in trainers:
        market.register(trainer, project_id, config.stake_wei)

    runner = RoundRunner(market, store, aggregator)
    rounds: list[dict[str, Any]] = []
    for r in range(config.rounds):
        model = current_model(market, store, project_id)
        train = {"epochs": config.epochs, "lr": model.client_lr, "batch_size": config.batch_size}
        deltas = role_updates(
            role_of, shards, "digits_mlp", model.state, train, round_seed=config.seed * 1_000_003 + r * 1000
        )
        updates = {t: encode_update(model, deltas[t.address], t.address) for t in trainers}
        play_sealed_round(market, store, model, updates, homes=homes, owner=owner, owner_home=owner_home)
        done: FinalizedRound = runner.finalize(project_id, r)
        accuracy = evaluate("digits_mlp", done.outcome.global_state, data.test.X, data.test.y).accuracy
        row = {
            "project": project_id,
            "round": r,
            "accuracy": accuracy,
            "flagged": done.outcome.flagged,
            "reasons": {f.trainer: f.reason for f in done.outcome.flags},
            # Left out by a defense (not flagged, paid nothing this round), with the defense that did it.
            "rejected": {
                t: e["rejections"][0]["defense"]
                for t, e in done.outcome.report["trainers"].items()
                if e["status"] == "rejected"
            },
            "scores": done.outcome.scores,
        }
        rounds.append(row)
        if on_round is not None:
            on_round({**row, "roles": role_of})

    # The challenge window must pass before anyone can claim.
    verified, payouts = settle(local, project_id, trainers, config.rounds, config.challenge_window)

    report = _report(market, client, project_id, trainers, role_of, rounds, payouts, config, verified, shards)
    baseline = simulate(
        config.n_honest,
        {},
        config.rounds,
        config.rule,
        config.seed,
        rule_params=config.rule_params,
        defenses=config.defenses,
        data=data,
        n_shards=len(shard_owners),
        epochs=config.epochs,
        batch_size=config.batch_size,
    )
    report["baseline_accuracy"] = baseline.test_accuracy
    (out_dir / "report.json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    return report


def _report(
    market, client, project_id, trainers, role_of, rounds, payouts, config, verified, shards
) -> dict[str, Any]:
    entries = []
    for trainer in trainers:
        shard = shards.get(trainer.address)
        entries.append(
            {
                "address": trainer.address,
                "role": role_of[trainer.address],
                "score": sum(r["scores"].get(trainer.address, 0.0) for r in rounds) / len(rounds),
                **{k: str(v) for k, v in payouts[trainer.address].items()},
                "flagged_rounds": [r["round"] for r in rounds if trainer.address in r["flagged"]],
                "rejected_rounds": [r["round"] for r in rounds if trainer.address in r["rejected"]],
                # What the share should follow: how much data, and how many of the 10 classes it covers.
                "shard_size": len(shard) if shard is not None else 0,
                "label_coverage": int(torch.unique(shard.y).numel()) if shard is not None else 0,
            }
        )
    pool = config.pool_wei
    return {
        "honest_share": sum(int(e["reward_wei"]) for e in entries if e["role"] == "honest") / pool,
        "final_accuracy": rounds[-1]["accuracy"],
        "trainers": entries,
        "rounds": [{"round": r["round"], "accuracy": r["accuracy"], "flagged": r["flagged"]} for r in rounds],
        "pool_wei": str(config.pool_wei),
        "contract_balance_wei": str(client.balance(market.address)),
        "project": project_id,
        "verified": verified,
    }
