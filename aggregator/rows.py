"""Updates as row sources: one flat, float delta per trainer, read a column range at a time.

A row source has `numel`, `dtype` and `read_into(start, stop, out)`; `UpdateMatrix` reads them straight into its
chunk buffer, so a round never holds more than one chunk of any update.

- `SafetensorsRow`: an update file on disk, its tensors concatenated in the model's order. `safe_open` checks
  the file (a header that parses, offsets inside the file and matching each tensor's shape and dtype) and
  names its tensors; the values are then read with positioned reads (`os.preadv`) into the caller's buffer.
  Not through a memory map: every page of a mapping that a pass touches counts towards the process's resident
  memory until the mapping closes, so one pass over 8 GB of mapped updates shows 8 GB of RSS
  (`bench/round_memory.py --reader mmap` measures it); positioned reads leave the bytes in the page cache only.
- `DeltaRow`: a local model sent instead of a delta (`update_kind="model"`), minus the global model, on the fly.

`row_summary` is the first pass of a round over each row: finite or not, its float64 norm and the sha256 of
its float32 bytes (the round report's `update_sha256`).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
from safetensors import SafetensorError, safe_open

from aggregator.errors import InvalidUpdate

__all__ = [
    "DeltaRow",
    "RowSource",
    "RowSummary",
    "SafetensorsRow",
    "read_layout",
    "row_summary",
]

# safetensors' dtype names (the header's) -> torch dtypes, for the float types an update may use.
_ST_DTYPES = {"F16": torch.float16, "BF16": torch.bfloat16, "F32": torch.float32, "F64": torch.float64}
_TORCH_NAMES = {
    "F16": "float16",
    "BF16": "bfloat16",
    "F32": "float32",
    "F64": "float64",
    "I8": "int8",
    "I16": "int16",
    "I32": "int32",
    "I64": "int64",
    "U8": "uint8",
    "BOOL": "bool",
}


@runtime_checkable
class RowSource(Protocol):
    """One flat update read a column range at a time."""

    @property
    def numel(self) -> int: ...

    @property
    def dtype(self) -> torch.dtype: ...

    def read_into(self, start: int, stop: int, out: torch.Tensor) -> None:
        """Write values `[start, stop)` into `out` (1-D, `stop - start` long, any float dtype)."""
        ...


def read_layout(path: Path | str) -> tuple[dict[str, tuple[tuple[int, ...], str]], dict[str, str]]:
    """`{name: (shape, torch dtype name)}` and the metadata of a safetensors file, checked by `safe_open`;
    `InvalidUpdate` when it is not a safetensors file."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            layout = {}
            for name in handle.keys():  # noqa: SIM118 - a safe_open handle is not a mapping
                part = handle.get_slice(name)
                dtype = part.get_dtype()
                layout[name] = (tuple(part.get_shape()), _TORCH_NAMES.get(dtype, dtype.lower()))
            return layout, dict(handle.metadata() or {})
    except (SafetensorError, OSError, ValueError) as exc:
        raise InvalidUpdate(f"not a safetensors file: {exc}") from None


@dataclass(frozen=True)
class _Segment:
    name: str
    file_offset: int  # where the tensor's bytes start in the file
    numel: int
    dtype: torch.dtype


