"""Top-level `trustmarket simulate`: a federation of virtual trainers and attackers, off chain, before launch.

For an owner choosing a rule and outlier settings: every round the virtual trainers train on their own digits
shards (as tasks on the engine: Ray workers with `--engine ray`), the round pipeline aggregates and scores them
exactly as the round runner would, and the output is the test accuracy per round and what the contract would
pay each role out of the pool.
"""

from __future__ import annotations

from typing import Annotated

import typer

from backend.cli._common import console, err_console
from backend.cli._context import CliContext, Commands
from backend.cli._engine import EngineOption, open_engine

app = Commands()

# The attacks a default run mixes, in turn: Byzantine updates, poisoned data, a free rider, Sybil copies.
DEFAULT_ATTACKS = ("sign_flip", "label_flip", "gaussian_noise", "free_rider", "sybil", "scale")


def attacker_counts(attackers: int, attacks: list[str]) -> dict[str, int]:
    """`attackers` spread over `attacks` in turn (the first ones get the remainder)."""
    counts = dict.fromkeys(attacks, 0)
    for i in range(attackers):
        counts[attacks[i % len(attacks)]] += 1
    return {role: count for role, count in counts.items() if count}


@app.command()
def simulate(
    ctx: typer.Context,
    trainers: Annotated[
        int, typer.Option("--trainers", min=1, help="Virtual trainers, attackers included.")
    ] = 20,
    attackers: Annotated[
        float, typer.Option("--attackers", min=0.0, max=1.0, help="Fraction of the trainers that attack.")
    ] = 0.2,
    attack: Annotated[
        list[str] | None,
        typer.Option(
            "--attack",
            help=f"An attack to use (repeat for several; default: {', '.join(DEFAULT_ATTACKS)} in turn).",
        ),
    ] = None,
    rounds: Annotated[int, typer.Option("--rounds", min=1, help="Rounds to run.")] = 3,
    rule: Annotated[
        str | None,
        typer.Option(
            "--rule",
            help="Aggregation rule (default: what project create picks, trimmed_mean with beta=0.25); the "
            "default defenses run before it either way.",
        ),
    ] = None,
    contribution: Annotated[
        str, typer.Option("--contribution", help="Valuation: gtg_shapley, leave_one_out or similarity.")
    ] = "gtg_shapley",
    samples: Annotated[
        int | None,
        typer.Option(
            "--samples",
            min=1,
            help="Samples per trainer, drawn with a Dirichlet label mix (default: disjoint shards of the "
            "training set while it has ten per trainer, else 30 each).",
        ),
    ] = None,
    alpha: Annotated[
        float, typer.Option("--alpha", min=0.0, help="Dirichlet label skew (small: skewed).")
    ] = 1.0,
    epochs: Annotated[int, typer.Option("--epochs", min=1, help="Local epochs per round.")] = 5,
    pool: Annotated[
        str, typer.Option("--pool", help="Reward pool to split (ether, or wei with --wei).")
    ] = "10",
    seed: Annotated[
        int, typer.Option("--seed", help="Seed of the shards, the trainings and the valuation.")
    ] = 0,
    engine: EngineOption = None,
) -> None:
    """Simulate rounds of virtual trainers and attackers off chain: accuracy per round and the payouts."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from aggregator.contribution import ContributionConfig
    from aggregator.defaults import DEFAULT_RULE
    from aggregator.errors import AggregatorError
    from aggregator.simulation import ROLES
    from aggregator.simulation import simulate as run_simulation

    cli = CliContext.of(ctx)
    rule = rule or DEFAULT_RULE
    pool_wei = cli.wei(pool, "--pool")
    attacks = attack or list(DEFAULT_ATTACKS)
    unknown = sorted(set(attacks) - set(ROLES) | ({"honest"} & set(attacks)))
    if unknown:
        known = ", ".join(r for r in ROLES if r != "honest")
        raise AggregatorError(f"unknown attack(s) {', '.join(unknown)}; known: {known}")
    n_attackers = round(trainers * attackers)
    counts = attacker_counts(n_attackers, attacks)
    rows: list[dict] = []
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    show = not cli.as_json and err_console.is_terminal
    with (
        open_engine(cli.settings, engine) as running,
        Progress(*columns, console=err_console, disable=not show) as bar,
    ):
        task = bar.add_task(f"round 1/{rounds}: training", total=trainers)

        def trained(r: int, done: int, total: int) -> None:
            bar.update(task, description=f"round {r + 1}/{rounds}: training", completed=done, total=total)

        def finished(r: int, outcome) -> None:
            row = {
                "round": r,
                "accuracy_before": outcome.metrics["accuracy_before"],
                "accuracy_after": outcome.metrics["accuracy_after"],
                "flagged": len(outcome.flagged),
            }
            rows.append(row)
            bar.update(task, description=f"round {r + 2}/{rounds}: training", completed=0)
            if show:
                bar.console.print(
                    f"round {r}: validation accuracy {row['accuracy_before']:.3f} -> {row['accuracy_after']:.3f}, "
                    f"{row['flagged']} flagged"
                )

        result = run_simulation(
            trainers - n_attackers,
            counts,
            rounds,
            rule,
            seed,
            epochs=epochs,
            alpha=alpha,
            contribution=ContributionConfig(method=contribution, seed=seed),
            samples_per_trainer=samples,
            engine=running,
            on_trained=trained,
            on_round=finished,
        )
    paid, refund = result.payouts(pool_wei)
    by_role: dict[str, dict] = {}
    for trainer, role in result.roles.items():
        entry = by_role.setdefault(role, {"trainers": 0, "paid_wei": 0, "flagged_rounds": 0})
        entry["trainers"] += 1
        entry["paid_wei"] += paid[trainer]
        entry["flagged_rounds"] += sum(trainer in o.flagged for o in result.outcomes)
    payload = {
        "trainers": trainers,
        "attackers": counts,
        "rule": rule,
        "engine": running.name,
        "rounds": rows,
        "test_accuracy": result.test_accuracy,
        "pool_wei": str(pool_wei),
        "owner_refund_wei": str(refund),
        "roles": {role: {**v, "paid_wei": str(v["paid_wei"])} for role, v in sorted(by_role.items())},
        "honest_share": sum(paid[t] for t, r in result.roles.items() if r == "honest") / pool_wei,
    }

    def render(p: dict) -> None:
        from rich.table import Table

        table = Table("role", "trainers", "paid", "share of the pool", "flagged (trainer-rounds)")
        for role, v in p["roles"].items():
            amount = int(v["paid_wei"])
            table.add_row(
                role,
                str(v["trainers"]),
                cli.amount(amount),
                f"{amount / pool_wei:.1%}",
                str(v["flagged_rounds"]),
            )
        console.print(table)
        console.print(
            f"{p['trainers']} trainers ({sum(p['attackers'].values())} attackers), rule {p['rule']}, engine "
            f"{p['engine']}: test accuracy {p['test_accuracy']:.3f}; honest trainers get {p['honest_share']:.1%} "
            f"of the pool, the owner {cli.amount(int(p['owner_refund_wei']))} back"
        )

    cli.emit(payload, render)
