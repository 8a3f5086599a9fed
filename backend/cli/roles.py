"""`trustmarket roles`: grant, revoke and check the contracts' AccessControl roles (admins)."""

from __future__ import annotations

from typing import Annotated

import typer

from backend.cli._common import console
from backend.cli._context import CliContext, Commands
from backend.cli._roles import ROLES, role_hash
from backend.cli._signer import SignerOption

app = Commands(help="Grant, revoke and check roles on the contracts (EVALUATOR_ROLE, TERMS_ADMIN_ROLE, ...).")

RoleArgument = Annotated[str, typer.Argument(help=f"One of {', '.join(sorted(ROLES))}.")]
AccountArgument = Annotated[str, typer.Argument(help="The account's address.")]
ContractOption = Annotated[
    str | None, typer.Option("--contract", help="The contract (default: the one that declares the role).")
]


def _target(role: str, contract: str | None) -> str:
    holders = ROLES.get(role)
    if holders is None:
        raise ValueError(f"unknown role {role!r}; roles: {', '.join(sorted(ROLES))}")
    if contract is None:
        if len(holders) > 1:
            raise ValueError(f"{role} exists on {' and '.join(holders)}: pick one with --contract")
        return holders[0]
    if contract not in holders:
        raise ValueError(f"{contract} has no {role} (it is on {', '.join(holders)})")
    return contract


def _address(value: str) -> str:
    from web3 import Web3

    if not Web3.is_address(value):
        raise ValueError(f"{value!r} is not an address")
    return Web3.to_checksum_address(value)


def _change(ctx: typer.Context, fn: str, role: str, account: str, contract: str | None, signer) -> None:
    cli = CliContext.of(ctx)
    target = _target(role, contract)
    who = _address(account)
    receipt = cli.client.transact(cli.account(signer), target, fn, role_hash(role), who)
    payload = {
        "contract": target,
        "role": role,
        "account": who,
        "transaction": receipt["transactionHash"].to_0x_hex(),
    }
    done = "granted" if fn == "grantRole" else "revoked"
    cli.emit(payload, lambda p: console.print(f"{done} {role} on {target} to {who}", highlight=False))


@app.command()
def grant(
    ctx: typer.Context,
    role: RoleArgument,
    account: AccountArgument,
    signer: SignerOption,
    contract: ContractOption = None,
) -> None:
    """Give ACCOUNT a role (the signer must hold the role's admin role, DEFAULT_ADMIN_ROLE by default)."""
    _change(ctx, "grantRole", role, account, contract, signer)


@app.command()
def revoke(
    ctx: typer.Context,
    role: RoleArgument,
    account: AccountArgument,
    signer: SignerOption,
    contract: ContractOption = None,
) -> None:
    """Take a role from ACCOUNT."""
    _change(ctx, "revokeRole", role, account, contract, signer)


@app.command()
def check(
    ctx: typer.Context, role: RoleArgument, account: AccountArgument, contract: ContractOption = None
) -> None:
    """Whether ACCOUNT holds the role."""
    cli = CliContext.of(ctx)
    target, who = _target(role, contract), _address(account)
    has = bool(cli.client.call(target, "hasRole", role_hash(role), who))
    cli.emit(
        {"contract": target, "role": role, "account": who, "has_role": has},
        lambda p: console.print(
            f"{who} {'holds' if has else 'does not hold'} {role} on {target}", highlight=False
        ),
    )
