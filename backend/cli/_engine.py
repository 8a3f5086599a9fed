"""`--engine local|ray`: where a command's round computation runs (default: TRUSTMARKET_ENGINE, else local).

The Ray engine joins TRUSTMARKET_RAY_ADDRESS ('auto' for the cluster `ray start` runs here, 'ray://host:10001'
for a remote one), or starts a private Ray instance on this machine for the command and stops it afterwards.
The engine never changes a result: a round aggregated on Ray verifies on a laptop with the local engine.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from aggregator.engine import Engine
    from backend.settings import Settings


class EngineName(StrEnum):
    local = "local"
    ray = "ray"


EngineOption = Annotated[
    EngineName | None,
    typer.Option(
        "--engine",
        help="Where the round's passes run: this process (local) or a Ray cluster (ray; TRUSTMARKET_RAY_ADDRESS, "
        "else a private instance on this machine). Default: TRUSTMARKET_ENGINE, else local. Results are the same.",
        show_default=False,
    ),
]


@contextmanager
def open_engine(settings: Settings, name: EngineName | None) -> Iterator[Engine]:
    """The engine `name` (or the settings'), closed when the block ends."""
    from aggregator.engine import get_engine

    engine = get_engine(str(name or settings.engine), address=settings.ray_address)
    try:
        yield engine
    finally:
        engine.close()
