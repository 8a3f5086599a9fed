"""`trustmarket trainer`: register with a stake, train on private data, submit (commit to) the update, reveal it once
the round's commits close, claim the reward."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from backend.cli._common import console, err_console
from backend.cli._context import CliContext, Commands
from backend.cli._signer import SignerOption

app = Commands(help="Take part in a project as a trainer.")

ProjectOption = Annotated[int, typer.Option("--project", "-p", help="Project id.")]


@app.command(amounts=True)
def register(
    ctx: typer.Context,
    project: ProjectOption,
    stake: Annotated[str, typer.Option(help="Stake to lock, in ether (at least the project's minimum).")],
    signer: SignerOption,
) -> None:
    """Register for a project, locking a stake."""
    cli = CliContext.of(ctx)
    trainer = cli.account(signer)
    wei = cli.wei(stake, "--stake")
    with cli.step("registering (waiting for the receipt)"):
        receipt = cli.market.register(trainer, project, wei)
    payload = {
        "project": project,
        "trainer": trainer.address,
        "stake_wei": str(wei),
        "transaction": receipt["transactionHash"].to_0x_hex(),
    }
    cli.emit(
        payload,
        lambda p: console.print(
            f"{p['trainer']} registered in project {p['project']} with {cli.amount(int(p['stake_wei']))}"
        ),
    )


@contextmanager
def _training_progress(cli: CliContext, total_label: str) -> Iterator[Callable[[int, int, float], None]]:
    """A progress bar with the training loss on a terminal; a line every tenth of the way in logs; nothing
    under --json."""
    if cli.as_json:
        yield lambda step, total, loss: None
        return
    if err_console.is_terminal:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=err_console) as progress:
            task = progress.add_task(total_label, total=None, loss="-")

            def bar(step: int, total: int, loss: float) -> None:
                progress.update(task, completed=step, total=total, loss=f"{loss:.4f}")

            yield bar
        return

    def lines(step: int, total: int, loss: float) -> None:
        if step == 1 or step == total or step % max(1, total // 10) == 0:
            err_console.print(f"{total_label}: step {step}/{total}, loss {loss:.4f}", highlight=False)

    yield lines


@app.command()
def train(
    ctx: typer.Context,
    project: ProjectOption,
    data: Annotated[
        Path,
        typer.Option(
            help="Your private training data (.csv, .parquet, .jsonl, .npz or .safetensors, in the project's "
            "schema); it never leaves this machine."
        ),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the update (safetensors).")],
    label_column: Annotated[
        str | None, typer.Option(help="Label column of your file (default: the project's).")
    ] = None,
    text_column: Annotated[
        str | None, typer.Option(help="Text column of your file (default: the project's).")
    ] = None,
    epochs: Annotated[int | None, typer.Option(min=1, help="Default: the project's recipe.")] = None,
    max_steps: Annotated[int | None, typer.Option(min=1, help="Default: the project's recipe.")] = None,
    lr: Annotated[
        float | None, typer.Option(help="Learning rate (default: the round's, set by the aggregator).")
    ] = None,
    batch_size: Annotated[int | None, typer.Option(min=1, help="Default: the project's recipe.")] = None,
    seed: Annotated[int | None, typer.Option(help="Default: the project's recipe.")] = None,
) -> None:
    """Fetch the open round's model (verified by hash), check your data against the project's schema, train by the
    project's recipe (showing the loss), write the update."""
    from backend.marketplace.runner import default_cache_dir
    from backend.marketplace.trainer import (
        current_model,
        encode_update,
        load_training_data,
        train_update,
        trainer_model,
    )

    cli = CliContext.of(ctx)
    with cli.step("fetching the global model"):
        model = current_model(cli.market, cli.store, project)
    examples = load_training_data(model, data, label_column=label_column, text_column=text_column)
    with cli.step(f"building {model.manifest.model.uri}"):
        built = trainer_model(cli.store, model, default_cache_dir())
    overrides: dict[str, Any] = {
        k: v
        for k, v in {"epochs": epochs, "max_steps": max_steps, "batch_size": batch_size, "seed": seed}.items()
        if v is not None
    }
    if epochs is not None and max_steps is None:
        overrides["max_steps"] = None  # epochs asked for: they decide, not the recipe's step count
    losses: list[float] = []
    with _training_progress(cli, f"training on {len(examples)} examples") as show:

        def on_step(step: int, total: int, loss: float) -> None:
            losses.append(loss)
            show(step, total, loss)

        delta = train_update(model, examples, built=built, overrides=overrides, lr=lr, on_step=on_step)
    payload_bytes = encode_update(model, delta)
    out.write_bytes(payload_bytes)
    payload = {
        "project": project,
        "round": model.round,
        "update": str(out),
        "bytes": len(payload_bytes),
        "travelling_parameters": built.dim,
        "model_parameters": built.total_parameters,
        "base_model": model.ref.cid,
        "examples": len(examples),
        "steps": len(losses),
        "loss_first": losses[0],
        "loss_last": losses[-1],
    }
    cli.emit(
        payload,
        lambda p: console.print(
            f"wrote the round {p['round']} update to {p['update']} ({p['bytes']:,} bytes: "
            f"{p['travelling_parameters'] / p['model_parameters']:.2%} of the model's weights; {p['steps']} steps, "
            f"loss {p['loss_first']:.4f} -> {p['loss_last']:.4f})"
        ),
    )


