"""The attack suite against defense recipes: attack x defense -> accuracy, backdoor, attackers' pay, flags.

Every run is `aggregator.simulation.simulate` (the pipeline chained round after round, exactly as the round
runner chains it) on digits with `digits_mlp`, Dirichlet(alpha) shards and local SGD. Each attack of the suite
(`aggregator.attacks.SUITE`: omniscient with and without jitter, and from the colluders' own training) runs
with 25% of the trainers as colluders, beside a baseline where the same trainers are all honest. Per recipe and
attack, over the seeds:

- accuracy: final test accuracy (mean), and the drop from the no-attack run of the same seed (worst seed);
- backdoor: triggered test inputs classified as the target (worst seed; backdoor attacks only);
- attackers: the colluders' share of the reward pool (worst seed);
- flags: precision and recall of the on-chain flags over trainer-rounds, and honest trainer-rounds flagged;
  "left out" counts rejections by the defenses too (not flagged, paid nothing that round).

The goals (issue #14), checked for the `default` recipe, worst case over the suite: accuracy within 3 points
of the no-attack run, backdoor success at most 10%, attackers' share at most 5%, honest trainers flagged in at
most 2% of trainer-rounds.

    nice python bench/attacks.py                      # full: 20 trainers, 3 seeds, 20 rounds (~40 min, 2 cores)
    nice python bench/attacks.py --quick              # 1 seed, 8 rounds, the default recipe (~6 min)
    python bench/attacks.py --recipes default,multi_krum --attacks alie+jitter,mimic --seeds 0 --rounds 5
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# Recipes: what a project's manifest says about rule, parameters and defenses.
RECIPES: dict[str, dict[str, Any]] = {
    "default": {},  # what `project create` picks with no flags (aggregator.defaults)
    "multi_krum": {  # the defaults before issue #14
        "rule": "multi_krum",
        "rule_params": {"f": 1},
        "defenses": [],
        "outliers": {"sybil_cosine": 0.99},
    },
    "nnm+trimmed_mean": {
        "rule": "trimmed_mean",
        "rule_params": {"beta": 0.25},
        "defenses": [{"name": "nnm", "f": "{f}"}],
    },
    "arc+nnm+trimmed_mean": {
        "rule": "trimmed_mean",
        "rule_params": {"beta": 0.25},
        "defenses": [{"name": "arc", "f": "{f}"}, {"name": "nnm", "f": "{f}"}],
    },
    "bucketing+median": {"rule": "median", "rule_params": {}, "defenses": [{"name": "bucketing", "s": 2}]},
    "fltrust": {"rule": "fedavg", "rule_params": {}, "defenses": [{"name": "fltrust"}]},
    "flame": {"rule": "fedavg", "rule_params": {}, "defenses": [{"name": "flame"}]},
    "flag": {"rule": "flag", "rule_params": {}, "defenses": [{"name": "near_copies"}, {"name": "norm_clip"}]},
}


def _resolve(recipe: dict[str, Any], f: int) -> dict[str, Any]:
    """Fill `"{f}"` placeholders with the number of colluders (the recipes that need to know it)."""

    def fill(value: Any) -> Any:
        if value == "{f}":
            return f
        if isinstance(value, dict):
            return {k: fill(v) for k, v in value.items()}
        if isinstance(value, list):
            return [fill(v) for v in value]
        return value

    return fill(recipe)


def _job(task: tuple[str, str | None, int, dict[str, Any]]) -> dict[str, Any]:
    import torch

    from aggregator.attacks import SUITE
    from aggregator.outliers import OutlierConfig
    from aggregator.simulation import simulate

    torch.set_num_threads(1)
    recipe_name, label, seed, args = task
    count = round(args["trainers"] * args["fraction"])
    recipe = _resolve(RECIPES[recipe_name], count)
    spec = next((s for s in SUITE if s.label == label), None) if label else None
    if spec is not None and spec.count != count:
        from dataclasses import replace

        spec = replace(spec, count=count)
    kwargs: dict[str, Any] = {
        "rule": recipe.get("rule"),
        "rule_params": recipe.get("rule_params"),
        "defenses": recipe.get("defenses"),
        "outliers": OutlierConfig(**recipe["outliers"]) if "outliers" in recipe else None,
        "alpha": args["alpha"],
        "epochs": args["epochs"],
    }
    start = time.perf_counter()
    honest = args["trainers"] - (count if spec is not None else 0)
    result = simulate(honest, rounds=args["rounds"], seed=seed, attack=spec, **kwargs)
    rounds = len(result.outcomes)
    att, hon = result.attackers, result.honest
    return {
        "recipe": recipe_name,
        "attack": label or "none",
        "seed": seed,
        "accuracy": result.test_accuracy,
        "backdoor": result.backdoor_success,
        "attackers_share": result.attackers_share,
        "flagged_attacker_rounds": result.trainer_rounds(att, "flagged"),
        "flagged_honest_rounds": result.trainer_rounds(hon, "flagged"),
        "excluded_attacker_rounds": result.trainer_rounds(att, "excluded"),
        "excluded_honest_rounds": result.trainer_rounds(hon, "excluded"),
        "attacker_rounds": len(att) * rounds,
        "honest_rounds": len(hon) * rounds,
        "seconds": time.perf_counter() - start,
    }


def _ratio(a: float, b: float) -> float | None:
    return a / b if b else None


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One line per (recipe, attack): means and worst cases over the seeds."""
    baseline = {(r["recipe"], r["seed"]): r["accuracy"] for r in rows if r["attack"] == "none"}
    out = []
    keys = sorted({(r["recipe"], r["attack"]) for r in rows}, key=lambda k: (k[0], k[1] != "none", k[1]))
    for recipe, attack in keys:
        group = [r for r in rows if r["recipe"] == recipe and r["attack"] == attack]
        drops = [
            baseline[(recipe, r["seed"])] - r["accuracy"] for r in group if (recipe, r["seed"]) in baseline
        ]
        flagged = sum(r["flagged_attacker_rounds"] + r["flagged_honest_rounds"] for r in group)
        excluded = sum(r["excluded_attacker_rounds"] + r["excluded_honest_rounds"] for r in group)
        att_rounds = sum(r["attacker_rounds"] for r in group)
        backdoors = [r["backdoor"] for r in group if r["backdoor"] is not None]
        out.append(
            {
                "recipe": recipe,
                "attack": attack,
                "seeds": len(group),
                "accuracy": statistics.fmean(r["accuracy"] for r in group),
                "worst_drop": max(drops) if drops else None,
                "backdoor": max(backdoors) if backdoors else None,
                "attackers_share": max(r["attackers_share"] for r in group),
                "flag_precision": _ratio(sum(r["flagged_attacker_rounds"] for r in group), flagged),
                "flag_recall": _ratio(sum(r["flagged_attacker_rounds"] for r in group), att_rounds),
                "left_out_precision": _ratio(sum(r["excluded_attacker_rounds"] for r in group), excluded),
                "left_out_recall": _ratio(sum(r["excluded_attacker_rounds"] for r in group), att_rounds),
                "honest_flagged": _ratio(
                    sum(r["flagged_honest_rounds"] for r in group), sum(r["honest_rounds"] for r in group)
                ),
                "seconds": sum(r["seconds"] for r in group),
            }
        )
    return out


