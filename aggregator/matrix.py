"""The chunked engine that every rule, outlier test and valuation shares: an `[n, d]` update matrix read one
column chunk at a time, its Gram matrix, and weighted sums of its rows.

An update matrix has one flattened model delta per row (`n` rows, `d` columns). Nothing here holds more than one
column chunk of it at a time: a first pass accumulates the partial Gram matrices of the chunks (every pairwise
distance, norm and cosine follows from the `n x n` Gram), a second pass forms an aggregate as a weighted sum of
rows. Peak extra memory is O(n^2 + n * chunk) whatever `d` is, so the rows can be update files on disk
(`aggregator.rows.SafetensorsRow`) that together exceed RAM.

Every pass is a pure function of one chunk, run by the matrix's engine (`aggregator.engine`): in this process,
or on Ray workers over column slices. The caller reduces the per-chunk results in chunk order, so the bits do
not depend on the engine.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from aggregator.engine import LOCAL, Engine
from aggregator.errors import AggregatorError, InvalidUpdate

__all__ = [
    "DEFAULT_CHUNK",
    "GramStats",
    "UpdateMatrix",
    "check_chunk",
    "column_dots",
    "finite_rows",
    "gram_stats",
    "pairwise_sq_distances",
    "resolve_device",
    "weighted_sum",
]

# 2^17 float32 columns x 100 rows is 52 MB per chunk: large enough for BLAS to run at full speed.
DEFAULT_CHUNK = 1 << 17

_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
# safetensors' lazy slices report their dtype as a string.
_SAFETENSORS_DTYPES = {
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "F32": torch.float32,
    "F64": torch.float64,
}


def resolve_device(device: str | torch.device | None) -> torch.device:
    """`None` means the GPU when one is present, else the CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise AggregatorError(f"unknown device {device!r}") from exc


def _row_meta(row: Any, index: int) -> tuple[int, torch.dtype]:
    """Length and dtype of one row source, refusing anything that is not a 1-D float vector."""
    shape: tuple[int, ...]
    if hasattr(row, "read_into") and hasattr(row, "numel"):  # an `aggregator.rows.RowSource`
        shape, dtype = (row.numel,), row.dtype
    elif isinstance(row, torch.Tensor | np.ndarray):
        shape, dtype = tuple(row.shape), row.dtype
        if isinstance(row, np.ndarray):
            try:
                dtype = torch.from_numpy(np.empty(0, dtype=row.dtype)).dtype
            except TypeError:
                dtype = None
    elif hasattr(row, "get_shape") and hasattr(row, "get_dtype"):
        shape, dtype = tuple(row.get_shape()), _SAFETENSORS_DTYPES.get(row.get_dtype())
    else:
        raise InvalidUpdate(f"row {index}: not a tensor or array ({type(row).__name__})", rows=(index,))
    if len(shape) != 1:
        raise InvalidUpdate(f"row {index}: expected a 1-D vector, got shape {list(shape)}", rows=(index,))
    if dtype not in _FLOAT_DTYPES:
        raise InvalidUpdate(f"row {index}: expected a float dtype, got {dtype}", rows=(index,))
    return shape[0], dtype


def _copy_row(row: Any, start: int, stop: int, out: torch.Tensor) -> None:
    if hasattr(row, "read_into"):
        row.read_into(start, stop, out)
        return
    part = row[start:stop]
    out.copy_(torch.from_numpy(np.ascontiguousarray(part)) if isinstance(part, np.ndarray) else part)


