"""`RayEngine`: a round's passes as Ray tasks (https://docs.ray.io), on this machine or across a cluster.

- Column passes (partial Gram matrices, coordinate-wise rules, sketches, weighted sums) are split into
  contiguous slices of the local engine's own chunks, a few slices per worker; each task reads its slice's
  chunks and returns one result per chunk. The driver hands them back in chunk order, so the caller's
  reduction adds the very same numbers in the very same order as on one machine: bit-identical digests.
- Item passes (per-row checks, Shapley permutations, leave-one-out models) go out in contiguous batches.

Every task runs under `deterministic()` (one intra-op thread, deterministic kernels), like the local engine.
The matrix's rows travel once per engine through Ray's object store: update files as their paths (every node
must see the round's spool folder, e.g. on shared storage), rows held in memory as their values.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from itertools import pairwise
from typing import Any

from aggregator.engine import ChunkFn, chunk_ranges, deterministic, run_chunks
from aggregator.errors import AggregatorError
from aggregator.matrix import UpdateMatrix

__all__ = ["RayEngine"]

# Slices per worker: enough that a slow worker does not hold the pass up, few enough that a task's start-up
# (tens of milliseconds) stays small against its chunks.
_SLICES_PER_WORKER = 2
# Matrices whose rows stay in the object store: a round uses two or three.
_KEPT_MATRICES = 8


def _ray() -> Any:
    try:
        import ray
    except ImportError:  # pragma: no cover - ray is a dependency; this is for a trimmed install
        raise AggregatorError("the ray engine needs the `ray` package (pip install 'ray==2.52.0')") from None
    return ray


def _chunk_task(
    sources: Any,
    state: dict[str, Any],
    fn: ChunkFn,
    chunk: int,
    args: Sequence[Any],
    rows: int | None,
    first: int,
    last: int,
) -> list[tuple[int, int, Any]]:
    matrix = UpdateMatrix.restore(sources, state)
    with deterministic():
        return list(run_chunks(matrix, fn, chunk, args, rows, first, last))


def _item_task(fn: Callable[..., Any], items: Sequence[Any], args: Sequence[Any]) -> list[Any]:
    with deterministic():
        return [fn(item, *args) for item in items]


class RayEngine:
    """Passes as Ray tasks (see the module docstring).

    Uses the Ray instance this process already joined (`ray.init()`), else connects to `address` ('auto' for
    the cluster `ray start` runs on this machine, 'host:6379', 'ray://host:10001'), else starts a private
    instance on this machine with `num_cpus` CPUs (all by default). Never an instance found by chance: without
    an address it does not join another user's cluster. `close()` stops only an instance it started.
    """

    name = "ray"

    def __init__(self, address: str | None = None, *, num_cpus: int | None = None) -> None:
        ray = _ray()
        self._started = False
        if not ray.is_initialized():
            # Ray 2.52 warns that it will stop overriding the accelerator variables: we use none. No metrics
            # agent runs here: without the second, every Ray process complains of it on stderr.
            os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
            os.environ.setdefault("RAY_enable_metrics_collection", "0")
            private = address in (None, "local")
            try:
                ray.init(
                    address="local" if private else address,
                    num_cpus=num_cpus if private else None,
                    include_dashboard=False,
                    log_to_driver=False,
                    configure_logging=False,
                )
            except (ConnectionError, RuntimeError, ValueError) as exc:
                where = address or "a new local instance"
                raise AggregatorError(f"cannot start the ray engine on {where}: {exc}") from None
            self._started = True
        self._ray = ray
        self._chunk_remote = ray.remote(num_cpus=1)(_chunk_task)
        self._item_remote = ray.remote(num_cpus=1)(_item_task)
        self._refs: OrderedDict[int, tuple[Any, Any]] = OrderedDict()

    @property
    def workers(self) -> int:
        return max(1, int(self._ray.cluster_resources().get("CPU", 1)))

    def _sources_ref(self, sources: Any) -> Any:
        """One object-store copy of a matrix's rows for the engine's life (kept alive beside its ref)."""
        key = id(sources)
        if key not in self._refs:
            self._refs[key] = (sources, self._ray.put(sources))
            while len(self._refs) > _KEPT_MATRICES:  # earlier rounds' rows leave the object store
                self._refs.popitem(last=False)
        self._refs.move_to_end(key)
        return self._refs[key][1]

    def map_chunks(
        self,
        matrix: UpdateMatrix,
        fn: ChunkFn,
        chunk: int,
        args: Sequence[Any] = (),
        *,
        rows: int | None = None,
    ) -> Iterator[tuple[int, int, Any]]:
        total = len(chunk_ranges(matrix.d, chunk))
        if total == 0:
            return iter(())
        sources, state = matrix.payload()
        sources_ref, args_ref = self._sources_ref(sources), self._ray.put(tuple(args))
        slices = min(total, self.workers * _SLICES_PER_WORKER)
        bounds = [total * k // slices for k in range(slices + 1)]
        refs = [
            self._chunk_remote.remote(sources_ref, state, fn, chunk, args_ref, rows, lo, hi)
            for lo, hi in pairwise(bounds)
            if hi > lo
        ]
        return self._in_order(refs)

    def _in_order(self, refs: list[Any]) -> Iterator[tuple[int, int, Any]]:
        for ref in refs:
            yield from self._get(ref)

    def map(self, fn: Callable[..., Any], items: Sequence[Any], args: Sequence[Any] = ()) -> list[Any]:
        items = list(items)
        if not items:
            return []
        args_ref = self._ray.put(tuple(args))
        size = max(1, -(-len(items) // (self.workers * _SLICES_PER_WORKER)))
        refs = [
            self._item_remote.remote(fn, items[i : i + size], args_ref) for i in range(0, len(items), size)
        ]
        return [result for ref in refs for result in self._get(ref)]

    def _get(self, ref: Any) -> Any:
        try:
            return self._ray.get(ref)
        except self._ray.exceptions.RayTaskError as exc:
            # The task's own exception (an InvalidUpdate naming rows, say) is what the caller handles.
            if isinstance(exc.cause, AggregatorError):
                raise exc.cause from None
            raise

    def close(self) -> None:
        self._refs.clear()
        if self._started and self._ray.is_initialized():
            self._ray.shutdown()
        self._started = False

    def __repr__(self) -> str:
        return f"RayEngine(workers={self.workers})"
