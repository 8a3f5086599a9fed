"""Labelled datasets as files and bytes: a trainer's private data (.npz or .csv) and the owner's published
validation set (safetensors with tensors `X` float32 [m, features] and `y` int64 [m])."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load, save

from aggregator.errors import AggregatorError

__all__ = ["DatasetError", "decode_dataset", "encode_dataset", "load_dataset_file", "save_dataset_file"]


class DatasetError(AggregatorError):
    """A dataset file or payload is unreadable or malformed."""


def _checked(
    X: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor, where: str
) -> tuple[torch.Tensor, torch.Tensor]:
    X = torch.as_tensor(np.asarray(X))
    y = torch.as_tensor(np.asarray(y))
    if X.ndim != 2:
        raise DatasetError(f"{where}: X must be 2-D [samples, features], got shape {tuple(X.shape)}")
    if y.ndim != 1 or y.shape[0] != X.shape[0]:
        raise DatasetError(
            f"{where}: y must be 1-D with one label per row of X, got {tuple(y.shape)} for X {tuple(X.shape)}"
        )
    if X.shape[0] == 0:
        raise DatasetError(f"{where}: the dataset is empty")
    if not (X.dtype.is_floating_point or X.dtype in (torch.int32, torch.int64, torch.uint8)):
        raise DatasetError(f"{where}: X must be numeric, got {X.dtype}")
    X = X.to(torch.float32)
    if not torch.isfinite(X).all():
        raise DatasetError(f"{where}: X contains NaN or Inf")
    if y.dtype.is_floating_point and not torch.equal(y, y.round()):
        raise DatasetError(f"{where}: y must hold integer class labels")
    y = y.to(torch.int64)
    if (y < 0).any():
        raise DatasetError(f"{where}: labels must be non-negative")
    return X.contiguous(), y.contiguous()


def load_dataset_file(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Read `.npz` (arrays `X`, `y`; no pickles) or `.csv` (features..., label in the last column)."""
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"no dataset at {path}")
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                if "X" not in archive or "y" not in archive:
                    raise DatasetError(
                        f"{path}: an .npz dataset needs arrays 'X' and 'y', found {sorted(archive)}"
                    )
                return _checked(archive["X"], archive["y"], str(path))
        if path.suffix == ".csv":
            table = np.loadtxt(path, delimiter=",", ndmin=2, dtype=np.float64)
            if table.shape[1] < 2:
                raise DatasetError(f"{path}: a CSV dataset needs feature columns and a label column")
            return _checked(table[:, :-1], table[:, -1], str(path))
    except (ValueError, OSError) as exc:
        raise DatasetError(f"{path}: unreadable dataset: {exc}") from None
    raise DatasetError(f"{path}: unsupported dataset format {path.suffix!r} (use .npz or .csv)")


def save_dataset_file(path: Path, X: torch.Tensor, y: torch.Tensor) -> None:
    X, y = _checked(X, y, str(path))
    np.savez(Path(path), X=X.numpy(), y=y.numpy())


def encode_dataset(X: torch.Tensor, y: torch.Tensor) -> bytes:
    X, y = _checked(X, y, "dataset")
    return save({"X": X, "y": y}, metadata={"kind": "dataset"})


def decode_dataset(data: bytes) -> tuple[torch.Tensor, torch.Tensor]:
    try:
        tensors = load(data)
    except (SafetensorError, ValueError) as exc:
        raise DatasetError(f"dataset payload is not safetensors: {exc}") from None
    if set(tensors) != {"X", "y"}:
        raise DatasetError(f"dataset payload must hold exactly 'X' and 'y', found {sorted(tensors)}")
    if tensors["X"].dtype != torch.float32 or tensors["y"].dtype != torch.int64:
        raise DatasetError("dataset payload must hold X as float32 and y as int64")
    return _checked(tensors["X"], tensors["y"], "dataset payload")
