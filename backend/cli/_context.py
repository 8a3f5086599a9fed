"""The context object of a command and the sub-app that gives every command `--json` (and `--wei`).

Each sub-app (`Commands(context=...)`) puts one context object on the click context before its command runs.
The object builds the settings, the chain client, the market and the content store on first use, once, so a
command asks for what it needs (`cli.market`, `cli.store`, `cli.account(signer)`) and nothing else is built
(`trustmarket storage get` never loads web3). `--json` and `--wei` are declared here once and land on the
object; `cli.emit` and `cli.amount` honour them.
"""

from __future__ import annotations

import functools
import inspect
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cached_property
from typing import TYPE_CHECKING, Annotated, Any, Self, TypeVar

import typer

from backend.cli._common import console, err_console, format_amount, parse_amount
from backend.cli._signer import SignerSpec

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

    from backend.chain.client import ChainClient
    from backend.chain.training_market import TrainingMarket
    from backend.settings import Settings
    from backend.storage import ContentStore

F = TypeVar("F", bound=Callable[..., Any])
META_KEY = "trustmarket.context"


class CliContext:
    """What one command works with; every part is built on first use and kept for the rest of the command."""

    def __init__(self) -> None:
        self.as_json = False
        self.in_wei = False
        self.signers: dict[SignerSpec, LocalAccount] = {}

    @classmethod
    def of(cls, ctx: typer.Context) -> Self:
        """The context object its sub-app installed (or a fresh one when a command runs on its own)."""
        found = ctx.find_object(cls)
        return found if found is not None else ctx.ensure_object(cls)

    # -- the configured world, lazily ---------------------------------------------------------------------------

    @cached_property
    def settings(self) -> Settings:
        from backend.settings import Settings

        return Settings()

    @cached_property
    def client(self) -> ChainClient:
        """The chain client over the deployments file (which must exist)."""
        from backend.chain.client import ChainClient

        return ChainClient.from_settings(self.settings)

    @cached_property
    def market(self) -> TrainingMarket:
        from backend.chain.training_market import TrainingMarket

        return TrainingMarket(self.client)

    @cached_property
    def store(self) -> ContentStore:
        from backend.storage import open_store

        return open_store(self.settings)

    def account(self, signer: SignerSpec) -> LocalAccount:
        """The key `--signer` names, loaded once (a keystore's password is asked for once per command)."""
        if signer not in self.signers:
            self.signers[signer] = signer.load(self.client.chain_id)
        return self.signers[signer]

    # -- output -------------------------------------------------------------------------------------------------

    def emit(self, payload: Any, render: Callable[[Any], None] | None = None) -> None:
        """Print `payload` as JSON (with --json) or through `render` (or plainly)."""
        if self.as_json:
            sys.stdout.write(json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")
        elif render is not None:
            render(payload)
        else:
            console.print(payload)

    def emit_line(self, payload: Any, render: Callable[[Any], None] | None = None) -> None:
        """One event of a long-running command: a compact JSON line each (with --json), or text."""
        if self.as_json:
            sys.stdout.write(json.dumps(payload, sort_keys=True, default=str) + "\n")
            sys.stdout.flush()
        else:
            self.emit(payload, render)

    def say(self, message: str) -> None:
        """A line for people (nothing under --json, whose output is the payload alone)."""
        if not self.as_json:
            console.print(message, highlight=False)

    def amount(self, wei: int) -> str:
        """An amount as people read it: ether, or wei under --wei."""
        return format_amount(wei, self.in_wei)

    def wei(self, text: str, what: str) -> int:
        """An amount option's value in wei: read as ether, or as whole wei under --wei."""
        return parse_amount(text, what, in_wei=self.in_wei)

    @contextmanager
    def step(self, description: str) -> Iterator[None]:
        """A spinner with elapsed time on stderr while the block runs (on a terminal, and not under --json)."""
        if self.as_json or not err_console.is_terminal:
            yield
            return
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
        with Progress(*columns, console=err_console, transient=False) as progress:
            task = progress.add_task(description, total=1)
            yield
            progress.update(task, completed=1, description=f"{description} [green]done")


# -- the options every command shares -----------------------------------------------------------------------------


def _remember_json(ctx: typer.Context, value: bool) -> None:
    if value:
        CliContext.of(ctx).as_json = True


def _remember_wei(ctx: typer.Context, value: bool) -> None:
    if value:
        CliContext.of(ctx).in_wei = True


_JSON = Annotated[
    bool,
    typer.Option(
        "--json",
        callback=_remember_json,
        expose_value=False,
        help="Print machine-readable JSON instead of text.",
    ),
]
_WEI = Annotated[
    bool,
    typer.Option(
        "--wei",
        callback=_remember_wei,
        is_eager=True,
        expose_value=False,
        help="Amounts in wei: read amount options as whole wei and print amounts in wei (default: ether).",
    ),
]


def _with_shared_options(func: F, *, output: bool, amounts: bool) -> F:
    """`func` with `--json` (and `--wei`) added to what Typer sees; their callbacks store them on the context."""
    extra = []
    if output:
        extra.append(
            inspect.Parameter("as_json", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=_JSON)
        )
    if amounts:
        extra.append(
            inspect.Parameter("in_wei", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=_WEI)
        )
    if not extra:
        return func
    signature = inspect.signature(func, eval_str=True)
    taken = {p.name for p in extra} & set(signature.parameters)
    if taken:
        raise TypeError(f"{func.__qualname__} declares {sorted(taken)} itself; they come with the sub-app")

    @functools.wraps(func)
    def command(*args: Any, **kwargs: Any) -> Any:
        # Typer passes every declared parameter; the shared ones did their work in their callbacks.
        for shared in extra:
            kwargs.pop(shared.name, None)
        return func(*args, **kwargs)

    command.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[*signature.parameters.values(), *extra]
    )
    return command  # type: ignore[return-value]


class Commands(typer.Typer):
    """A sub-app: installs its context object before any of its commands runs, and gives each command `--json`
    (unless `output=False`: servers, raw content on stdout) and `--wei` (with `amounts=True`)."""

    def __init__(self, *, context: type[CliContext] = CliContext, **kwargs: Any) -> None:
        kwargs.setdefault("no_args_is_help", True)
        kwargs.setdefault("add_completion", False)
        kwargs.setdefault("pretty_exceptions_enable", False)
        super().__init__(**kwargs)
        self.context_class = context

        def install(ctx: typer.Context) -> None:
            ctx.obj = context()
            ctx.meta[META_KEY] = (
                ctx.obj
            )  # meta is shared by the whole chain: the root's error handler finds it

        self.callback()(install)

    def command(  # type: ignore[override]
        self, name: str | None = None, *, output: bool = True, amounts: bool = False, **kwargs: Any
    ) -> Callable[[F], F]:
        register = super().command(name, **kwargs)

        def decorator(func: F) -> F:
            register(_with_shared_options(func, output=output, amounts=amounts))
            return func

        return decorator


__all__ = ["META_KEY", "CliContext", "Commands"]
