"""`--signer`: the one option that says which key a command signs with (after Ape's `account_option()`).

A value is one of:

- `dev:N`: anvil's public dev account N (refused on any chain that is not a local one);
- a path to an encrypted V3 keystore (anything that names a file: it has a `/` or ends in `.json`);
- an Ape account alias (`ape accounts generate ALIAS`, i.e. `~/.ape/accounts/ALIAS.json`).

The value is checked while the command line is parsed (so a typo is a usage error before anything runs); the key
is decrypted only when the command first signs, with the password from `$TRUSTMARKET_KEYSTORE_PASSWORD` or a
prompt. `$TRUSTMARKET_SIGNER` gives the default, so a person sets their key once per shell.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

PASSWORD_ENV = "TRUSTMARKET_KEYSTORE_PASSWORD"
SIGNER_ENV = "TRUSTMARKET_SIGNER"
_DEV = re.compile(r"^dev:(\d{1,3})$")
_ALIAS = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class SignerSpec:
    """Which key to sign with, as given; `load` turns it into a key."""

    kind: Literal["dev", "keystore", "alias"]
    value: str

    def __str__(self) -> str:
        return f"dev:{self.value}" if self.kind == "dev" else self.value

    def load(self, chain_id: int) -> LocalAccount:
        """The key itself: decrypts a keystore (asking for its password) or derives the dev account."""
        from backend.chain import keys

        if self.kind == "dev":
            return keys.dev_account(int(self.value), chain_id)
        path = Path(self.value) if self.kind == "keystore" else keys.ape_keystore(self.value)
        password = os.environ.get(PASSWORD_ENV)
        if password is None:
            password = typer.prompt(f"Password for {path}", hide_input=True, err=True)
        return keys.load_keystore(path, password)


def parse_signer(text: str) -> SignerSpec:
    """`dev:N`, a keystore path or an Ape alias; `ValueError` with what was expected otherwise."""
    text = text.strip()
    if match := _DEV.match(text):
        return SignerSpec("dev", str(int(match.group(1))))
    if text.startswith("dev:"):
        raise ValueError(f"{text!r}: a dev account is dev:N with N from 0 to 999")
    if "/" in text or text.endswith(".json") or Path(text).expanduser().is_file():
        path = Path(text).expanduser()
        if not path.is_file():
            raise ValueError(f"no keystore file at {path}")
        return SignerSpec("keystore", str(path))
    if _ALIAS.match(text):
        return SignerSpec("alias", text)
    raise ValueError(f"{text!r} is not dev:N, a keystore file or an Ape account alias")


_HELP = (
    "The key to sign with: a keystore file (password from $TRUSTMARKET_KEYSTORE_PASSWORD or a prompt), an Ape "
    "account alias, or dev:N (anvil's dev account N, local chains only)."
)

_METAVAR = "KEYSTORE|ALIAS|dev:N"

# Typer reports a ValueError from the parser as a usage error naming the option.
SignerOption = Annotated[
    SignerSpec,
    typer.Option(
        "--signer", parser=parse_signer, metavar=_METAVAR, envvar=SIGNER_ENV, show_envvar=True, help=_HELP
    ),
]
# For commands where signing is optional (no default from the environment: it would sign unasked).
OptionalSignerOption = Annotated[
    SignerSpec | None, typer.Option("--signer", parser=parse_signer, metavar=_METAVAR, help=_HELP)
]

__all__ = [
    "PASSWORD_ENV",
    "SIGNER_ENV",
    "OptionalSignerOption",
    "SignerOption",
    "SignerSpec",
    "parse_signer",
]
