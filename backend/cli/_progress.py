"""Progress display for long steps (training, uploads, waiting for receipts); silent under --json."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext

from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from backend.cli._common import err_console


@contextmanager
def step(description: str, quiet: bool = False) -> Iterator[None]:
    """A spinner with elapsed time on stderr while the block runs (only on a terminal: logs and pipes get
    nothing but the result and, on failure, the one-line error)."""
    if quiet or not err_console.is_terminal:
        with nullcontext():
            yield
        return
    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    with Progress(*columns, console=err_console, transient=False) as progress:
        task = progress.add_task(description, total=1)
        yield
        progress.update(task, completed=1, description=f"{description} [green]done")
