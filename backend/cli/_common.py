"""What every CLI command shares: one console, `--json` output and one-line errors with exit code 2."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from typing import Annotated, Any, ParamSpec, TypeVar

import typer
from rich.console import Console

from backend.errors import TrustmarketError

# Piped output (logs, `make demo > file`) gets 120 columns rather than rich's default 80, so tables stay whole.
console = Console(width=None if sys.stdout.isatty() else 120)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 120)

JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of text.")]

P = ParamSpec("P")
R = TypeVar("R")

EXIT_BAD_INPUT = 2


def fail(message: str) -> typer.Exit:
    """Print one line on stderr and return the exit to raise (code 2)."""
    err_console.print(f"[red]error:[/red] {message}", markup=True, highlight=False, soft_wrap=True)
    return typer.Exit(code=EXIT_BAD_INPUT)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn the project's exceptions (and bad values) into one line and exit code 2."""
    try:
        yield
    except TrustmarketError as exc:
        raise fail(str(exc)) from None
    except (ValueError, FileNotFoundError, PermissionError) as exc:
        raise fail(str(exc)) from None


def handles_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Decorator form of `user_errors` for command functions."""

    @wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with user_errors():
            return func(*args, **kwargs)

    return wrapper


def emit(payload: Any, as_json: bool, render: Callable[[Any], None] | None = None) -> None:
    """Print `payload` as JSON (with --json) or through `render` (or plainly)."""
    if as_json:
        sys.stdout.write(json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")
    elif render is not None:
        render(payload)
    else:
        console.print(payload)
