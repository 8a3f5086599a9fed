"""`trustmarket chain`: start or attach to a chain, deploy the contracts or take someone's deployment, move a
local chain's clock, show what is deployed.

What `up` and `attach` choose is remembered in the home (`<home>/settings.json`), so every later command of
that person goes to the same node. Each anvil started with `up --detach` has its own pid file
(`<home>/nodes/<host>-<port>.pid`), and `down` stops exactly the node of the URL it is given.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path
from typing import Annotated
from urllib.parse import urlparse

import typer

from backend.cli._common import console, err_console
from backend.cli._context import CliContext, Commands
from backend.cli._signer import SignerOption

app = Commands(
    help="The chain: start or attach to anvil, deploy or attach to a deployment, advance a local clock."
)

UrlOption = Annotated[
    str | None, typer.Option(help="The node's URL (default: the remembered or configured one).")
]


def _node_file(cli: CliContext, url: str, suffix: str) -> Path:
    parsed = urlparse(url)
    return cli.settings.home / "nodes" / f"{parsed.hostname}-{parsed.port or 8545}.{suffix}"


def _running_anvil(pid: int) -> bool:
    """Whether `pid` is a live anvil (a pid file can outlive its node, and the pid be reused)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"anvil" in cmdline


@app.command()
def up(
    ctx: typer.Context,
    url: UrlOption = None,
    detach: Annotated[bool, typer.Option("--detach", help="Start in the background and return.")] = False,
) -> None:
    """Start anvil at the URL, or attach to the node already serving there; remember the URL in this home."""
    from backend.chain.anvil import node_answers, start_anvil
    from backend.settings import remember

    cli = CliContext.of(ctx)
    cfg = cli.settings
    url = (url or cfg.chain_url).rstrip("/")
    log_path = _node_file(cli, url, "log")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    node = start_anvil(url, chain_id=cfg.chain_id or 31337, log_path=log_path)
    remember(cfg.home, chain_url=url)
    info: dict = {"url": node.url, "chain_id": node_answers(node.url), "started": node.started_here}
    if node.started_here and detach:
        assert node.process is not None
        _node_file(cli, url, "pid").write_text(str(node.process.pid))
        info["pid"] = node.process.pid
        info["log"] = str(log_path)
    cli.emit(
        info,
        lambda i: console.print(
            f"{'started anvil' if i['started'] else 'attached to the node'} at {i['url']} (chain {i['chain_id']}); "
            f"later commands in this home use it",
            highlight=False,
        ),
    )
    if node.started_here and not detach:
        assert node.process is not None
        cli.say("Ctrl-C stops it.")
        try:
            while node.process.poll() is None:
                time.sleep(0.5)
        except KeyboardInterrupt:
            node.stop()


@app.command()
def down(ctx: typer.Context, url: UrlOption = None) -> None:
    """Stop the anvil that `chain up --detach` started at the URL (only that one)."""
    from backend.chain.errors import ChainError

    cli = CliContext.of(ctx)
    url = (url or cli.settings.chain_url).rstrip("/")
    pid_file = _node_file(cli, url, "pid")
    if not pid_file.exists():
        raise ChainError(f"no anvil started here with `chain up --detach` serves {url} (no {pid_file})")
    pid = int(pid_file.read_text())
    alive = _running_anvil(pid)
    if alive:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    pid_file.unlink()
    cli.emit(
        {"url": url, "pid": pid, "stopped": alive},
        lambda i: console.print(
            f"stopped anvil at {url} (pid {pid})"
            if alive
            else f"anvil at {url} (pid {pid}) had already stopped",
            highlight=False,
        ),
    )


