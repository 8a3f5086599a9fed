"""`trustmarket trainer`: register with a stake, train on private data, submit the update, claim the reward."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from aggregator.dataset_io import load_dataset_file
from backend.cli._common import JsonOption, console, emit, handles_errors
from backend.cli._context import (
    AccountOption,
    DevAccountOption,
    KeystoreOption,
    market,
    settings,
    signer,
    store,
    to_wei,
)
from backend.cli._progress import step
from backend.marketplace.errors import MarketplaceError
from backend.marketplace.trainer import current_model, encode_update, submit_update, train_update

app = typer.Typer(help="Take part in a project as a trainer.", no_args_is_help=True)

ProjectOption = Annotated[int, typer.Option("--project", "-p", help="Project id.")]


@app.command()
@handles_errors
def register(
    project: ProjectOption,
    stake: Annotated[str, typer.Option(help="Stake to lock, in ether (at least the project's minimum).")],
    keystore: KeystoreOption = None,
    account: AccountOption = None,
    dev_account: DevAccountOption = None,
    as_json: JsonOption = False,
) -> None:
    """Register for a project, locking a stake."""
    tm = market()
    trainer = signer(tm.client, keystore, account, dev_account)
    wei = to_wei(stake, "--stake")
    with step("registering (waiting for the receipt)", as_json):
        receipt = tm.register(trainer, project, wei)
    payload = {
        "project": project,
        "trainer": trainer.address,
        "stake_wei": str(wei),
        "transaction": receipt["transactionHash"].to_0x_hex(),
    }
    emit(payload, as_json, lambda p: console.print(f"{p['trainer']} registered in project {p['project']}"))


@app.command()
@handles_errors
def train(
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
    as_json: JsonOption = False,
) -> None:
    """Fetch the open round's model (verified by hash), train on your data, write the update."""
    cfg = settings()
    tm, content = market(cfg), store(cfg)
    X, y = load_dataset_file(data)
    with step("fetching the global model", as_json):
        model = current_model(tm, content, project)
    with step(f"training {epochs} epochs on {len(y)} samples", as_json):
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
    emit(payload, as_json, lambda p: console.print(f"wrote the round {p['round']} update to {p['update']}"))


@app.command()
@handles_errors
def submit(
    project: ProjectOption,
    update: Annotated[Path, typer.Option(help="The update written by `trainer train`.")],
    keystore: KeystoreOption = None,
    account: AccountOption = None,
    dev_account: DevAccountOption = None,
    as_json: JsonOption = False,
) -> None:
    """Store the update, then submit its CID and sha256 on chain (one command)."""
    cfg = settings()
    tm, content = market(cfg), store(cfg)
    trainer = signer(tm.client, keystore, account, dev_account)
    if not update.is_file():
        raise MarketplaceError(f"no update file at {update}")
    model = current_model(tm, content, project)
    with step("uploading the update and submitting it (waiting for the receipt)", as_json):
        done = submit_update(tm, content, trainer, model, update.read_bytes())
    payload = {
        "project": project,
        "round": done.round,
        "cid": done.update.cid,
        "sha256": done.update.sha256,
        "transaction": done.transaction,
    }
    emit(payload, as_json, lambda p: console.print(f"submitted {p['cid']} for round {p['round']}"))


@app.command()
@handles_errors
def claim(
    project: ProjectOption,
    keystore: KeystoreOption = None,
    account: AccountOption = None,
    dev_account: DevAccountOption = None,
    as_json: JsonOption = False,
) -> None:
    """Withdraw your reward share and stake (less any slashing) once the project has ended."""
    tm = market()
    who = signer(tm.client, keystore, account, dev_account)
    with step("claiming (waiting for the receipt)", as_json):
        done = tm.claim(who, project)
    payload = {
        "project": project,
        "account": who.address,
        "amount_wei": str(done.amount),
        "slashed_wei": str(done.slashed),
        "transaction": done.transaction,
    }
    emit(
        payload,
        as_json,
        lambda p: console.print(
            f"received {int(p['amount_wei']) / 1e18:g} ETH (slashed {int(p['slashed_wei']) / 1e18:g} ETH)"
        ),
    )


@app.command()
@handles_errors
def status(
    project: ProjectOption,
    address: Annotated[str, typer.Option(help="The trainer's address.")],
    as_json: JsonOption = False,
) -> None:
    """A trainer's stake, reward so far, submissions, flags and what it could claim now."""
    tm = market()
    info = tm.trainer(project, address)
    payload = {
        **info.__dict__,
        "project": project,
        "address": address,
        "claimable_wei": str(tm.claimable(project, address)) if tm.claims_open(project) else None,
    }
    emit(
        payload,
        as_json,
        lambda p: console.print(
            f"{address}: stake {p['stake'] / 1e18:g} ETH, reward {p['reward'] / 1e18:g} ETH, "
            f"{p['submissions']} submissions, flagged in {p['flags']} rounds"
        ),
    )
