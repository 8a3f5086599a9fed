"""The project's data schema: what every data set of a project must look like, and how it is prepared.

The owner's validation set defines it at `project create` (`infer_schema`), the manifest records it
(`DataSchema.to_dict`), and every trainer's file is checked against it before any training (`DataSchema.examples`):

- kind: feature tensors (`feature_shape`, and for tabular files the feature column names in model order) or text
  (the text field);
- labels: for classification the label set (class `i` is `labels[i]`; numbers or strings as found in the files);
  for regression real values, within `label_range` when the owner declared one;
- preprocessing, applied in order to everyone's features (`DataSchema.prepare`): `scale` multiplies by a factor
  (the digits' pixel values 0..16 times 1/16), `standardize` subtracts and divides by per-feature statistics
  computed once from the owner's validation set and recorded in the manifest.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from aggregator.dataset_io import DatasetError, Table
from aggregator.examples import Examples
from aggregator.tasks import Task, get_task

__all__ = ["PREPROCESSING", "DataSchema", "infer_schema", "parse_preprocessing"]

PREPROCESSING = ("scale", "standardize")
Label = int | str


def parse_preprocessing(items: Sequence[str]) -> list[dict[str, Any]]:
    """`["scale=0.0625", "standardize"]` -> steps; the statistics of `standardize` come from the validation set."""
    steps: list[dict[str, Any]] = []
    for item in items:
        op, _, raw = item.partition("=")
        if op == "scale":
            try:
                factor = float(raw)
            except ValueError:
                raise DatasetError(f"--preprocess scale=FACTOR needs a number, got {raw!r}") from None
            if not (math.isfinite(factor) and factor != 0):
                raise DatasetError(f"--preprocess scale: the factor must be finite and non-zero, got {raw!r}")
            steps.append({"op": "scale", "factor": factor})
        elif op == "standardize" and not raw:
            steps.append({"op": "standardize"})
        else:
            raise DatasetError(f"--preprocess {item!r}: expected scale=FACTOR or standardize")
    return steps


def _label_value(value: Any) -> Label:
    """A label as the schema keeps it: integral numbers as int, anything else as its text."""
    if isinstance(value, bool | np.bool_):
        raise DatasetError(f"label {value!r} is a boolean; use 0/1 or names")
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        if not float(value).is_integer():
            raise DatasetError(
                f"class label {value!r} is not an integer (a regression task takes real values)"
            )
        return int(value)
    return str(value)


@dataclass(frozen=True)
class DataSchema:
    task: str
    kind: str  # "tensor" or "text"
    label_field: str = "label"
    labels: tuple[Label, ...] | None = None
    label_range: tuple[float, float] | None = None
    feature_shape: tuple[int, ...] | None = None
    feature_names: tuple[str, ...] | None = None
    text_field: str | None = None
    preprocessing: tuple[Mapping[str, Any], ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        task = get_task(self.task)
        if self.kind not in ("tensor", "text"):
            raise DatasetError(f"data kind must be 'tensor' or 'text', got {self.kind!r}")
        if task.input_kind is not None and task.input_kind != self.kind:
            raise DatasetError(
                f"task {task.name} needs {task.input_kind} data, but this data holds "
                f"{'texts' if self.kind == 'text' else 'feature tensors'}"
                + (" (give --text-column)" if task.input_kind == "text" else "")
            )
        if task.classifies and (not self.labels or len(set(self.labels)) != len(self.labels)):
            raise DatasetError(f"task {task.name} needs a set of distinct class labels, got {self.labels!r}")
        if task.classifies and len(self.labels or ()) < 2:
            raise DatasetError(
                f"a classification needs at least 2 classes, the data has {len(self.labels or ())}"
            )
        if self.kind == "tensor" and not self.feature_shape:
            raise DatasetError("tensor data needs a feature shape")
        if self.kind == "text" and self.preprocessing:
            raise DatasetError("--preprocess applies to feature tensors, not text")
        if self.label_range is not None and not (self.label_range[0] < self.label_range[1]):
            raise DatasetError(f"label range must be LOW < HIGH, got {self.label_range}")

    @property
    def num_outputs(self) -> int:
        return len(self.labels) if self.labels is not None else 1

    @property
    def task_spec(self) -> Task:
        return get_task(self.task)

    # -- checking a file --------------------------------------------------------------------------------------

    def examples(self, table: Table) -> Examples:
        """`table` checked against the schema and turned into examples (labels as class indices); raw features,
        before preprocessing. Every mismatch is one `DatasetError` line naming the file."""
        where = table.source
        if self.kind == "text":
            if table.texts is None:
                raise DatasetError(
                    f"{where}: this project's data is text ({self.text_field!r}); give --text-column"
                )
            return Examples(self._targets(table.labels, where), texts=table.texts)
        if table.features is None:
            raise DatasetError(f"{where}: this project's data is feature tensors, not text")
        features = table.features
        if self.feature_names is not None and table.feature_names is not None:
            missing = [n for n in self.feature_names if n not in table.feature_names]
            extra = [n for n in table.feature_names if n not in self.feature_names]
            if missing or extra:
                raise DatasetError(
                    f"{where}: feature columns differ from the project's: missing {missing[:5]}, unexpected {extra[:5]}"
                )
            order = [table.feature_names.index(n) for n in self.feature_names]
            features = features[:, order]
        if tuple(features.shape[1:]) != self.feature_shape:
            if math.prod(features.shape[1:]) == math.prod(self.feature_shape or ()):
                features = features.reshape(features.shape[0], *(self.feature_shape or ()))
            else:
                raise DatasetError(
                    f"{where}: each example has {math.prod(features.shape[1:])} features "
                    f"{list(features.shape[1:])}, the project's have {list(self.feature_shape or ())}"
                )
        X = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))
        if not bool(torch.isfinite(X).all()):
            raise DatasetError(f"{where}: features overflow float32")
        return Examples(self._targets(table.labels, where), features=X)

    def _targets(self, raw: np.ndarray, where: str) -> torch.Tensor:
        if self.labels is not None:
            index = {label: i for i, label in enumerate(self.labels)}
            try:
                values = [_label_value(v) for v in raw.tolist()]
            except DatasetError as exc:
                raise DatasetError(f"{where}: {exc}") from None
            unknown = sorted({str(v) for v in values if v not in index})
            if unknown:
                known = ", ".join(map(str, self.labels[:12]))
                raise DatasetError(
                    f"{where}: label(s) {', '.join(unknown[:5])} are not among the project's ({known})"
                )
            return torch.tensor([index[v] for v in values], dtype=torch.int64)
        if raw.dtype.kind not in "biuf":
            raise DatasetError(f"{where}: regression targets must be numbers")
        values_f = raw.astype(np.float64)
        if not np.isfinite(values_f).all():
            raise DatasetError(f"{where}: targets contain NaN or Inf")
        if self.label_range is not None:
            low, high = self.label_range
            outside = int(((values_f < low) | (values_f > high)).sum())
            if outside:
                raise DatasetError(
                    f"{where}: {outside} target(s) outside the project's range [{low}, {high}]"
                )
        return torch.from_numpy(values_f.astype(np.float32))

    def check_examples(self, examples: Examples, where: str) -> Examples:
        """Stored examples (a validation shard) must fit the schema too: kind, shape, label indices."""
        if examples.kind != self.kind:
            raise DatasetError(f"{where}: holds {examples.kind} data, the project's is {self.kind}")
        if examples.features is not None and tuple(examples.features.shape[1:]) != self.feature_shape:
            raise DatasetError(
                f"{where}: features {list(examples.features.shape[1:])}, expected {list(self.feature_shape or ())}"
            )
        if self.labels is not None:
            t = examples.targets
            if t.dtype != torch.int64 or int(t.min()) < 0 or int(t.max()) >= len(self.labels):
                raise DatasetError(f"{where}: class indices must be in [0, {len(self.labels)})")
        elif not examples.targets.is_floating_point():
            raise DatasetError(f"{where}: regression targets must be floats")
        return examples

    # -- preprocessing ----------------------------------------------------------------------------------------

    def prepare(self, examples: Examples) -> Examples:
        """The preprocessing steps applied to `examples` (a no-op for text and for no steps)."""
        if examples.features is None or not self.preprocessing:
            return examples
        X = examples.features.to(torch.float64)
        for step in self.preprocessing:
            if step["op"] == "scale":
                X = X * float(step["factor"])
            else:
                mean = torch.tensor(step["mean"], dtype=torch.float64).reshape(self.feature_shape or ())
                std = torch.tensor(step["std"], dtype=torch.float64).reshape(self.feature_shape or ())
                X = (X - mean) / std
        return Examples(examples.targets, features=X.to(torch.float32))

    # -- manifest form ----------------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "kind": self.kind,
            "label_field": self.label_field,
            "labels": list(self.labels) if self.labels is not None else None,
            "label_range": list(self.label_range) if self.label_range is not None else None,
            "feature_shape": list(self.feature_shape) if self.feature_shape is not None else None,
            "feature_names": list(self.feature_names) if self.feature_names is not None else None,
            "text_field": self.text_field,
            "preprocessing": [dict(s) for s in self.preprocessing],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DataSchema:
        known = {
            "task",
            "kind",
            "label_field",
            "labels",
            "label_range",
            "feature_shape",
            "feature_names",
            "text_field",
            "preprocessing",
        }
        unknown = sorted(set(data) - known)
        if unknown:
            raise DatasetError(f"data schema: unknown field(s) {unknown}")
        try:
            steps = tuple(dict(s) for s in data.get("preprocessing") or ())
            for step in steps:
                if step.get("op") not in PREPROCESSING:
                    raise DatasetError(f"data schema: unknown preprocessing step {step!r}")
            return cls(
                task=data["task"],
                kind=data["kind"],
                label_field=data.get("label_field") or "label",
                labels=tuple(data["labels"]) if data.get("labels") is not None else None,
                label_range=tuple(data["label_range"]) if data.get("label_range") is not None else None,  # type: ignore[arg-type]
                feature_shape=tuple(data["feature_shape"]) if data.get("feature_shape") is not None else None,
                feature_names=tuple(data["feature_names"]) if data.get("feature_names") is not None else None,
                text_field=data.get("text_field"),
                preprocessing=steps,
            )
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, DatasetError):
                raise
            raise DatasetError(f"data schema: {type(exc).__name__}: {exc}") from None


def _label_set(raw: np.ndarray, declared: Sequence[Any] | None, where: str) -> tuple[Label, ...]:
    if declared is not None:
        labels = tuple(_label_value(v) for v in declared)
        if len(set(labels)) != len(labels):
            raise DatasetError(f"--labels has duplicates: {list(labels)}")
        return labels
    try:
        values = {_label_value(v) for v in raw.tolist()}
    except DatasetError as exc:
        raise DatasetError(f"{where}: {exc}") from None
    if all(isinstance(v, int) for v in values):
        ints = sorted(v for v in values if isinstance(v, int))
        if ints[0] >= 0:
            # Integer labels are class indices: 0..max, so a class missing from the validation set still has a slot.
            return tuple(range(ints[-1] + 1))
        return tuple(ints)
    return tuple(sorted(str(v) for v in values))


def infer_schema(
    table: Table,
    task: str,
    *,
    labels: Sequence[Any] | None = None,
    label_range: tuple[float, float] | None = None,
    preprocessing: Sequence[Mapping[str, Any]] = (),
) -> DataSchema:
    """The schema the owner's validation `table` defines for `task`; `standardize` steps get their statistics
    from it (after the steps before them)."""
    spec = get_task(task)
    kind = "text" if table.texts is not None else "tensor"
    feature_shape = tuple(int(s) for s in table.features.shape[1:]) if table.features is not None else None
    base = DataSchema(
        task=task,
        kind=kind,
        label_field=table.label_field,
        labels=_label_set(table.labels, labels, table.source) if spec.classifies else None,
        label_range=(float(label_range[0]), float(label_range[1])) if label_range is not None else None,
        feature_shape=feature_shape,
        feature_names=table.feature_names,
        text_field=table.text_field,
    )
    if not preprocessing:
        return base
    raw = base.examples(table)
    steps: list[dict[str, Any]] = []
    for step in preprocessing:
        done = replace(base, preprocessing=tuple(steps)).prepare(raw) if steps else raw
        if step["op"] == "standardize":
            assert done.features is not None
            X = done.features.to(torch.float64).reshape(len(done), -1)
            std = X.std(dim=0, unbiased=False)
            # A constant feature carries nothing: divide by 1 rather than by 0.
            std = torch.where(std > 0, std, torch.ones_like(std))
            steps.append({"op": "standardize", "mean": X.mean(dim=0).tolist(), "std": std.tolist()})
        else:
            steps.append(dict(step))
    return replace(base, preprocessing=tuple(steps))