class SafetensorsRow:
    """The tensors `names` of one safetensors file as one flat row (see the module docstring)."""

    def __init__(self, path: Path | str, segments: Sequence[_Segment]) -> None:
        self.path = Path(path)
        self._segments = tuple(segments)
        self._starts = [0]
        for seg in self._segments:
            self._starts.append(self._starts[-1] + seg.numel)
        self.numel = self._starts[-1]
        # Read as float32 whatever the file holds, as `flatten_state` flattens an update held in memory: both
        # paths then give the same bits. float32 tensors are read without any conversion.
        self.dtype = torch.float32
        self._fd: int | None = None

    @classmethod
    def open(cls, path: Path | str, names: Sequence[str]) -> SafetensorsRow:
        """The row of tensors `names` (in that order) of the file at `path`, every one a float tensor."""
        layout, _ = read_layout(path)
        missing = [n for n in names if n not in layout]
        if missing:
            raise InvalidUpdate(f"missing tensor(s) {', '.join(missing)}")
        # safe_open has validated the header; its offsets are the only part it does not hand out.
        with open(path, "rb") as f:
            size = int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(size))
        segments = []
        for name in names:
            entry = header[name]
            dtype = _ST_DTYPES.get(entry["dtype"])
            if dtype is None:
                raise InvalidUpdate(f"tensor {name!r} has dtype {layout[name][1]}, not a float type")
            segments.append(
                _Segment(name, 8 + size + entry["data_offsets"][0], math.prod(entry["shape"]), dtype)
            )
        return cls(path, segments)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_fd": None}  # a descriptor means nothing in another process

    def __repr__(self) -> str:
        return f"SafetensorsRow({str(self.path)!r}, {self.numel} values)"

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __del__(self) -> None:
        self.close()

    def _descriptor(self) -> int:
        if self._fd is None:
            try:
                self._fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError as exc:
                raise InvalidUpdate(f"cannot read update file {self.path}: {exc.strerror or exc}") from None
        return self._fd

    def read_into(self, start: int, stop: int, out: torch.Tensor) -> None:
        fd = self._descriptor()
        position = 0
        for k, seg in enumerate(self._segments):
            lo, hi = max(start, self._starts[k]), min(stop, self._starts[k + 1])
            if lo >= hi:
                continue
            target = out[position : position + hi - lo]
            offset = seg.file_offset + (lo - self._starts[k]) * seg.dtype.itemsize
            if seg.dtype == out.dtype and target.is_contiguous() and target.device.type == "cpu":
                self._pread(fd, target, offset)
            else:
                scratch = torch.empty(hi - lo, dtype=seg.dtype)
                self._pread(fd, scratch, offset)
                target.copy_(scratch)
            position += hi - lo

    def _pread(self, fd: int, target: torch.Tensor, offset: int) -> None:
        view = target.view(torch.uint8).numpy().data
        done = 0
        while done < len(view):
            got = os.preadv(fd, [view[done:]], offset + done)
            if got <= 0:
                raise InvalidUpdate(f"update file {self.path} is shorter than its header says")
            done += got


class DeltaRow:
    """`source - base`: the delta of a local model, computed a range at a time (float32, like the in-memory
    `flat - global_flat`)."""

    def __init__(self, source: Any, base: torch.Tensor) -> None:
        if source.numel != base.numel():
            raise InvalidUpdate(f"expected {base.numel()} values, got {source.numel}")
        self.source, self.base = source, base
        self.numel, self.dtype = source.numel, torch.float32

    def read_into(self, start: int, stop: int, out: torch.Tensor) -> None:
        self.source.read_into(start, stop, out)
        out.sub_(self.base[start:stop])


@dataclass(frozen=True)
class RowSummary:
    """The first look at a row: why it is unusable (or `None`), its float64 norm, the sha256 of its float32
    bytes in order."""

    problem: str | None
    norm: float
    sha256: str | None


def row_summary(row: Any, chunk: int, max_norm: float = math.inf) -> RowSummary:
    """Check one row (a 1-D tensor or a `RowSource`) a chunk at a time; see `RowSummary`."""
    numel = row.numel if isinstance(row, RowSource) else int(row.numel())
    if numel == 0:
        return RowSummary("empty update", 0.0, None)
    digest, total = hashlib.sha256(), 0.0
    buf = torch.empty(min(chunk, numel), dtype=torch.float32)
    for start in range(0, numel, chunk):
        stop = min(start + chunk, numel)
        part = buf[: stop - start]
        if isinstance(row, RowSource):
            row.read_into(start, stop, part)
        else:
            part.copy_(row[start:stop])
        wide = part.to(torch.float64)
        if not bool(torch.isfinite(wide).all()):
            return RowSummary("has non-finite values (NaN or Inf)", 0.0, None)
        total += float(wide.square().sum())
        digest.update(part.numpy().data)
    norm = math.sqrt(total)
    if not norm <= max_norm:
        return RowSummary(f"norm {norm:.3g} above the {max_norm:.3g} limit", norm, None)
    return RowSummary(None, norm, digest.hexdigest())
