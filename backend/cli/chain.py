"""`trustmarket chain`: start or attach to anvil, deploy the contracts, show what is deployed."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path
from typing import Annotated

import typer

from backend.chain.anvil import node_answers, start_anvil
from backend.chain.deploy import deploy_contracts
from backend.chain.deployments import Deployments
from backend.chain.errors import ChainError
from backend.cli._common import JsonOption, console, emit, handles_errors
from backend.cli._context import (
    AccountOption,
    DevAccountOption,
    KeystoreOption,
    chain_client,
    settings,
    signer,
)

app = typer.Typer(
    help="The local chain: start anvil, deploy the contracts, show the deployment.", no_args_is_help=True
)


def _pid_file() -> Path:
    return settings().home / "anvil.pid"


@app.command()
@handles_errors
def up(
    url: Annotated[
        str | None, typer.Option(help="Where anvil serves (default: TRUSTMARKET_CHAIN_URL).")
    ] = None,
    detach: Annotated[bool, typer.Option("--detach", help="Start in the background and return.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Start anvil at the configured URL, or attach to the node already serving there."""
    cfg = settings()
    url = url or cfg.chain_url
    log_path = cfg.home / "anvil.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    node = start_anvil(url, chain_id=cfg.chain_id or 31337, log_path=log_path)
    info = {"url": node.url, "chain_id": node_answers(node.url), "started": node.started_here}
    if node.started_here and detach:
        _pid_file().write_text(str(node.process.pid))  # type: ignore[union-attr]
        info["pid"] = node.process.pid  # type: ignore[union-attr]
    emit(
        info,
        as_json,
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
@handles_errors
def down(as_json: JsonOption = False) -> None:
    """Stop an anvil started with `chain up --detach`."""
    pid_file = _pid_file()
    if not pid_file.exists():
        raise ChainError("no detached anvil to stop (no pid file)")
    pid = int(pid_file.read_text())
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    pid_file.unlink()
    emit({"stopped": pid}, as_json, lambda i: console.print(f"stopped anvil (pid {i['stopped']})"))


@app.command()
@handles_errors
def deploy(
    keystore: KeystoreOption = None,
    account: AccountOption = None,
    dev_account: DevAccountOption = None,
    as_json: JsonOption = False,
) -> None:
    """Deploy the contracts and write deployments/<network>.json."""
    cfg = settings()
    client = chain_client(cfg, require_deployments=False)
    deployer = signer(client, keystore, account, dev_account)
    deployments = deploy_contracts(client, deployer, network=cfg.network)
    deployments.save(cfg.deployments_file)
    payload = {
        "file": str(cfg.deployments_file),
        "chain_id": deployments.chain_id,
        "contracts": {k: v.address for k, v in deployments.contracts.items()},
    }
    emit(
        payload, as_json, lambda p: console.print("\n".join(f"{k:18} {v}" for k, v in p["contracts"].items()))
    )


@app.command()
@handles_errors
def status(as_json: JsonOption = False) -> None:
    """Check the node, the chain id and that every deployed contract has code."""
    cfg = settings()
    client = chain_client(cfg)
    chain_id = client.check()
    deployments: Deployments = client.deployments  # type: ignore[assignment]
    payload = {
        "url": cfg.chain_url,
        "chain_id": chain_id,
        "block": client.block_number(),
        "contracts": {k: v.address for k, v in deployments.contracts.items()},
    }
    emit(
        payload,
        as_json,
        lambda p: console.print(
            f"chain {p['chain_id']} at {p['url']}, block {p['block']}, {len(p['contracts'])} contracts deployed"
        ),
    )
