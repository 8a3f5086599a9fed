"""Shared CLI plumbing: settings, the chain client and the signing key a command acts with."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from eth_account.signers.local import LocalAccount

from backend.chain import keys
from backend.chain.client import ChainClient
from backend.settings import Settings

PASSWORD_ENV = "TRUSTMARKET_KEYSTORE_PASSWORD"

KeystoreOption = Annotated[
    Path | None,
    typer.Option(
        "--keystore", help=f"Encrypted keystore (V3 JSON); password from ${PASSWORD_ENV} or a prompt."
    ),
]
AccountOption = Annotated[
    str | None, typer.Option("--account", help="An Ape account alias (~/.ape/accounts).")
]
DevAccountOption = Annotated[
    int | None, typer.Option("--dev-account", help="anvil's dev account N (local chains only).")
]


def settings() -> Settings:
    return Settings()


def chain_client(cfg: Settings | None = None, *, require_deployments: bool = True) -> ChainClient:
    return ChainClient.from_settings(cfg or settings(), require_deployments=require_deployments)


def signer(
    client: ChainClient, keystore: Path | None, account: str | None, dev_account: int | None
) -> LocalAccount:
    """The key a command signs with: exactly one of --keystore, --account, --dev-account."""
    chosen = [x is not None for x in (keystore, account, dev_account)]
    if sum(chosen) != 1:
        raise keys.KeyLoadError("choose exactly one of --keystore FILE, --account ALIAS, --dev-account N")
    if dev_account is not None:
        return keys.dev_account(dev_account, client.chain_id)
    path = keystore if keystore is not None else keys.ape_keystore(account)  # type: ignore[arg-type]
    password = os.environ.get(PASSWORD_ENV)
    if password is None:
        password = typer.prompt(f"Password for {path}", hide_input=True)
    return keys.load_keystore(path, password)


def market(cfg: Settings | None = None):
    """The deployed TrainingMarket."""
    from backend.chain.training_market import TrainingMarket

    return TrainingMarket(chain_client(cfg))


def store(cfg: Settings | None = None):
    """The configured content store."""
    from backend.storage import open_store

    return open_store(cfg or settings())


def to_wei(amount_eth: str, what: str) -> int:
    """An ether amount given on the command line, as wei; refuses negatives and garbage."""
    from decimal import Decimal, InvalidOperation

    try:
        value = Decimal(amount_eth)
    except InvalidOperation:
        raise ValueError(f"{what}: {amount_eth!r} is not a number of ether") from None
    if not value.is_finite() or value < 0:
        raise ValueError(f"{what}: {amount_eth!r} must be a non-negative number of ether")
    wei = value * 10**18
    if wei != wei.to_integral_value():
        raise ValueError(f"{what}: {amount_eth!r} has more than 18 decimals")
    return int(wei)
