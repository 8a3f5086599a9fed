"""The one evaluation interface of a round: `Evaluator(model, task, examples).evaluate(flat) -> metrics`.

The round pipeline (before/after metrics), contribution valuation (the utility of every subset of trainers) and
the verifiers all score a flat vector of travelling weights the same way: the module in eval mode, the examples in
their stored order in fixed batches, outputs concatenated and measured in float64 by the task. Same inputs, same
platform: the same numbers, bit for bit. The examples are encoded (tokenized) once, when the evaluator is built.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from aggregator.errors import AggregatorError
from aggregator.examples import Examples
from aggregator.models.base import BuiltModel, ModelError, flatten_state
from aggregator.models.named import builtin_model
from aggregator.tasks import Task, get_task

__all__ = ["Evaluator", "builtin_evaluator", "check_fit", "check_runs"]


def check_fit(model: BuiltModel, task: Task, examples: Examples) -> None:
    """Refuse, in one line, a model, task and data that cannot work together (before anything is trained)."""
    if task.input_kind is not None and task.input_kind != model.input_kind:
        wanted = "an hf: text model" if task.input_kind == "text" else "a model of feature tensors"
        raise ModelError(f"task {task.name} needs {wanted}; {model.uri} reads {model.input_kind}")
    if examples.kind != model.input_kind:
        raise ModelError(f"{model.uri} reads {model.input_kind}, but the data holds {examples.kind}")
    if task.classifies and examples.targets.dtype != torch.int64:
        raise AggregatorError(f"task {task.name} needs integer class labels, got {examples.targets.dtype}")
    if not task.classifies and not examples.targets.is_floating_point():
        raise AggregatorError(f"task {task.name} needs real-valued targets, got {examples.targets.dtype}")


def check_runs(model: BuiltModel, task: Task, examples: Examples, encoded: Any) -> None:
    """Run the model on one example: data of the wrong shape, or labels the model has no output for, are one-line
    `ModelError`s here rather than a framework's traceback half-way through training or scoring."""
    one = model.batch(encoded, slice(0, 1))
    model.module.eval()
    try:
        with torch.no_grad():
            out = model.outputs(one)
    except (RuntimeError, ValueError, IndexError, TypeError) as exc:
        raise ModelError(
            f"{model.uri} cannot run on this data: {type(exc).__name__}: {str(exc).splitlines()[0]}"
        ) from None
    targets = examples.targets
    if out.dim() != 2 or out.shape[0] != 1:
        raise ModelError(
            f"{model.uri} returns outputs of shape {list(out.shape)} for one example, not [1, k]"
        )
    if task.classifies and int(targets.min()) < 0:
        raise ModelError(f"class labels are 0 or more; the data holds {int(targets.min())}")
    if task.classifies and int(targets.max()) >= out.shape[1]:
        raise ModelError(
            f"{model.uri} has {out.shape[1]} outputs, but the labels need {int(targets.max()) + 1} classes "
            f"(they run up to {int(targets.max())})"
        )
    if not task.classifies and out.shape[1] != 1:
        raise ModelError(f"regression needs one output; {model.uri} has {out.shape[1]}")


class Evaluator:
    """Scores flat travelling weights of `model` on `examples` with `task`'s loss and metric."""

    def __init__(
        self, model: BuiltModel, task: Task | str, examples: Examples, *, batch_size: int | None = None
    ) -> None:
        self.model = model
        self.task = get_task(task) if isinstance(task, str) else task
        # Fixed batch sizes (part of the computation every verifier repeats): small for transformers' memory.
        batch_size = batch_size or (32 if model.input_kind == "text" else 1024)
        if batch_size < 1:
            raise AggregatorError(f"batch_size must be positive, got {batch_size}")
        check_fit(model, self.task, examples)
        if examples.features is not None and not bool(torch.isfinite(examples.features).all()):
            raise AggregatorError("validation features contain NaN or Inf")
        self.examples = examples
        self.batch_size = batch_size
        self.encoded = model.encode(examples)
        self._check_outputs()

    @property
    def spec(self):
        """Travelling tensor name -> (shape, dtype): what every update must hold, in flat-vector order."""
        return self.model.spec

    @property
    def dim(self) -> int:
        return self.model.dim

    def __len__(self) -> int:
        return len(self.examples)

    def _outputs(self, params: Mapping[str, torch.Tensor] | None) -> torch.Tensor:
        self.model.module.eval()
        parts = []
        with torch.no_grad():
            for start in range(0, len(self.examples), self.batch_size):
                batch = self.model.batch(self.encoded, slice(start, start + self.batch_size))
                parts.append(self.model.outputs(batch, params))
        return torch.cat(parts)

    def _check_outputs(self) -> None:
        check_runs(self.model, self.task, self.examples, self.encoded)

    def evaluate(self, flat: torch.Tensor) -> dict[str, float]:
        """`loss` and the task's metric for the model whose travelling weights are `flat` (spec order)."""
        return self.task.measure(self._outputs(self.model.params(flat)), self.examples.targets)

    def per_example(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """The task's per-example figures (`Task.per_example`: float64 `[V]`, means equal to `evaluate`'s)."""
        return self.task.per_example(self._outputs(self.model.params(flat)), self.examples.targets)

    def evaluate_state(self, state: Mapping[str, torch.Tensor]) -> dict[str, float]:
        return self.evaluate(flatten_state(state, self.spec))

    def describe(self) -> dict[str, Any]:
        """What the round report says about the evaluation."""
        return {"model": self.model.uri, "task": self.task.describe(), "examples": len(self.examples)}


def builtin_evaluator(
    name: str, X: torch.Tensor, y: torch.Tensor, task: str = "classification", seed: int = 0
) -> Evaluator:
    """An evaluator of the digits-shaped builtin model `name` on `(X, y)` (tests, simulation, benches)."""
    if X.dim() != 2 or y.dim() != 1 or X.shape[0] != y.shape[0] or X.shape[0] == 0:
        raise AggregatorError(f"evaluation data: X {list(X.shape)} and y {list(y.shape)} do not match")
    return Evaluator(builtin_model(name, seed), task, Examples(y, features=X.to(torch.float32)))