@app.command()
def deploy(ctx: typer.Context, signer: SignerOption) -> None:
    """Deploy the contracts, write deployments/<network>.json in this home and store it in the content store,
    so others can `chain attach --deployments CID`."""
    from backend.chain.client import ChainClient
    from backend.chain.deploy import deploy_contracts

    cli = CliContext.of(ctx)
    cfg = cli.settings
    client = ChainClient.from_settings(cfg, require_deployments=False)
    deployer = signer.load(client.chain_id)
    deployments = deploy_contracts(client, deployer, network=cfg.network)
    deployments.save(cfg.deployments_file)
    from backend.storage import StorageError

    try:
        cid: str | None = cli.store.put(cfg.deployments_file.read_bytes())
    except StorageError as exc:  # deployed all the same: the file is here, and can be handed over as a file
        err_console.print(f"[yellow]warning:[/yellow] the deployment is not in the content store: {exc}")
        cid = None
    payload = {
        "file": str(cfg.deployments_file),
        "cid": cid,
        "chain_id": deployments.chain_id,
        "contracts": {k: v.address for k, v in deployments.contracts.items()},
    }

    def render(p: dict) -> None:
        console.print("\n".join(f"{k:18} {v}" for k, v in p["contracts"].items()), highlight=False)
        shared = p["cid"] or p["file"]
        console.print(f"others run `trustmarket chain attach --deployments {shared}`", highlight=False)

    cli.emit(payload, render)


@app.command()
def attach(
    ctx: typer.Context,
    deployments: Annotated[str, typer.Option(help="The deployment's CID (from `chain deploy`) or a file.")],
    url: UrlOption = None,
) -> None:
    """Use a deployment someone else made: fetch it (verified), check its contracts are on this chain, keep it in
    this home, and remember the chain's URL."""
    from backend.chain.artifacts import Artifacts
    from backend.chain.client import ChainClient
    from backend.chain.deployments import Deployments
    from backend.chain.errors import WrongChain
    from backend.settings import remember

    cli = CliContext.of(ctx)
    cfg = cli.settings
    url = (url or cfg.chain_url).rstrip("/")
    source = Path(deployments)
    data = source.read_bytes() if source.is_file() else cli.store.get(deployments)
    target = cfg.deployments_file
    target.parent.mkdir(parents=True, exist_ok=True)
    staged = target.with_suffix(".incoming")
    staged.write_bytes(data)
    try:
        record = Deployments.load(staged)
        client = ChainClient(
            url, Artifacts.load(cfg.artifacts_path), record, expected_chain_id=record.chain_id
        )
        try:
            client.check()  # the chain id, and code at every address
        except WrongChain as exc:
            raise WrongChain(f"{exc}: that deployment is for another chain") from None
        staged.replace(target)
    finally:
        staged.unlink(missing_ok=True)
    remember(cfg.home, chain_url=url)
    payload = {"url": url, "file": str(target), "chain_id": record.chain_id,
               "contracts": {k: v.address for k, v in record.contracts.items()}}  # fmt: skip
    cli.emit(
        payload,
        lambda p: console.print(
            f"attached to {len(p['contracts'])} contracts on chain {p['chain_id']} at {p['url']}",
            highlight=False,
        ),
    )


@app.command()
def advance(
    ctx: typer.Context,
    seconds: Annotated[int, typer.Argument(help="Seconds to move the chain's clock forward.", min=1)],
) -> None:
    """Mine a block SECONDS after the latest one on a local chain (anvil only: deadlines, windows and exit delays)."""
    from backend.chain.anvil import advance_clock
    from backend.chain.client import ChainClient
    from backend.chain.errors import ChainError
    from backend.chain.keys import LOCAL_CHAIN_IDS

    cli = CliContext.of(ctx)
    client = ChainClient.from_settings(cli.settings, require_deployments=False)
    if client.chain_id not in LOCAL_CHAIN_IDS:
        raise ChainError(f"chain {client.chain_id} is not a local chain: its clock is not ours to move")
    advance_clock(client, seconds)
    block = client.w3.eth.get_block("latest")
    payload = {"advanced": seconds, "block": block["number"], "timestamp": block["timestamp"]}
    cli.emit(
        payload,
        lambda p: console.print(
            f"advanced {seconds} s: block {p['block']} at {p['timestamp']}", highlight=False
        ),
    )


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
            f"chain {p['chain_id']} at {p['url']}, block {p['block']}, {len(p['contracts'])} contracts deployed",
            highlight=False,
        ),
    )
