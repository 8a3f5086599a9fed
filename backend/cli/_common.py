"""What every CLI command shares: the consoles, one-line errors with exit code 2, and ether amounts.

Kept light (no web3, no torch): `trustmarket --help` imports this module and little else.
"""

from __future__ import annotations

import sys
from decimal import Decimal, InvalidOperation

import typer
from rich.console import Console

# Piped output (logs, `make demo > file`) gets 120 columns rather than rich's default 80, so tables stay whole.
console = Console(width=None if sys.stdout.isatty() else 120)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 120)

EXIT_BAD_INPUT = 2
WEI_PER_ETHER = 10**18


def fail(message: str) -> typer.Exit:
    """Print one line on stderr and return the exit to raise (code 2)."""
    err_console.print(f"[red]error:[/red] {message}", markup=True, highlight=False, soft_wrap=True)
    return typer.Exit(code=EXIT_BAD_INPUT)


def parse_amount(text: str, what: str, *, in_wei: bool = False) -> int:
    """An amount given on the command line, as wei: ether (up to 18 decimals), or whole wei with `in_wei`."""
    try:
        value = Decimal(str(text).strip())
    except InvalidOperation:
        unit = "wei" if in_wei else "ether"
        raise ValueError(f"{what}: {text!r} is not a number of {unit}") from None
    if not value.is_finite() or value < 0:
        raise ValueError(f"{what}: {text!r} must be a non-negative amount")
    wei = value if in_wei else value * WEI_PER_ETHER
    if wei != wei.to_integral_value():
        raise ValueError(
            f"{what}: {text!r} is not a whole number of wei"
            if in_wei
            else f"{what}: {text!r} has more than 18 decimals"
        )
    return int(wei)


def format_ether(wei: int) -> str:
    """`wei` as ether, exactly, without exponent notation: 2 -> '0.000000000000000002', 10**17 -> '0.1'."""
    text = format(Decimal(int(wei)) / WEI_PER_ETHER, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def format_amount(wei: int, in_wei: bool = False) -> str:
    """An amount for people: '0.1 ETH', or '100000000000000000 wei' when they asked for --wei."""
    return f"{int(wei)} wei" if in_wei else f"{format_ether(wei)} ETH"


__all__ = [
    "EXIT_BAD_INPUT",
    "WEI_PER_ETHER",
    "console",
    "err_console",
    "fail",
    "format_amount",
    "format_ether",
    "parse_amount",
]
