"""Where a round's passes run: `LocalEngine` in this process, `RayEngine` (`aggregator.ray_engine`) on a Ray
cluster. The engine decides *where* work runs, never *what* it computes.

Two kinds of work go through an engine:

- `map_chunks(matrix, fn, chunk, args)`: `fn(block, start, stop, *args)` on every column chunk of an
  `UpdateMatrix` (partial Gram matrices, coordinate-wise rules, sketches, weighted sums). Chunk boundaries are
  the same whatever the engine, and results come back in chunk order for the caller to reduce in that order.
- `map(fn, items, args)`: `fn(item, *args)` on every item (per-row checks, Shapley permutations, leave-one-out
  models), results in item order.

Every function runs under the same deterministic settings (`deterministic()`: deterministic kernels, one
intra-op thread), so a pass yields the same bits in the aggregator's process, in a Ray worker, or on a
verifier's laptop. One thread because MKL's matrix products change their summation order with the thread count:
measured here, a `[104, 131072]` Gram block differs in its last bits between 1 and 4 threads. Parallelism comes
from running chunks and items side by side instead (Ray workers), which never changes a result.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import torch

from aggregator.errors import AggregatorError

if TYPE_CHECKING:
    from aggregator.matrix import UpdateMatrix

__all__ = [
    "ENGINES",
    "LOCAL",
    "ChunkFn",
    "Engine",
    "LocalEngine",
    "chunk_ranges",
    "deterministic",
    "get_engine",
    "run_chunks",
]

ENGINES = ("local", "ray")

ChunkFn = Callable[..., Any]


@contextmanager
def deterministic() -> Iterator[None]:
    """Deterministic torch kernels on one intra-op thread for the duration (previous settings restored)."""
    previous, threads = torch.are_deterministic_algorithms_enabled(), torch.get_num_threads()
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(previous)


def chunk_ranges(d: int, chunk: int) -> list[tuple[int, int]]:
    """The `(start, stop)` column ranges of a pass: fixed by `d` and `chunk` alone."""
    return [(start, min(start + chunk, d)) for start in range(0, d, chunk)]


def run_chunks(
    matrix: UpdateMatrix,
    fn: ChunkFn,
    chunk: int,
    args: Sequence[Any] = (),
    rows: int | None = None,
    first: int = 0,
    last: int | None = None,
) -> Iterator[tuple[int, int, Any]]:
    """`(start, stop, fn(block, start, stop, *args))` for chunks `first .. last - 1` of `matrix`.

    `block` is a `[rows, stop - start]` view of one reused buffer (rows beyond `matrix.n` are zero unless `fn`
    writes them), so `fn` must return fresh tensors, never the block itself.
    """
    ranges = chunk_ranges(matrix.d, chunk)[first:last]
    if not ranges:
        return
    buf = matrix.buffer(max(rows or matrix.n, matrix.n), chunk)
    for start, stop in ranges:
        matrix.read_into(start, stop, buf)
        yield start, stop, fn(buf[:, : stop - start], start, stop, *args)


@runtime_checkable
class Engine(Protocol):
    """Runs passes (see the module docstring); results always in chunk or item order."""

    @property
    def name(self) -> str: ...

    @property
    def workers(self) -> int:
        """How many passes' pieces can run at once."""
        ...

    def map_chunks(
        self,
        matrix: UpdateMatrix,
        fn: ChunkFn,
        chunk: int,
        args: Sequence[Any] = (),
        *,
        rows: int | None = None,
    ) -> Iterator[tuple[int, int, Any]]: ...

    def map(self, fn: Callable[..., Any], items: Sequence[Any], args: Sequence[Any] = ()) -> list[Any]: ...

    def close(self) -> None:
        """Release what the engine started (a Ray instance it launched); it cannot be used afterwards."""
        ...


class LocalEngine:
    """Every pass in this process, one chunk or item after the other."""

    name = "local"
    workers = 1

    def map_chunks(
        self,
        matrix: UpdateMatrix,
        fn: ChunkFn,
        chunk: int,
        args: Sequence[Any] = (),
        *,
        rows: int | None = None,
    ) -> Iterator[tuple[int, int, Any]]:
        return run_chunks(matrix, fn, chunk, args, rows)

    def map(self, fn: Callable[..., Any], items: Sequence[Any], args: Sequence[Any] = ()) -> list[Any]:
        with deterministic():  # as in a Ray task: the same kernels, the same thread count, the same bits
            return [fn(item, *args) for item in items]

    def close(self) -> None:
        pass

    def __repr__(self) -> str:
        return "LocalEngine()"


LOCAL = LocalEngine()


def get_engine(name: str, *, address: str | None = None, num_cpus: int | None = None) -> Engine:
    """The engine called `name`: `local`, or `ray` (connecting to `address`, or starting a local instance with
    `num_cpus` CPUs when there is none)."""
    if name == "local":
        return LOCAL
    if name == "ray":
        from aggregator.ray_engine import RayEngine

        return RayEngine(address, num_cpus=num_cpus)
    raise AggregatorError(f"unknown engine {name!r}; known engines: {', '.join(ENGINES)}")