def goals(summary: list[dict[str, Any]], recipe: str = "default") -> dict[str, Any]:
    lines = [s for s in summary if s["recipe"] == recipe and s["attack"] != "none"]
    if not lines:
        return {}

    def worst(key: str) -> tuple[float, str]:
        values = [(s[key], s["attack"]) for s in lines if s[key] is not None]
        return max(values) if values else (0.0, "-")

    drop, backdoor, share, flagged = (
        worst("worst_drop"),
        worst("backdoor"),
        worst("attackers_share"),
        worst("honest_flagged"),
    )
    baseline = [s for s in summary if s["recipe"] == recipe and s["attack"] == "none"]
    flagged = max(flagged, (baseline[0]["honest_flagged"] or 0.0, "none")) if baseline else flagged
    return {
        "accuracy_drop": {"worst": drop[0], "attack": drop[1], "goal": 0.03, "met": drop[0] <= 0.03},
        "backdoor": {"worst": backdoor[0], "attack": backdoor[1], "goal": 0.10, "met": backdoor[0] <= 0.10},
        "attackers_share": {"worst": share[0], "attack": share[1], "goal": 0.05, "met": share[0] <= 0.05},
        "honest_flagged": {
            "worst": flagged[0],
            "attack": flagged[1],
            "goal": 0.02,
            "met": flagged[0] <= 0.02,
        },
    }