class UpdateMatrix:
    """An `[n, d]` float update matrix read one column chunk at a time, from a tensor or from row sources.

    Row sources are 1-D tensors, numpy arrays, safetensors lazy slices (`get_slice`), or any object with
    `numel`, `dtype` and `read_into(start, stop, out)` (`aggregator.rows`: update files read straight into the
    chunk buffer). `engine` runs the passes (`aggregator.engine`; this process by default).
    """

    def __init__(
        self, updates: Any, *, device: str | torch.device | None = "cpu", engine: Engine | None = None
    ) -> None:
        self.device = resolve_device(device)
        self.engine: Engine = engine or LOCAL
        if isinstance(updates, np.ndarray):
            updates = torch.from_numpy(updates)
        if isinstance(updates, torch.Tensor):
            if updates.dim() != 2:
                raise InvalidUpdate(f"updates must be a 2-D [n, d] tensor, got shape {list(updates.shape)}")
            if updates.dtype not in _FLOAT_DTYPES:
                raise InvalidUpdate(f"updates must be a float tensor, got {updates.dtype}")
            self._tensor: torch.Tensor | None = updates
            self._sources: tuple[Any, ...] = ()
            self.d = int(updates.shape[1])
            n, self.dtype = int(updates.shape[0]), updates.dtype
        elif isinstance(updates, Sequence) and not isinstance(updates, str | bytes):
            metas = [_row_meta(row, i) for i, row in enumerate(updates)]
            lengths = {length for length, _ in metas}
            if len(lengths) > 1:
                common = max(sorted(lengths), key=[m[0] for m in metas].count)
                bad = tuple(i for i, (length, _) in enumerate(metas) if length != common)
                raise InvalidUpdate(f"rows {list(bad)} do not have length {common}", rows=bad)
            self._tensor, self._sources = None, tuple(updates)
            self.d = metas[0][0] if metas else 0
            n = len(metas)
            # The widest dtype among the rows decides the compute precision.
            self.dtype = max((m[1] for m in metas), key=lambda t: t.itemsize, default=torch.float32)
        else:
            raise InvalidUpdate(
                f"updates must be a tensor or a sequence of rows, got {type(updates).__name__}"
            )
        if n > 0 and self.d == 0:
            raise InvalidUpdate("updates have zero columns")
        self.rows: tuple[int, ...] = tuple(range(n))
        self._all_rows = True
        # Half precision is upcast: sums over millions of columns need at least float32.
        self.compute_dtype = torch.float64 if self.dtype == torch.float64 else torch.float32

    @property
    def n(self) -> int:
        return len(self.rows)

    def with_engine(self, engine: Engine) -> UpdateMatrix:
        """The same rows, with passes run by `engine`."""
        view = object.__new__(UpdateMatrix)
        view.__dict__.update(self.__dict__)
        view.engine = engine
        return view

    def __getstate__(self) -> dict[str, Any]:
        # Shipped to a worker, a matrix runs its passes where it lands.
        return {**self.__dict__, "engine": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.engine = LOCAL

    def payload(self) -> tuple[Any, dict[str, Any]]:
        """The rows' data (shared by every subset: an engine ships it once) and the rest of the view."""
        state = {k: v for k, v in self.__getstate__().items() if k not in ("_tensor", "_sources")}
        return (self._tensor if self._tensor is not None else self._sources), state

    @classmethod
    def restore(cls, data: Any, state: dict[str, Any]) -> UpdateMatrix:
        """The view `payload()` described, in this process (local engine)."""
        view = object.__new__(cls)
        tensor = data if isinstance(data, torch.Tensor) else None
        view.__setstate__({**state, "_tensor": tensor, "_sources": () if tensor is not None else data})
        return view

    def map_chunks(
        self, fn: Any, chunk: int, args: Sequence[Any] = (), *, rows: int | None = None
    ) -> Iterator[tuple[int, int, Any]]:
        """`(start, stop, fn(block, start, stop, *args))` for every column chunk, in order, on this matrix's
        engine; `block` is `[rows or n, width]` with the data in its first `n` rows."""
        return self.engine.map_chunks(self, fn, chunk, args, rows=rows)

    def subset(self, rows: Sequence[int]) -> UpdateMatrix:
        """A view on some of the rows (indices into this matrix), without copying any data."""
        view = object.__new__(UpdateMatrix)
        view.__dict__.update(self.__dict__)
        view.rows = tuple(self.rows[i] for i in rows)
        view._all_rows = view.rows == tuple(range(len(self._tensor) if self._tensor is not None else 0))
        return view

    def read_into(self, start: int, stop: int, out: torch.Tensor) -> torch.Tensor:
        """Copy columns `[start, stop)` of every row into `out[:n, :stop - start]` (converting dtype and device
        on the way), one row at a time: no gather, no temporary, the same bytes whatever the source."""
        width = stop - start
        if self._tensor is not None and self._all_rows:
            return out[: self.n, :width].copy_(self._tensor[:, start:stop])  # one op: per-op overhead adds up
        for k, i in enumerate(self.rows):
            if self._tensor is not None:
                out[k, :width].copy_(self._tensor[i, start:stop])
            else:
                _copy_row(self._sources[i], start, stop, out[k, :width])
        return out[: self.n, :width]

    def in_memory_float(self, check_finite: bool = False) -> bool:
        """Whether passes can read the caller's tensor directly (all rows, compute dtype, CPU, no checks, this
        process)."""
        return (
            self._tensor is not None
            and self.engine is LOCAL
            and self._all_rows
            and not check_finite
            and self._tensor.dtype == self.compute_dtype
            and self.device.type == "cpu"
            and self._tensor.device.type == "cpu"
        )

    def tensor_view(self) -> torch.Tensor:
        if self._tensor is None:
            raise AggregatorError("not an in-memory update matrix")
        return self._tensor

    def buffer(self, rows: int, chunk: int) -> torch.Tensor:
        """A reusable work buffer: filling fresh memory for every chunk would cost a page fault per 4 KiB."""
        return torch.zeros(rows, min(chunk, max(self.d, 1)), dtype=self.compute_dtype, device=self.device)

    def read(self, start: int, stop: int) -> torch.Tensor:
        """Columns `[start, stop)` of every row as a new `[n, stop - start]` tensor (compute dtype, device)."""
        return self.read_into(start, stop, self.buffer(self.n, stop - start))

    def raise_if_not_finite(self, block: torch.Tensor, start: int) -> None:
        """Refuse NaN/Inf in a chunk, naming the rows (as indices of the caller's original matrix)."""
        self.raise_for_rows(finite_rows(block[: self.n]), start)

    def raise_for_rows(self, bad_rows: Sequence[int], start: int) -> None:
        """Refuse the rows (indices into this matrix) that a pass found non-finite in the chunk at `start`."""
        if bad_rows:
            bad = tuple(self.rows[i] for i in bad_rows)
            raise InvalidUpdate(f"rows {list(bad)} contain NaN or Inf (columns from {start})", rows=bad)


def finite_rows(block: torch.Tensor) -> list[int]:
    """Indices of the rows of `block` holding NaN or Inf (empty when all are finite)."""
    finite = torch.isfinite(block).all(dim=1)
    return [] if bool(finite.all()) else torch.nonzero(~finite).flatten().tolist()


@dataclass(frozen=True)
class GramStats:
    """The Gram matrix of the rows after centering, plus the origin as an extra last row.

    Centering by the column mean keeps float32 products from cancelling when updates share a large common
    component; the origin row lets raw inner products and distances to any affine combination of the rows (or
    of the origin) be recovered exactly, so iterative rules never touch the data again.
    """

    centered: torch.Tensor  # [n + 1, n + 1] float64; index n is the origin

    @property
    def n(self) -> int:
        return int(self.centered.shape[0]) - 1

    def sq_distances(self) -> torch.Tensor:
        c = self.centered[:-1, :-1]
        diag = torch.diagonal(c)
        dist = (diag[:, None] + diag[None, :] - 2.0 * c).clamp_min(0.0)
        dist.fill_diagonal_(0.0)
        return dist

    def raw_gram(self) -> torch.Tensor:
        c, o = self.centered, self.n
        return c[:-1, :-1] - c[:-1, o][:, None] - c[o, :-1][None, :] + c[o, o]

    def sq_distances_to(self, coeffs: torch.Tensor) -> torch.Tensor:
        """Squared distance of every row to `sum_i coeffs[i] * row_i` (coefficients over rows; the rest of the
        unit mass sits on the origin)."""
        a = torch.cat([coeffs.to(torch.float64), (1.0 - coeffs.sum()).reshape(1).to(torch.float64)])
        ca = self.centered @ a
        dist = torch.diagonal(self.centered)[:-1] - 2.0 * ca[:-1] + a @ ca
        return dist.clamp_min(0.0)

    def subset(self, rows: Sequence[int]) -> GramStats:
        keep = torch.tensor([*rows, self.n], dtype=torch.long)
        return GramStats(self.centered[keep][:, keep])


def _gram_part(work: torch.Tensor, start: int, stop: int, n: int, to_mean: torch.Tensor) -> Any:
    """One chunk's centered partial Gram (float64), or `None` if it is not finite."""
    block = work[:n]
    mean = to_mean @ block
    block -= mean
    torch.neg(mean, out=work[n])
    part = (work @ work.T)[: n + 1, : n + 1]
    return part.to(torch.float64).cpu() if bool(torch.isfinite(part).all()) else None


def gram_stats(matrix: UpdateMatrix, chunk: int = DEFAULT_CHUNK) -> GramStats:
    """One pass over the columns, accumulating partial Gram matrices (float32 products, float64 sums, added in
    chunk order)."""
    n = matrix.n
    to_mean = torch.full((n,), 1.0 / n, dtype=matrix.compute_dtype, device=matrix.device)
    total = torch.zeros(n + 1, n + 1, dtype=torch.float64)
    if matrix.in_memory_float():
        # Mean and centering straight from the caller's tensor: one read, one write, no copy.
        parts: Iterator[tuple[int, int, Any]] = _direct_gram_parts(matrix, chunk, to_mean)
    else:
        # Rows padded to a multiple of 8 (zeros): BLAS runs ~1.5x faster on aligned row counts than on n + 1.
        parts = matrix.map_chunks(_gram_part, chunk, (n, to_mean), rows=-(-(n + 1) // 8) * 8)
    for start, stop, part in parts:
        if part is None:
            # Centering spread the bad values over every row: read the chunk again to name the rows.
            matrix.raise_if_not_finite(matrix.read(start, stop), start)
            raise InvalidUpdate(f"updates too large: squared norms overflow {matrix.compute_dtype}")
        total += part
    return GramStats(total)


def _direct_gram_parts(
    matrix: UpdateMatrix, chunk: int, to_mean: torch.Tensor
) -> Iterator[tuple[int, int, Any]]:
    n = matrix.n
    buf = matrix.buffer(-(-(n + 1) // 8) * 8, chunk)
    for start in range(0, matrix.d, chunk):
        stop = min(start + chunk, matrix.d)
        view = matrix.tensor_view()[:, start:stop]
        mean = to_mean @ view
        torch.sub(view, mean, out=buf[:n, : stop - start])
        torch.neg(mean, out=buf[n, : stop - start])
        work = buf[:, : stop - start]
        part = (work @ work.T)[: n + 1, : n + 1]
        yield start, stop, part.to(torch.float64) if bool(torch.isfinite(part).all()) else None


def pairwise_sq_distances(updates: Any, chunk: int = DEFAULT_CHUNK, *, device: Any = "cpu") -> torch.Tensor:
    """Squared Euclidean distances `[n, n]` (float64) between rows, from chunked partial Gram matrices."""
    matrix = updates if isinstance(updates, UpdateMatrix) else UpdateMatrix(updates, device=device)
    return gram_stats(matrix, check_chunk(chunk)).sq_distances()


def _weighted_part(block: torch.Tensor, start: int, stop: int, c: torch.Tensor, check_finite: bool) -> Any:
    if check_finite:
        bad = finite_rows(block)
        if bad:
            return bad
    return (c @ block).cpu()


def weighted_sum(
    matrix: UpdateMatrix, coeffs: torch.Tensor, chunk: int = DEFAULT_CHUNK, *, check_finite: bool = False
) -> torch.Tensor:
    """`sum_i coeffs[i] * row_i` as a `[d]` tensor in the compute dtype, one chunk at a time.

    Rows with a zero coefficient are never read from row sources (their files stay untouched); an in-memory
    matrix is multiplied in place, with no copy at all.
    """
    out = torch.empty(matrix.d, dtype=matrix.compute_dtype)
    if matrix.in_memory_float(check_finite):
        src = matrix.tensor_view()
        c = coeffs.to(device=matrix.device, dtype=matrix.compute_dtype)
        for start in range(0, matrix.d, chunk):
            out[start : start + chunk] = (c @ src[:, start : start + chunk]).cpu()
        return out
    nonzero = torch.nonzero(coeffs).flatten().tolist()
    view = matrix if len(nonzero) == matrix.n else matrix.subset(nonzero)
    c = coeffs[nonzero].to(device=matrix.device, dtype=matrix.compute_dtype)
    for start, stop, part in view.map_chunks(_weighted_part, chunk, (c, check_finite)):
        if isinstance(part, list):
            view.raise_for_rows(part, start)
        out[start:stop] = part
    return out


def _dots_part(block: torch.Tensor, start: int, stop: int, vector: torch.Tensor) -> torch.Tensor:
    return block.to(torch.float64) @ vector[start:stop].to(device=block.device, dtype=torch.float64)


def column_dots(matrix: UpdateMatrix, vector: torch.Tensor, chunk: int = DEFAULT_CHUNK) -> torch.Tensor:
    """Each row's inner product with `vector` `[d]`, in float64 (`[n]`), one pass."""
    if vector.dim() != 1 or vector.numel() != matrix.d:
        raise AggregatorError(f"a vector of {matrix.d} values is needed, got shape {list(vector.shape)}")
    total = torch.zeros(matrix.n, dtype=torch.float64)
    for _start, _stop, part in matrix.map_chunks(_dots_part, chunk, (vector,)):
        total += part.cpu()
    return total


def check_chunk(chunk: Any) -> int:
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise AggregatorError(f"chunk must be a positive integer, got {chunk!r}")
    return chunk
