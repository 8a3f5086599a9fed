"""The `trustmarket` command line: one Typer app whose sub-apps load only when they are invoked.

Errors are turned into one line on stderr with exit code 2 here, once, for every command (`RootGroup.invoke`):
the project's exceptions, bad values, unreadable files and usage errors; a reverted transaction gets a hint of
what to do next (`backend.cli._hints`). `trustmarket --help` lists the sub-apps from the table below without
importing them, so it and simple commands start without loading web3 or torch.
"""

from __future__ import annotations

import importlib
from typing import Any

import typer
import typer._click as click  # Typer vendors Click: its contexts and usage errors are the ones commands run in
from typer._click.exceptions import NoArgsIsHelpError, UsageError
from typer.core import TyperCommand, TyperGroup

from backend.cli._common import fail
from backend.cli._context import META_KEY, CliContext

__all__ = ["app", "main"]

# name -> (module under backend.cli, one-line help). A sub-app module exposes `app` (a `Commands`).
SUB_APPS: dict[str, tuple[str, str]] = {
    "api": ("api", "The REST API: serve it, list its routes' access, export its OpenAPI."),
    "chain": (
        "chain",
        "The chain: start or attach to anvil, deploy or attach to a deployment, advance a local clock.",
    ),
    "model": ("model", "Models: list what can be used here, install a project's plugin model."),
    "project": (
        "project",
        "A training project: create it and follow its rounds (owners); cancel, challenge, resolve (anyone, arbiters).",
    ),
    "rag": ("rag", "Decentralized RAG weighted by on-chain source reliability."),
    "report": ("report", "Round reports as figures: the explorer's charts written as PNG."),
    "roles": (
        "roles",
        "Grant, revoke and check roles on the contracts (EVALUATOR_ROLE, TERMS_ADMIN_ROLE, ...).",
    ),
    "storage": (
        "storage",
        "Content-addressed storage whose CIDs equal Kubo's: add, get, stat, pin, unpin, serve.",
    ),
    "terms": (
        "terms",
        "The access terms API users accept: publish a version (terms admins), show the current one.",
    ),
    "trainer": ("trainer", "Take part in a project as a trainer."),
    "verifier": (
        "verifier",
        "The BLS verifier committee: keys, registration, signing round results, attestations.",
    ),
}
# Top-level commands: name -> (module whose `app` holds a command of that name, one-line help).
COMMANDS: dict[str, tuple[str, str]] = {
    "aggregate": (
        "aggregate",
        "Aggregate a round and post the result on chain (as the project's aggregator).",
    ),
    "verify": ("aggregate", "Recompute finalized rounds from on-chain inputs; exit 1 on a mismatch."),
    "demo": ("aggregate", "Run the training marketplace end to end on a fresh local anvil."),
    "simulate": (
        "simulate",
        "Simulate rounds of virtual trainers and attackers off chain: accuracy per round and the payouts.",
    ),
}


class RootGroup(TyperGroup):
    """Loads a sub-app or command when it is invoked, and reports every failure as one line (exit code 2)."""

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        # Stand-ins that carry the help line: listing (`--help`, typo suggestions) imports nothing.
        for name, (_, line) in sorted({**SUB_APPS, **COMMANDS}.items()):
            self.commands.setdefault(name, TyperCommand(name, help=line, short_help=line))

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name, cmd, rest = super().resolve_command(ctx, args)
        if name is not None and (name in SUB_APPS or name in COMMANDS):
            cmd = load_command(name)
        return name, cmd, rest

    def invoke(self, ctx: click.Context) -> Any:
        from backend.cli._hints import one_line

        try:
            return super().invoke(ctx)
        except NoArgsIsHelpError:
            raise
        except UsageError as exc:
            where = exc.ctx.command_path if exc.ctx is not None else "trustmarket"
            raise fail(f"{exc.format_message()} (see `{where} --help`)") from None
        except (typer.Exit, typer.Abort, KeyboardInterrupt, BrokenPipeError):
            raise
        except Exception as exc:
            message = one_line(exc, ctx.meta.get(META_KEY))
            if message is None:
                raise  # not bad input but a bug: keep the traceback
            raise fail(message) from None


def load_command(name: str) -> click.Command:
    """The real click command behind a sub-app or top-level command name."""
    if name in SUB_APPS:
        module = importlib.import_module(f"backend.cli.{SUB_APPS[name][0]}")
        return typer.main.get_command(module.app)
    module = importlib.import_module(f"backend.cli.{COMMANDS[name][0]}")
    group = typer.main.get_command(module.app)
    assert isinstance(group, TyperGroup)
    return group.commands[name]


app = typer.Typer(
    name="trustmarket",
    cls=RootGroup,
    help="trustmarket: a trust and marketplace platform for collaborative machine learning.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _root(ctx: typer.Context) -> None:
    # Top-level commands (aggregate, verify, demo) work with the base context object; sub-apps install their own.
    ctx.obj = CliContext()
    ctx.meta[META_KEY] = ctx.obj


def main() -> None:
    """Console-script entry point."""
    app()