def _fmt(value: float | None, pct: bool = True) -> str:
    if value is None:
        return "-"
    return f"{100 * value:.1f}%" if pct else f"{value:.3f}"


def table(summary: list[dict[str, Any]]) -> str:
    head = "| recipe | attack | accuracy | worst drop | backdoor | attackers' share | flag precision / recall | left-out precision / recall | honest flagged |"
    lines = [head, "| " + " | ".join(["---"] * 9) + " |"]
    for s in summary:
        lines.append(
            f"| {s['recipe']} | {s['attack']} | {_fmt(s['accuracy'], False)} | {_fmt(s['worst_drop'])} | "
            f"{_fmt(s['backdoor'])} | {_fmt(s['attackers_share'])} | {_fmt(s['flag_precision'])} / "
            f"{_fmt(s['flag_recall'])} | {_fmt(s['left_out_precision'])} / {_fmt(s['left_out_recall'])} | "
            f"{_fmt(s['honest_flagged'])} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from aggregator.attacks import SUITE

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 seed, 8 rounds, the default recipe only")
    parser.add_argument("--recipes", default=None, help=f"comma-separated, from {', '.join(RECIPES)}")
    parser.add_argument(
        "--attacks", default=None, help="comma-separated attack labels (default: the whole suite)"
    )
    parser.add_argument("--seeds", default=None, help="comma-separated seeds (default 0,1,2)")
    parser.add_argument("--rounds", type=int, default=None, help="rounds per run (default 20)")
    parser.add_argument("--trainers", type=int, default=20)
    parser.add_argument("--fraction", type=float, default=0.25, help="share of trainers that collude")
    parser.add_argument("--alpha", type=float, default=0.5, help="Dirichlet concentration of the shards")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--jobs", type=int, default=2, help="parallel processes (one torch thread each)")
    parser.add_argument("--json", type=Path, default=None, help="write every run and the summary here")
    args = parser.parse_args(argv)
    recipes = (args.recipes or ("default" if args.quick else "default,multi_krum")).split(",")
    unknown = sorted(set(recipes) - set(RECIPES))
    if unknown:
        parser.error(f"unknown recipe(s) {unknown}; known: {', '.join(RECIPES)}")
    labels = args.attacks.split(",") if args.attacks else [s.label for s in SUITE]
    missing = sorted(set(labels) - {s.label for s in SUITE})
    if missing:
        parser.error(f"unknown attack(s) {missing}; the suite has: {', '.join(s.label for s in SUITE)}")
    seeds = [int(s) for s in (args.seeds or ("0" if args.quick else "0,1,2")).split(",")]
    rounds = args.rounds or (8 if args.quick else 20)
    shared = {
        "trainers": args.trainers,
        "fraction": args.fraction,
        "alpha": args.alpha,
        "rounds": rounds,
        "epochs": args.epochs,
    }
    tasks = [(r, a, s, shared) for r in recipes for s in seeds for a in [None, *labels]]
    # The longest runs first keep both processes busy to the end.
    tasks.sort(key=lambda t: ("backdoor" not in str(t[1]), t[1] is not None))
    started = time.perf_counter()
    print(f"{len(tasks)} runs: recipes {recipes}, seeds {seeds}, {rounds} rounds, {args.trainers} trainers, "
          f"{args.fraction:.0%} colluding, Dirichlet {args.alpha}, {args.jobs} processes", flush=True)  # fmt: skip
    rows = []
    with multiprocessing.get_context("spawn").Pool(args.jobs) as pool:
        for row in pool.imap_unordered(_job, tasks):
            rows.append(row)
            print(f"  {row['recipe']:>22} {row['attack']:<34} seed {row['seed']} acc {row['accuracy']:.3f} "
                  f"attackers {row['attackers_share']:.3f} ({row['seconds']:.0f} s)", flush=True)  # fmt: skip
    summary = summarize(rows)
    print()
    print(table(summary))
    met = goals(summary)
    if met:
        print("\nGoals (default recipe, worst case over the suite):")
        for name, g in met.items():
            print(
                f"  {name}: {g['worst']:.3f} ({g['attack']}), goal {g['goal']}: {'met' if g['met'] else 'NOT met'}"
            )
    elapsed = time.perf_counter() - started
    print(f"\nwall time {elapsed / 60:.1f} min")
    if args.json:
        args.json.write_text(
            json.dumps({"runs": rows, "summary": summary, "goals": met, "wall_s": elapsed}, indent=1)
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
