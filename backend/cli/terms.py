"""`trustmarket terms`: publish the access terms every API user accepts, and show the ones in force."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from backend.cli._common import console
from backend.cli._context import CliContext, Commands
from backend.cli._signer import SignerOption

app = Commands(
    help="The access terms API users accept: publish a version (terms admins), show the current one."
)


@app.command()
def publish(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="The terms document (any format; people read it at the URI).")],
    signer: SignerOption,
    uri: Annotated[
        str | None, typer.Option(help="Where people read it (default: ipfs://CID after storing it).")
    ] = None,
) -> None:
    """Publish FILE as the new terms: its sha256 goes on chain (AccessRegistry.publishTerms) with the URI."""
    from backend.chain.access_registry import AccessRegistry
    from backend.storage import sha256_hex

    cli = CliContext.of(ctx)
    if not file.is_file():
        raise FileNotFoundError(f"no terms file at {file}")
    data = file.read_bytes()
    if not data.strip():
        raise ValueError(f"{file} is empty: publish the text people agree to")
    digest = sha256_hex(data)
    where = uri or f"ipfs://{cli.store.put(data)}"
    registry = AccessRegistry(cli.client)
    receipt = registry.publish_terms(cli.account(signer), bytes.fromhex(digest), where)
    terms = registry.terms()
    payload = {"version": terms.version, "terms_hash": "0x" + digest, "uri": where,
               "transaction": receipt["transactionHash"].to_0x_hex()}  # fmt: skip
    cli.emit(
        payload,
        lambda p: console.print(f"published terms version {p['version']} ({p['uri']})", highlight=False),
    )


@app.command()
def show(ctx: typer.Context) -> None:
    """The terms in force: version, hash and where to read them."""
    from backend.chain.access_registry import AccessRegistry

    cli = CliContext.of(ctx)
    registry = AccessRegistry(cli.client)
    terms = registry.terms()
    payload = {
        "version": terms.version,
        "terms_hash": "0x" + terms.terms_hash.hex() if terms.published else None,
        "uri": registry.terms_uri(terms.version) if terms.published else None,
    }
    cli.emit(
        payload,
        lambda p: console.print(
            f"terms version {p['version']}: {p['uri']} ({p['terms_hash']})"
            if p["uri"]
            else "no terms published yet: `trustmarket terms publish FILE --signer ...` (a TERMS_ADMIN_ROLE holder)",
            highlight=False,
        ),
    )
