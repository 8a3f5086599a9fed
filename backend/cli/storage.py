"""`trustmarket storage`: add, fetch and inspect content by CID in the configured store (local or Kubo)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from backend.cli._common import console, fail
from backend.cli._context import CliContext, Commands

app = Commands(help="Content-addressed storage whose CIDs equal Kubo's: add, get, stat, pin, unpin, serve.")

CidArgument = Annotated[str, typer.Argument(help="The content's CID (CIDv0 Qm... or CIDv1 bafy.../bafk...).")]


def _check_version(cid_version: int) -> None:
    # Checked here rather than by Typer so that bad input is one line and exit code 2, like every other error.
    if cid_version not in (0, 1):
        raise fail(f"--cid-version must be 0 or 1, not {cid_version}")


@app.command()
def add(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="File to add.")],
    cid_version: Annotated[
        int, typer.Option("--cid-version", help="0 (Kubo's default) or 1 (raw leaves).")
    ] = 0,
    only_hash: Annotated[bool, typer.Option("--only-hash", help="Compute the CID, store nothing.")] = False,
) -> None:
    """Add FILE and print its CID (the same CID `ipfs add` gives it)."""
    from backend.storage import compute_cid

    cli = CliContext.of(ctx)
    _check_version(cid_version)
    if not file.is_file():
        raise fail(f"not a file: {file}")
    # --only-hash needs no store at all (works even when a configured Kubo node is down).
    cid = compute_cid(file, cid_version) if only_hash else cli.store.put(file, cid_version=cid_version)
    payload = {"cid": cid, "cid_version": cid_version, "size": file.stat().st_size, "stored": not only_hash}
    cli.emit(payload, lambda p: console.print(p["cid"], highlight=False))


@app.command()
def get(
    ctx: typer.Context,
    cid: CidArgument,
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Write here (default: stdout).", dir_okay=False)
    ] = None,
) -> None:
    """Fetch CID, verifying every block, into a file (or stdout)."""
    cli = CliContext.of(ctx)
    store = cli.store
    if output is None:
        if cli.as_json:
            raise fail("--json needs -o FILE (the content itself goes to stdout otherwise)")
        sys.stdout.buffer.write(store.get(cid))
        sys.stdout.buffer.flush()
        return
    store.get_to(cid, output)
    payload = {"cid": cid, "path": str(output), "size": output.stat().st_size}
    cli.emit(
        payload, lambda p: console.print(f"{p['cid']} -> {p['path']} ({p['size']} bytes)", highlight=False)
    )


@app.command()
def stat(ctx: typer.Context, cid: CidArgument) -> None:
    """Size, number of blocks and pin state of CID."""
    cli = CliContext.of(ctx)
    cli.emit(cli.store.stat(cid).to_dict(), _render_stat)


def _render_stat(info: dict[str, Any]) -> None:
    for key in ("cid", "size", "blocks", "cumulative_size", "pinned"):
        console.print(f"{key}: {info[key]}", highlight=False)


@app.command()
def pin(ctx: typer.Context, cid: CidArgument) -> None:
    """Pin CID (it must be in the store)."""
    cli = CliContext.of(ctx)
    cli.store.pin(cid)
    cli.emit({"cid": cid, "pinned": True}, lambda p: console.print(f"pinned {p['cid']}", highlight=False))


@app.command()
def unpin(ctx: typer.Context, cid: CidArgument) -> None:
    """Unpin CID (a no-op if it was not pinned)."""
    cli = CliContext.of(ctx)
    cli.store.unpin(cid)
    cli.emit({"cid": cid, "pinned": False}, lambda p: console.print(f"unpinned {p['cid']}", highlight=False))


@app.command(output=False)
def serve(
    ctx: typer.Context,
    host: Annotated[
        str, typer.Option(help="Interface to listen on (0.0.0.0 for other machines).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
    max_upload: Annotated[int, typer.Option(help="Largest upload accepted, in bytes.", min=1)] = 1 << 30,
) -> None:
    """Serve the local store by the IPFS trustless gateway protocol (GET /ipfs/CID, raw blocks and CARs).

    Anyone who reaches it may read everything in the store. Uploads (POST /ipfs/) are accepted only when
    TRUSTMARKET_STORE_TOKEN is set here, from clients that send it (their TRUSTMARKET_STORE_TOKEN).
    """
    import uvicorn

    from backend.storage import LocalStore
    from backend.storage.gateway import Gateway

    cli = CliContext.of(ctx)
    store = cli.store
    if not isinstance(store, LocalStore):
        raise fail(f"storage serve serves a local store; TRUSTMARKET_STORE is {cli.settings.store!r}")
    token = cli.settings.store_token.get_secret_value() if cli.settings.store_token else None
    gateway = Gateway(store, write_token=token, max_upload=max_upload)
    writes = (
        "uploads with the write token" if token else "read-only (set TRUSTMARKET_STORE_TOKEN for uploads)"
    )
    console.print(f"gateway for {store.root} on http://{host}:{port}/ipfs/ ({writes})", highlight=False)
    uvicorn.run(gateway.app, host=host, port=port, log_level="warning")