@app.command()
def submit(
    ctx: typer.Context,
    project: ProjectOption,
    update: Annotated[Path, typer.Option(help="The update written by `trainer train`.")],
    signer: SignerOption,
    watch: Annotated[
        bool,
        typer.Option("--watch", help="Then wait for the round's commits to close and reveal the update."),
    ] = False,
    poll: Annotated[float, typer.Option(help="Seconds between checks with --watch.", min=0.1)] = 5.0,
) -> None:
    """Check the update against the project's model, then commit to it on chain; the update itself stays in your
    home (nothing public identifies it) until `trainer reveal` (or --watch) stores and reveals it once the round's
    commits close."""
    from backend.marketplace.errors import MarketplaceError
    from backend.marketplace.trainer import current_model, submit_update

    cli = CliContext.of(ctx)
    trainer = cli.account(signer)
    if not update.is_file():
        raise MarketplaceError(f"no update file at {update}")
    model = current_model(cli.market, cli.store, project)
    with cli.step("checking and sealing the update, committing to it (waiting for the receipt)"):
        sealed = submit_update(cli.market, trainer, model, update.read_bytes(), home=cli.settings.home)
    info = cli.market.project(project)
    payload = {
        "project": project,
        "round": sealed.round,
        "sha256": sealed.sha256,
        "sealed": sealed.update_file,
        "reveal_from": info.commit_end + 1,
        "reveal_until": info.reveal_end,
        "transaction": sealed.commit_transaction,
    }
    cli.emit(
        payload,
        lambda p: console.print(
            f"committed to the round {p['round']} update; reveal it with `trustmarket trainer reveal -p {project}` "
            f"once commits close (chain time {p['reveal_from']}, until {p['reveal_until']})",
            highlight=False,
        ),
    )
    if watch:
        _reveal_when_open(cli, project, sealed.round, trainer, poll)


@app.command()
def reveal(
    ctx: typer.Context,
    project: ProjectOption,
    signer: SignerOption,
    round_: Annotated[
        int | None, typer.Option("--round", help="The round (default: the open one).", min=0)
    ] = None,
    watch: Annotated[
        bool, typer.Option("--watch", help="Wait for the reveal window to open instead of failing.")
    ] = False,
    poll: Annotated[float, typer.Option(help="Seconds between checks with --watch.", min=0.1)] = 5.0,
) -> None:
    """Store your sealed update in the shared content store and reveal it on chain (after the round's commits
    close, before its reveal window ends)."""
    cli = CliContext.of(ctx)
    trainer = cli.account(signer)
    target = cli.market.project(project).current_round if round_ is None else round_
    if watch:
        _reveal_when_open(cli, project, target, trainer, poll)
    else:
        _reveal(cli, project, target, trainer)


