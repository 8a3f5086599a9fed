"""Tasks: what a project's model learns, with the loss trainers minimize and the metric a round is judged by.

| task | inputs | targets | loss | metric |
| --- | --- | --- | --- | --- |
| `classification` | feature tensors (tabular rows, images) | class indices | cross-entropy | accuracy |
| `text-classification` | text, tokenized by the model's tokenizer | class indices | cross-entropy | accuracy |
| `regression` | feature tensors, or text with an hf: model | real values | mean squared error | R-squared (and MSE) |

`measure` computes in float64 so that the aggregator and every verifier get the same numbers for the same outputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from aggregator.errors import AggregatorError

__all__ = ["TASKS", "Task", "get_task"]

TASKS = ("classification", "regression", "text-classification")


@dataclass(frozen=True)
class Task:
    name: str
    loss_name: str
    metric: str
    input_kind: str | None  # "tensor", "text", or None when either works (regression)

    @property
    def classifies(self) -> bool:
        return self.loss_name == "cross_entropy"

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The mean training loss (differentiable, in the outputs' dtype)."""
        if self.classifies:
            return nn.functional.cross_entropy(outputs, targets)
        return nn.functional.mse_loss(outputs.reshape(-1), targets.to(outputs.dtype))

    def measure(self, outputs: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
        """`loss` and the task's metric(s) over every example, in float64."""
        out = outputs.detach().double()
        if self.classifies:
            if out.dim() != 2 or out.shape[0] != targets.shape[0]:
                raise AggregatorError(f"outputs {list(out.shape)} do not fit {targets.shape[0]} class labels")
            loss = nn.functional.cross_entropy(out, targets, reduction="mean")
            accuracy = (out.argmax(dim=1) == targets).double().mean()
            return {"accuracy": float(accuracy), "loss": float(loss)}
        pred = out.reshape(-1)
        if pred.shape[0] != targets.shape[0]:
            raise AggregatorError(
                f"regression outputs {list(out.shape)} do not fit {targets.shape[0]} targets"
            )
        truth = targets.double()
        mse = (pred - truth).square().mean()
        spread = (truth - truth.mean()).square().mean()
        # R^2 of a constant target is undefined; 0 there keeps it finite and canonical.
        r2 = 1.0 - mse / spread if float(spread) > 0 else torch.zeros((), dtype=torch.float64)
        return {"loss": float(mse), "mse": float(mse), "r2": float(r2)}

    def per_example(self, outputs: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        """Float64 `[V]` per-example figures whose means are `measure`'s: `loss` for every task, `accuracy`
        (1 for a correct prediction) for classification. Contribution valuation takes confidence intervals
        over the validation examples from these."""
        out = outputs.detach().double()
        if self.classifies:
            if out.dim() != 2 or out.shape[0] != targets.shape[0]:
                raise AggregatorError(f"outputs {list(out.shape)} do not fit {targets.shape[0]} class labels")
            loss = nn.functional.cross_entropy(out, targets, reduction="none")
            return {"loss": loss, "accuracy": (out.argmax(dim=1) == targets).double()}
        pred = out.reshape(-1)
        if pred.shape[0] != targets.shape[0]:
            raise AggregatorError(
                f"regression outputs {list(out.shape)} do not fit {targets.shape[0]} targets"
            )
        return {"loss": (pred - targets.double()).square()}

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "loss": self.loss_name, "metric": self.metric}


_TASKS = {
    "classification": Task("classification", "cross_entropy", "accuracy", "tensor"),
    "regression": Task("regression", "mse", "r2", None),
    "text-classification": Task("text-classification", "cross_entropy", "accuracy", "text"),
}


def get_task(name: str) -> Task:
    try:
        return _TASKS[name]
    except (KeyError, TypeError):
        raise AggregatorError(f"unknown task {name!r}; choose one of {', '.join(TASKS)}") from None
