"""`trustmarket chain`: start or attach to anvil, deploy the contracts, show what is deployed."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path
from typing import Annotated

import typer

from backend.cli._common import console
from backend.cli._context import CliContext, Commands
from backend.cli._signer import SignerOption

app = Commands(help="The local chain: start anvil, deploy the contracts, show the deployment.")


def _pid_file(cli: CliContext) -> Path:
    return cli.settings.home / "anvil.pid"


@app.command()
def up(
    ctx: typer.Context,
    url: Annotated[
        str | None, typer.Option(help="Where anvil serves (default: TRUSTMARKET_CHAIN_URL).")
    ] = None,
    detach: Annotated[bool, typer.Option("--detach", help="Start in the background and return.")] = False,
) -> None:
    """Start anvil at the configured URL, or attach to the node already serving there."""
    from backend.chain.anvil import node_answers, start_anvil

    cli = CliContext.of(ctx)
    cfg = cli.settings
    url = url or cfg.chain_url
    log_path = cfg.home / "anvil.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    node = start_anvil(url, chain_id=cfg.chain_id or 31337, log_path=log_path)
    info = {"url": node.url, "chain_id": node_answers(node.url), "started": node.started_here}
    if node.started_here and detach:
        _pid_file(cli).write_text(str(node.process.pid))  # type: ignore[union-attr]
        info["pid"] = node.process.pid  # type: ignore[union-attr]
    cli.emit(
        info,
        lambda i: console.print(
            f"{'started anvil' if i['started'] else 'attached to the node'} at {i['url']} (chain {i['chain_id']})"
        ),
    )
    if node.started_here and not detach:
        console.print("Ctrl-C stops it.")
        try:
            while node.process.poll() is None:  # type: ignore[union-attr]
                time.sleep(0.5)
        except KeyboardInterrupt:
            node.stop()


@app.command()
def down(ctx: typer.Context) -> None:
    """Stop an anvil started with `chain up --detach`."""
    from backend.chain.errors import ChainError

    cli = CliContext.of(ctx)
    pid_file = _pid_file(cli)
    if not pid_file.exists():
        raise ChainError("no detached anvil to stop (no pid file)")
    pid = int(pid_file.read_text())
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    pid_file.unlink()
    cli.emit({"stopped": pid}, lambda i: console.print(f"stopped anvil (pid {i['stopped']})"))


@app.command()
def deploy(ctx: typer.Context, signer: SignerOption) -> None:
    """Deploy the contracts and write deployments/<network>.json."""
    from backend.chain.client import ChainClient
    from backend.chain.deploy import deploy_contracts

    cli = CliContext.of(ctx)
    cfg = cli.settings
    client = ChainClient.from_settings(cfg, require_deployments=False)
    deployer = signer.load(client.chain_id)
    deployments = deploy_contracts(client, deployer, network=cfg.network)
    deployments.save(cfg.deployments_file)
    payload = {
        "file": str(cfg.deployments_file),
        "chain_id": deployments.chain_id,
        "contracts": {k: v.address for k, v in deployments.contracts.items()},
    }
    cli.emit(payload, lambda p: console.print("\n".join(f"{k:18} {v}" for k, v in p["contracts"].items())))


@app.command()
def status(ctx: typer.Context) -> None:
    """Check the node, the chain id and that every deployed contract has code."""
    cli = CliContext.of(ctx)
    cfg, client = cli.settings, cli.client
    chain_id = client.check()
    deployments = client.deployments
    assert deployments is not None  # the client was built over the deployments file
    payload = {
        "url": cfg.chain_url,
        "chain_id": chain_id,
        "block": client.block_number(),
        "contracts": {k: v.address for k, v in deployments.contracts.items()},
    }
    cli.emit(
        payload,
        lambda p: console.print(
            f"chain {p['chain_id']} at {p['url']}, block {p['block']}, {len(p['contracts'])} contracts deployed"
        ),
    )
