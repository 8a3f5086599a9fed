"""Top-level `trustmarket aggregate`, `verify` and `demo`."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Annotated

import typer

from backend.cli._common import console
from backend.cli._context import CliContext, Commands
from backend.cli._engine import EngineOption, open_engine
from backend.cli._signer import SignerOption

# The root lists these three at the top level (backend.cli.COMMANDS); they share this module's app.
app = Commands()

ProjectOption = Annotated[int, typer.Option("--project", "-p", help="Project id.")]


def _finalized_payload(done) -> dict:
    return {
        "project": done.project_id,
        "round": done.round,
        "model": done.model.model_dump(),
        "report": done.report.model_dump(),
        "flagged": {f.trainer: f.reason for f in done.outcome.flags},
        "scores": done.outcome.scores,
        "metrics": done.outcome.metrics,
        "task": done.outcome.report["task"],
        "transaction": done.transaction,
    }


def _render_finalized(p: dict) -> None:
    from rich.table import Table

    metric = p["task"]["metric"]  # accuracy, or r2 for regression
    console.print(
        f"project {p['project']} round {p['round']}: validation {metric} "
        f"{p['metrics'][f'{metric}_before']:.3f} -> {p['metrics'][f'{metric}_after']:.3f}, model {p['model']['cid']}"
    )
    table = Table("trainer", "score", "flag")
    for trainer, score in sorted(p["scores"].items(), key=lambda kv: -kv[1]):
        table.add_row(trainer, f"{score:.4f}", p["flagged"].get(trainer, ""))
    console.print(table)


@app.command()
def aggregate(
    ctx: typer.Context,
    project: ProjectOption,
    round_: Annotated[
        int | None, typer.Option("--round", "-r", help="Round to finalize (default: the open one).")
    ] = None,
    watch: Annotated[
        bool, typer.Option("--watch", help="Keep finalizing rounds as they become ready.")
    ] = False,
    poll: Annotated[float, typer.Option(help="Seconds between checks with --watch.")] = 5.0,
    engine: EngineOption = None,
    *,
    signer: SignerOption,
) -> None:
    """Aggregate a round and post the result on chain (as the project's aggregator)."""
    cli = CliContext.of(ctx)
    with open_engine(cli.settings, engine) as running:
        _aggregate(cli, project, round_, watch, poll, signer, running)


def _aggregate(
    cli: CliContext, project: int, round_: int | None, watch: bool, poll: float, signer, engine
) -> None:
    from backend.chain.training_market import ProjectStatus
    from backend.marketplace.errors import RoundNotReady
    from backend.marketplace.runner import RoundRunner

    tm = cli.market
    runner = RoundRunner(
        tm, cli.store, cli.account(signer), engine=engine, spool=cli.settings.resolved_spool_path
    )
    if watch:
        cli.say(f"watching project {project}; Ctrl-C stops")
        with contextlib.suppress(KeyboardInterrupt):
            runner.watch(
                [project],
                poll=poll,
                on_finalized=lambda d: cli.emit_line(_finalized_payload(d), _render_finalized),
            )
        return
    target = round_ if round_ is not None else runner.ready(project)
    if target is None:
        info = tm.project(project)
        raise RoundNotReady(
            f"project {project}: round {info.current_round} is not ready: {runner.blocker(info)}; use --watch to "
            "finalize it when it is ready"
            if info.status is ProjectStatus.ACTIVE
            else f"project {project} is {info.status.name.lower()}: no round to aggregate"
        )
    with cli.step(f"aggregating round {target}"):
        done = runner.finalize(project, target)
    cli.emit(_finalized_payload(done), _render_finalized)


@app.command()
def verify(
    ctx: typer.Context,
    project: ProjectOption,
    round_: Annotated[
        int | None, typer.Option("--round", "-r", help="Round to verify (default: every finalized round).")
    ] = None,
    engine: EngineOption = None,
) -> None:
    """Recompute finalized rounds from on-chain inputs; exit 1 if any result does not match what was posted."""
    from backend.marketplace.recompute import verify_round

    cli = CliContext.of(ctx)
    spool = cli.settings.resolved_spool_path
    tm, content = cli.market, cli.store
    if round_ is not None:
        rounds = [round_]
    else:
        info = tm.project(project)
        rounds = [r for r in range(info.rounds) if tm.round(project, r).finalized_at]
    reports = []
    with open_engine(cli.settings, engine) as running:
        for r in rounds:
            with cli.step(f"recomputing round {r}"):
                reports.append(verify_round(tm, content, project, r, engine=running, spool=spool).to_dict())

    def render(items: list[dict]) -> None:
        for rep in items:
            verdict = "[green]match[/green]" if rep["match"] else "[red]MISMATCH[/red]"
            # The digest whole: it is what `verifier sign --digest` takes.
            console.print(
                f"project {rep['project']} round {rep['round']}: {verdict} (digest {rep['onchain_digest']})"
            )
            for line in rep["mismatches"]:
                console.print(f"  {line}")

    cli.emit(reports, render)
    if not all(rep["match"] for rep in reports):
        raise typer.Exit(code=1)


@app.command()
def demo(
    ctx: typer.Context,
    out: Annotated[
        Path | None,
        typer.Option(help="Folder for the report and the demo's content store (default: runs/demo[-text])."),
    ] = None,
    rounds: Annotated[int | None, typer.Option(min=1, help="Default: 5 for digits, 3 for text.")] = None,
    task: Annotated[
        str,
        typer.Option(
            help="digits: an MLP on digits with attackers; text: all-MiniLM-L6-v2 with FFA-LoRA on SQuAD questions."
        ),
    ] = "digits",
    explore: Annotated[
        bool,
        typer.Option(
            "--explore",
            help="Then keep the chain and serve the explorer on it (with a committee, a running project and "
            "sources; docs/explorer.md) until Ctrl-C.",
        ),
    ] = False,
    port: Annotated[int, typer.Option(help="Port of the explorer with --explore.", min=1, max=65535)] = 8000,
) -> None:
    """Run the training marketplace end to end on a fresh local anvil (see docs/quickstart.md, docs/models.md)."""
    from rich.table import Table

    cli = CliContext.of(ctx)
    if task == "text":
        _text_demo(cli, out or Path("runs/demo-text"), rounds or 3)
        return
    if task != "digits":
        raise ValueError(f"--task must be digits or text, got {task!r}")
    from backend.marketplace.demo import DemoConfig, run_demo

    out = out or Path("runs/demo")
    rounds = rounds or 5
    if explore:
        from backend.api.explorer.showcase import serve_showcase

        serve_showcase(out, rounds=rounds, port=port, say=lambda line: console.print(line, highlight=False))
        return

    def show_round(row: dict) -> None:
        if cli.as_json:
            return
        roles = row["roles"]
        flagged = (
            ", ".join(f"{roles[t]} ({reason})" for t, reason in sorted(row["reasons"].items())) or "none"
        )
        left_out = (
            ", ".join(f"{roles[t]} ({defense})" for t, defense in sorted(row.get("rejected", {}).items()))
            or "none"
        )
        console.print(
            f"round {row['round']}: test accuracy {row['accuracy']:.3f}; flagged: {flagged}; left out: {left_out}"
        )

    def show_final(report: dict) -> None:
        pool = int(report["pool_wei"])
        table = Table(
            "trainer",
            "role",
            "score",
            "reward (ETH)",
            "share",
            "shard",
            "labels",
            "stake back (ETH)",
            "slashed (ETH)",
            "flagged in",
        )
        for t in report["trainers"]:
            table.add_row(
                t["address"][:12] + "…",
                t["role"],
                f"{t['score']:.3f}",
                f"{int(t['reward_wei']) / 1e18:.4f}",
                f"{int(t['reward_wei']) / pool:.1%}",
                str(t.get("shard_size", "-")),
                f"{t.get('label_coverage', '-')}/10",
                f"{int(t['stake_returned_wei']) / 1e18:.3f}",
                f"{int(t['slashed_wei']) / 1e18:.3f}",
                ",".join(map(str, t["flagged_rounds"])) or "-",
            )
        console.print(table)
        console.print(
            "shard: the trainer's training examples; labels: how many of the 10 digit classes they cover. "
            "Honest shares should follow these, not the valuation's noise (scores are shrunk towards each "
            "update's weight when the differences are within their confidence intervals)."
        )
        console.print(
            f"honest trainers received {report['honest_share']:.1%} of the pool; final accuracy "
            f"{report['final_accuracy']:.3f} (without attackers: {report['baseline_accuracy']:.3f}); every round "
            f"verified: {all(v['match'] for v in report['verified'])}; contract balance after claims: "
            f"{report['contract_balance_wei']} wei; report: {out / 'report.json'}"
        )

    report = run_demo(out, DemoConfig(rounds=rounds), on_round=show_round)
    cli.emit(report, show_final)


def _text_demo(cli: CliContext, out: Path, rounds: int) -> None:
    from backend.marketplace.demo_text import TextDemoConfig, run_text_demo

    def show_round(row: dict) -> None:
        if not cli.as_json:
            console.print(
                f"round {row['round']}: test accuracy {row['accuracy']:.3f}; update {row['update_bytes']:,} bytes "
                f"({row['update_bytes'] / row['full_model_bytes']:.2%} of the full model's "
                f"{row['full_model_bytes']:,}); {row['train_seconds_per_trainer']:.1f} s training per trainer, "
                f"{row['aggregate_seconds']:.1f} s aggregating"
            )

    def show_final(report: dict) -> None:
        first, last = report["rounds"][0], report["rounds"][-1]
        console.print(
            f"{report['model']} with LoRA {report['lora']}: test accuracy {first['accuracy']:.3f} -> "
            f"{last['accuracy']:.3f} over {len(report['rounds']) - 1} rounds; every round verified: "
            f"{all(v['match'] for v in report['verified'])}; report: {out / 'report.json'}"
        )

    report = run_text_demo(out, TextDemoConfig(rounds=rounds), on_round=show_round)
    cli.emit(report, show_final)
