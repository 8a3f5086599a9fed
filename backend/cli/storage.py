"""`trustmarket storage`: add, fetch and inspect content by CID in the configured store (local or Kubo)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from backend.cli._common import JsonOption, console, emit, fail, handles_errors
from backend.settings import get_settings
from backend.storage import ContentStore, compute_cid, open_store

app = typer.Typer(
    help="Content-addressed storage whose CIDs equal Kubo's: add, get, stat, pin, unpin.",
    no_args_is_help=True,
)

CidArgument = Annotated[str, typer.Argument(help="The content's CID (CIDv0 Qm... or CIDv1 bafy.../bafk...).")]


def _store() -> ContentStore:
    return open_store(get_settings())


def _check_version(cid_version: int) -> None:
    # Checked here rather than by Typer so that bad input is one line and exit code 2, like every other error.
    if cid_version not in (0, 1):
        raise fail(f"--cid-version must be 0 or 1, not {cid_version}")


@app.command()
@handles_errors
def add(
    file: Annotated[Path, typer.Argument(help="File to add.")],
    cid_version: Annotated[
        int, typer.Option("--cid-version", help="0 (Kubo's default) or 1 (raw leaves).")
    ] = 0,
    only_hash: Annotated[bool, typer.Option("--only-hash", help="Compute the CID, store nothing.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Add FILE and print its CID (the same CID `ipfs add` gives it)."""
    _check_version(cid_version)
    if not file.is_file():
        raise fail(f"not a file: {file}")
    # --only-hash needs no store at all (works even when a configured Kubo node is down).
    cid = compute_cid(file, cid_version) if only_hash else _store().put(file, cid_version=cid_version)
    payload = {"cid": cid, "cid_version": cid_version, "size": file.stat().st_size, "stored": not only_hash}
    emit(payload, as_json, lambda p: console.print(p["cid"], highlight=False))


@app.command()
@handles_errors
def get(
    cid: CidArgument,
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Write here (default: stdout).", dir_okay=False)
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Fetch CID, verifying every block, into a file (or stdout)."""
    store = _store()
    if output is None:
        if as_json:
            raise fail("--json needs -o FILE (the content itself goes to stdout otherwise)")
        sys.stdout.buffer.write(store.get(cid))
        sys.stdout.buffer.flush()
        return
    store.get_to(cid, output)
    payload = {"cid": cid, "path": str(output), "size": output.stat().st_size}
    emit(
        payload,
        as_json,
        lambda p: console.print(f"{p['cid']} -> {p['path']} ({p['size']} bytes)", highlight=False),
    )


@app.command()
@handles_errors
def stat(cid: CidArgument, as_json: JsonOption = False) -> None:
    """Size, number of blocks and pin state of CID."""
    info = _store().stat(cid).to_dict()
    emit(info, as_json, _render_stat)


def _render_stat(info: dict[str, Any]) -> None:
    for key in ("cid", "size", "blocks", "cumulative_size", "pinned"):
        console.print(f"{key}: {info[key]}", highlight=False)


@app.command()
@handles_errors
def pin(cid: CidArgument, as_json: JsonOption = False) -> None:
    """Pin CID (it must be in the store)."""
    _store().pin(cid)
    emit(
        {"cid": cid, "pinned": True}, as_json, lambda p: console.print(f"pinned {p['cid']}", highlight=False)
    )


@app.command()
@handles_errors
def unpin(cid: CidArgument, as_json: JsonOption = False) -> None:
    """Unpin CID (a no-op if it was not pinned)."""
    _store().unpin(cid)
    emit(
        {"cid": cid, "pinned": False},
        as_json,
        lambda p: console.print(f"unpinned {p['cid']}", highlight=False),
    )
