"""The `trustmarket` command line: one Typer app, one sub-app per area."""

from __future__ import annotations

import importlib

import typer

__all__ = ["app", "main"]

app = typer.Typer(
    name="trustmarket",
    help="trustmarket: a trust and marketplace platform for collaborative machine learning.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

# (module under backend.cli, sub-command name). Each module exposes `app`, a typer.Typer.
_SUBCOMMANDS: list[tuple[str, str]] = [
    ("api", "api"),
    ("chain", "chain"),
    ("project", "project"),
    ("rag", "rag"),
    ("storage", "storage"),
    ("trainer", "trainer"),
    ("verifier", "verifier"),
]
# Modules that add top-level commands themselves: each exposes `register(app)`.
_TOP_LEVEL: list[str] = ["aggregate"]

for _module, _name in _SUBCOMMANDS:
    app.add_typer(importlib.import_module(f"backend.cli.{_module}").app, name=_name)
for _module in _TOP_LEVEL:
    importlib.import_module(f"backend.cli.{_module}").register(app)


def main() -> None:
    """Console-script entry point."""
    app()
