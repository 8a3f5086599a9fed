"""`trustmarket trainer`: register with a stake, train on private data, submit the update, claim the reward."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from backend.cli._common import console
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


@app.command()
def train(
    ctx: typer.Context,
    project: ProjectOption,
    data: Annotated[
        Path,
        typer.Option(
            help="Your private training data (.npz with X, y, or .csv); it never leaves this machine."
        ),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the update (safetensors).")],
    epochs: Annotated[int, typer.Option(min=1)] = 10,
    lr: Annotated[
        float | None, typer.Option(help="Learning rate (default: the round's, set by the aggregator).")
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1)] = 16,
    seed: int = 0,
) -> None:
    """Fetch the open round's model (verified by hash), train on your data, write the update."""
    from aggregator.dataset_io import load_dataset_file
    from backend.marketplace.trainer import current_model, encode_update, train_update

    cli = CliContext.of(ctx)
    X, y = load_dataset_file(data)
    with cli.step("fetching the global model"):
        model = current_model(cli.market, cli.store, project)
    with cli.step(f"training {epochs} epochs on {len(y)} samples"):
        delta = train_update(model, X, y, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed)
    payload_bytes = encode_update(model, delta)
    out.write_bytes(payload_bytes)
    payload = {
        "project": project,
        "round": model.round,
        "update": str(out),
        "bytes": len(payload_bytes),
        "base_model": model.ref.cid,
    }
    cli.emit(payload, lambda p: console.print(f"wrote the round {p['round']} update to {p['update']}"))


@app.command()
def submit(
    ctx: typer.Context,
    project: ProjectOption,
    update: Annotated[Path, typer.Option(help="The update written by `trainer train`.")],
    signer: SignerOption,
) -> None:
    """Store the update, then submit its CID and sha256 on chain (one command)."""
    from backend.marketplace.errors import MarketplaceError
    from backend.marketplace.trainer import current_model, submit_update

    cli = CliContext.of(ctx)
    trainer = cli.account(signer)
    if not update.is_file():
        raise MarketplaceError(f"no update file at {update}")
    model = current_model(cli.market, cli.store, project)
    with cli.step("uploading the update and submitting it (waiting for the receipt)"):
        done = submit_update(cli.market, cli.store, trainer, model, update.read_bytes())
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