def _reveal(cli: CliContext, project: int, round_: int, trainer) -> None:
    from backend.marketplace.errors import MarketplaceError
    from backend.marketplace.sealing import find_sealed
    from backend.marketplace.trainer import reveal_update

    sealed = find_sealed(cli.settings.home, cli.market, project, round_, trainer.address)
    if sealed is None:
        raise MarketplaceError(
            f"this home ({cli.settings.home}) holds no sealed update of {trainer.address} for project {project} "
            f"round {round_}: submit one first (`trustmarket trainer submit`)"
        )
    if sealed.reveal_transaction is not None:
        raise MarketplaceError(f"already revealed ({sealed.cid}, transaction {sealed.reveal_transaction})")
    with cli.step("storing the update and revealing it (waiting for the receipt)"):
        done = reveal_update(cli.market, cli.store, trainer, sealed)
    payload = {
        "project": project,
        "round": round_,
        "cid": done.cid,
        "sha256": done.sha256,
        "transaction": done.reveal_transaction,
    }
    cli.emit(payload, lambda p: console.print(f"revealed {p['cid']} for round {p['round']}"))


def _reveal_when_open(cli: CliContext, project: int, round_: int, trainer, poll: float) -> None:
    """Wait (saying once what for) until the round takes reveals, then reveal."""
    import time

    from backend.chain.market_rules import RoundPhase, round_phase
    from backend.marketplace.errors import MarketplaceError

    said = False
    while True:
        info = cli.market.project(project)
        phase = round_phase(info, cli.client.timestamp())
        if info.current_round != round_ or phase not in (RoundPhase.COMMIT, RoundPhase.REVEAL):
            raise MarketplaceError(
                f"project {project} round {round_} no longer takes reveals ({phase.value})"
            )
        if phase is RoundPhase.REVEAL:
            _reveal(cli, project, round_, trainer)
            return
        if not said:
            cli.say(f"waiting for round {round_}'s commits to close (chain time {info.commit_end})")
            said = True
        time.sleep(poll)


@app.command(amounts=True)
def claim(ctx: typer.Context, project: ProjectOption, signer: SignerOption) -> None:
    """Withdraw your reward share and stake (less any slashing) once the project has ended."""
    cli = CliContext.of(ctx)
    who = cli.account(signer)
    with cli.step("claiming (waiting for the receipt)"):
        done = cli.market.claim(who, project)
    payload = {
        "project": project,
        "account": who.address,
        "amount_wei": str(done.amount),
        "slashed_wei": str(done.slashed),
        "transaction": done.transaction,
    }
    cli.emit(
        payload,
        lambda p: console.print(
            f"received {cli.amount(int(p['amount_wei']))} (slashed {cli.amount(int(p['slashed_wei']))})"
        ),
    )


@app.command(amounts=True)
def status(
    ctx: typer.Context,
    project: ProjectOption,
    address: Annotated[str, typer.Option(help="The trainer's address.")],
) -> None:
    """A trainer's stake, reward so far, submissions, flags and what it could claim now."""
    from backend.chain.abi import plain

    cli = CliContext.of(ctx)
    tm = cli.market
    info = tm.trainer(project, address)
    claims_open = tm.claims_open(project)
    payload = {
        **plain(info),
        "project": project,
        "address": address,
        "claims_open": claims_open,
        "claimable_wei": str(tm.claimable(project, address)) if claims_open else None,
    }

    def render(p: dict) -> None:
        claimable = (
            f"claimable now: {cli.amount(int(p['claimable_wei']))}"
            if p["claimable_wei"] is not None
            else "claims not open yet"
        )
        console.print(
            f"{address}: stake {cli.amount(p['stake'])}, reward {cli.amount(p['reward'])}, "
            f"{p['submissions']} submissions, flagged in {p['flags']} rounds; {claimable}",
            highlight=False,
        )

    cli.emit(payload, render)
