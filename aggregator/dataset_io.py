"""Data sets as files and bytes: the formats people have, read into a `Table`, and `Examples` as stored content.

Files (`load_table`):

| suffix | layout |
| --- | --- |
| `.csv`, `.parquet` | a header row; the label column (`label` unless told), the text column when told (text data), every other column a numeric feature |
| `.npz`, `.safetensors` | arrays `X` (`[m, ...]` numbers: rows, images) and `y` (`[m]` labels) |
| `.jsonl` | one JSON object per line with a text field (`text`) and a label field (`label`) |

Nothing is unpickled: `.npz` is read with `allow_pickle=False`, safetensors holds raw tensors only.

Stored examples (`encode_examples` / `decode_examples`, the owner's validation set): safetensors with `y` (int64
class indices or float32 values) and either `X` (float32 features) or the texts as UTF-8 bytes (`text_utf8`, uint8)
with their boundaries (`text_offsets`, int64 `[m + 1]`).
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.numpy import load_file as np_load_file
from safetensors.torch import load, save

from aggregator.errors import AggregatorError
from aggregator.examples import Examples

__all__ = [
    "FORMATS",
    "DatasetError",
    "Table",
    "decode_dataset",
    "decode_examples",
    "encode_dataset",
    "encode_examples",
    "load_dataset_file",
    "load_table",
    "save_dataset_file",
]

FORMATS = (".csv", ".jsonl", ".npz", ".parquet", ".safetensors")


class DatasetError(AggregatorError):
    """A dataset file or payload is unreadable or malformed."""


@dataclass(frozen=True)
class Table:
    """A data file as read, before the project's schema checks it: labels as found (numbers or strings), and
    either numeric features (`[m, ...]`, named columns for tabular files) or texts."""

    labels: np.ndarray
    features: np.ndarray | None = None
    feature_names: tuple[str, ...] | None = None
    texts: tuple[str, ...] | None = None
    source: str = "data"
    label_field: str = "label"
    text_field: str | None = None

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def _numeric(values: np.ndarray, where: str) -> np.ndarray:
    if values.dtype == object or values.dtype.kind not in "biuf":
        raise DatasetError(f"{where}: features must be numbers, got {values.dtype}")
    out = values.astype(np.float64)
    if not np.isfinite(out).all():
        raise DatasetError(f"{where}: features contain NaN or Inf (or empty cells)")
    return out


def _checked_labels(labels: np.ndarray, where: str) -> np.ndarray:
    if labels.ndim != 1:
        raise DatasetError(f"{where}: labels must be 1-D, got shape {labels.shape}")
    if labels.shape[0] == 0:
        raise DatasetError(f"{where}: the dataset is empty")
    if labels.dtype.kind == "f" and not np.isfinite(labels).all():
        raise DatasetError(f"{where}: labels contain NaN or Inf (or empty cells)")
    if labels.dtype == object and any(
        v is None or (isinstance(v, float) and not np.isfinite(v)) for v in labels
    ):
        raise DatasetError(f"{where}: some labels are missing")
    return labels


def _arrays(X: np.ndarray, y: np.ndarray, path: Path) -> Table:
    where = str(path)
    if X.ndim < 2:
        raise DatasetError(f"{where}: X must be [samples, features...], got shape {tuple(X.shape)}")
    if y.ndim != 1 or y.shape[0] != X.shape[0]:
        raise DatasetError(
            f"{where}: y must be 1-D with one label per row of X, got {tuple(y.shape)} for X {tuple(X.shape)}"
        )
    # Arrays name no label column: a trainer's tabular file then uses the default one, `label`.
    return Table(_checked_labels(y, where), features=_numeric(X, where), source=where)


def _frame(frame, path: Path, label_column: str, text_column: str | None) -> Table:
    where = str(path)
    columns = [str(c) for c in frame.columns]
    if label_column not in columns:
        raise DatasetError(
            f"{where}: no label column {label_column!r} (columns: {', '.join(columns[:12])}"
            f"{', ...' if len(columns) > 12 else ''}); name it with --label-column"
        )
    labels = _checked_labels(frame[label_column].to_numpy(), where)
    if text_column is not None:
        if text_column not in columns:
            raise DatasetError(
                f"{where}: no text column {text_column!r} (columns: {', '.join(columns[:12])})"
            )
        texts = frame[text_column].to_numpy()
        if any(not isinstance(t, str) for t in texts):
            raise DatasetError(f"{where}: column {text_column!r} must hold text in every row")
        return Table(
            labels, texts=tuple(texts), source=where, label_field=label_column, text_field=text_column
        )
    names = [c for c in columns if c != label_column]
    if not names:
        raise DatasetError(f"{where}: no feature columns besides {label_column!r}")
    bad = [c for c in names if frame[c].dtype.kind not in "biuf"]
    if bad:
        raise DatasetError(
            f"{where}: column(s) {', '.join(bad[:5])} are not numeric (text data? give --text-column)"
        )
    features = _numeric(frame[names].to_numpy(), where)
    return Table(
        labels, features=features, feature_names=tuple(names), source=where, label_field=label_column
    )


def _jsonl(path: Path, label_column: str, text_column: str) -> Table:
    texts, labels = [], []
    with path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DatasetError(f"{path}:{number}: not JSON: {exc.msg}") from None
            if (
                not isinstance(row, dict)
                or not isinstance(row.get(text_column), str)
                or label_column not in row
            ):
                raise DatasetError(
                    f"{path}:{number}: needs a text field {text_column!r} and a field {label_column!r}"
                )
            label = row[label_column]
            if not isinstance(label, str | int | float) or isinstance(label, bool):
                raise DatasetError(f"{path}:{number}: label {label!r} is not a number or a string")
            texts.append(row[text_column])
            labels.append(label)
    values = np.array(labels, dtype=object if any(isinstance(v, str) for v in labels) else None)
    return Table(
        _checked_labels(values, str(path)),
        texts=tuple(texts),
        source=str(path),
        label_field=label_column,
        text_field=text_column,
    )


def load_table(path: Path, *, label_column: str | None = None, text_column: str | None = None) -> Table:
    """Read a data file (see the module docstring); every problem is a one-line `DatasetError`."""
    path = Path(path)
    label_column = label_column or "label"
    if not path.is_file():
        raise DatasetError(f"no dataset at {path}")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                if "X" not in archive or "y" not in archive:
                    raise DatasetError(
                        f"{path}: an .npz dataset needs arrays 'X' and 'y', found {sorted(archive)}"
                    )
                return _arrays(archive["X"], archive["y"], path)
        if suffix == ".safetensors":
            arrays = np_load_file(str(path))
            if "X" not in arrays or "y" not in arrays:
                raise DatasetError(
                    f"{path}: a safetensors dataset needs tensors 'X' and 'y', found {sorted(arrays)}"
                )
            return _arrays(arrays["X"], arrays["y"], path)
        if suffix in (".csv", ".parquet"):
            import pandas as pd

            frame = pd.read_csv(path) if suffix == ".csv" else pd.read_parquet(path)
            return _frame(frame, path, label_column, text_column)
        if suffix == ".jsonl":
            return _jsonl(path, label_column, text_column or "text")
    except DatasetError:
        raise
    except (ValueError, OSError, SafetensorError, UnicodeDecodeError, KeyError) as exc:
        raise DatasetError(
            f"{path}: unreadable dataset: {str(exc).splitlines()[0] if str(exc) else exc!r}"
        ) from None
    except Exception as exc:  # pandas/pyarrow parser errors have no common base beyond this
        if type(exc).__module__.split(".")[0] in ("pandas", "pyarrow"):
            raise DatasetError(f"{path}: unreadable dataset: {str(exc).splitlines()[0]}") from None
        raise
    raise DatasetError(f"{path}: unsupported dataset format {suffix!r} (use {', '.join(FORMATS)})")


# -- examples as stored content ---------------------------------------------------------------------------------


def encode_examples(examples: Examples) -> bytes:
    """safetensors bytes of `examples` (see the module docstring)."""
    tensors: dict[str, torch.Tensor] = {"y": examples.targets.contiguous()}
    if examples.texts is not None:
        encoded = [t.encode("utf-8") for t in examples.texts]
        offsets = np.cumsum([0, *(len(b) for b in encoded)], dtype=np.int64)
        blob = np.frombuffer(b"".join(encoded), dtype=np.uint8) if offsets[-1] else np.zeros(0, np.uint8)
        tensors["text_utf8"] = torch.from_numpy(blob.copy())
        tensors["text_offsets"] = torch.from_numpy(offsets)
    else:
        assert examples.features is not None
        tensors["X"] = examples.features.to(torch.float32).contiguous()
    return save(tensors, metadata={"kind": "examples"})


def decode_examples(data: bytes) -> Examples:
    """Examples from `encode_examples` bytes; anything else is a `DatasetError`."""
    try:
        tensors = load(data)
    except (SafetensorError, ValueError) as exc:
        raise DatasetError(f"dataset payload is not safetensors: {exc}") from None
    y = tensors.get("y")
    if y is None or y.dim() != 1 or y.dtype not in (torch.int64, torch.float32):
        raise DatasetError(
            "dataset payload needs 'y': int64 class indices or float32 values, one per example"
        )
    try:
        if set(tensors) == {"X", "y"}:
            X = tensors["X"]
            if X.dtype != torch.float32 or X.dim() < 2 or not bool(torch.isfinite(X).all()):
                raise DatasetError("dataset payload: 'X' must be finite float32 [m, ...]")
            return Examples(y, features=X)
        if set(tensors) == {"text_utf8", "text_offsets", "y"}:
            blob, offsets = tensors["text_utf8"], tensors["text_offsets"]
            if blob.dtype != torch.uint8 or offsets.dtype != torch.int64 or offsets.dim() != 1:
                raise DatasetError("dataset payload: texts must be uint8 bytes with int64 offsets")
            bounds = offsets.tolist()
            if (
                bounds[0] != 0
                or bounds[-1] != blob.numel()
                or any(a > b for a, b in itertools.pairwise(bounds))
            ):
                raise DatasetError("dataset payload: text offsets do not cut the text bytes")
            raw = blob.numpy().tobytes()
            texts = tuple(raw[a:b].decode("utf-8") for a, b in itertools.pairwise(bounds))
            return Examples(y, texts=texts)
    except UnicodeDecodeError:
        raise DatasetError("dataset payload: texts are not UTF-8") from None
    except AggregatorError as exc:
        if isinstance(exc, DatasetError):
            raise
        raise DatasetError(f"dataset payload: {exc}") from None
    raise DatasetError(f"dataset payload must hold X and y, or texts and y; found {sorted(tensors)}")


# -- the digits tensors' older helpers (X [m, features] float32, y [m] int64 class labels) -----------------------


def _xy(
    X: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor, where: str
) -> tuple[torch.Tensor, torch.Tensor]:
    X_t, y_t = torch.as_tensor(np.asarray(X)), torch.as_tensor(np.asarray(y))
    if X_t.ndim != 2 or y_t.ndim != 1 or y_t.shape[0] != X_t.shape[0] or X_t.shape[0] == 0:
        raise DatasetError(
            f"{where}: need X [m, features] and y [m], got {tuple(X_t.shape)} and {tuple(y_t.shape)}"
        )
    X_t = X_t.to(torch.float32)
    if not bool(torch.isfinite(X_t).all()):
        raise DatasetError(f"{where}: X contains NaN or Inf")
    if y_t.dtype.is_floating_point and not torch.equal(y_t, y_t.round()):
        raise DatasetError(f"{where}: y must hold integer class labels")
    y_t = y_t.to(torch.int64)
    if (y_t < 0).any():
        raise DatasetError(f"{where}: labels must be non-negative")
    return X_t.contiguous(), y_t.contiguous()


def load_dataset_file(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """`(X, y)` from an `.npz` or `.safetensors` file of 2-D features and integer class labels."""
    table = load_table(path)
    if table.features is None or table.features.ndim != 2:
        raise DatasetError(f"{path}: expected 2-D features")
    return _xy(table.features, table.labels, str(path))


def save_dataset_file(path: Path, X: torch.Tensor, y: torch.Tensor) -> None:
    X, y = _xy(X, y, str(path))
    np.savez(Path(path), X=X.numpy(), y=y.numpy())


def encode_dataset(X: torch.Tensor, y: torch.Tensor) -> bytes:
    X, y = _xy(X, y, "dataset")
    return encode_examples(Examples(y, features=X))


def decode_dataset(data: bytes) -> tuple[torch.Tensor, torch.Tensor]:
    examples = decode_examples(data)
    if examples.features is None or examples.targets.dtype != torch.int64:
        raise DatasetError("dataset payload must hold X as float32 and y as int64")
    return _xy(examples.features, examples.targets, "dataset payload")
