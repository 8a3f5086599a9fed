"""`trustmarket trainer`: register with a stake, train on private data, submit the update, claim the reward."""

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
) -> None:
    """Check the update against the project's model, store it, then submit its CID and sha256 on chain."""
    from backend.marketplace.errors import MarketplaceError
    from backend.marketplace.trainer import check_update, current_model, submit_update

    cli = CliContext.of(ctx)
    trainer = cli.account(signer)
    if not update.is_file():
        raise MarketplaceError(f"no update file at {update}")
    model = current_model(cli.market, cli.store, project)
    data = update.read_bytes()
    check_update(model, data)  # before anything is stored or sent
    with cli.step("uploading the update and submitting it (waiting for the receipt)"):
        done = submit_update(cli.market, cli.store, trainer, model, data)
    payload = {
        "project": project,
        "round": done.round,
        "cid": done.update.cid,
        "sha256": done.update.sha256,
        "transaction": done.transaction,
    }
    cli.emit(payload, lambda p: console.print(f"submitted {p['cid']} for round {p['round']}"))


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
    cli = CliContext.of(ctx)
    tm = cli.market
    info = tm.trainer(project, address)
    claims_open = tm.claims_open(project)
    payload = {
        **info.__dict__,
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
