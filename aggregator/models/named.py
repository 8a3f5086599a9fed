"""Name-based helpers for the built-in models that need no project context (the digits models): what the
simulation, the benches and the tests use. A project's model is built from its manifest instead
(`aggregator.models.build`)."""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import NamedTuple

import torch
from torch import nn

from aggregator.models.base import BuiltModel, Spec, flatten_state
from aggregator.models.sources import ModelSource, build
from aggregator.models.zoo import digits_context

__all__ = [
    "Evaluation",
    "build_model",
    "builtin_model",
    "evaluate",
    "evaluate_flat",
    "initial_state",
    "model_spec",
]


class Evaluation(NamedTuple):
    accuracy: float
    loss: float


def builtin_model(name: str, seed: int = 0) -> BuiltModel:
    """The built-in model `name` for digits-shaped data (64 features, 10 classes), initialized from `seed`."""
    kind, _, rest = name.partition(":")
    return build(ModelSource("builtin", rest if kind == "builtin" and rest else name), digits_context(), seed)


def build_model(name: str, seed: int = 0) -> nn.Module:
    """A fresh module whose initial weights depend only on `seed` (the global RNG is left untouched)."""
    return builtin_model(name, seed).module


def initial_state(name: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """The initial global model (its travelling tensors) as detached float32 tensors."""
    return builtin_model(name, seed).initial_state()


@cache
def model_spec(name: str) -> Spec:
    """Travelling tensor name -> (shape, dtype string), in the order flat vectors use."""
    return builtin_model(name).spec


def evaluate_flat(name: str, vector: torch.Tensor, X: torch.Tensor, y: torch.Tensor) -> Evaluation:
    """Accuracy and mean cross-entropy of the builtin model whose flat weights are `vector` (spec order)."""
    from aggregator.evaluation import builtin_evaluator

    metrics = builtin_evaluator(name, X, y).evaluate(vector)
    return Evaluation(metrics["accuracy"], metrics["loss"])


def evaluate(name: str, state: Mapping[str, torch.Tensor], X: torch.Tensor, y: torch.Tensor) -> Evaluation:
    """Accuracy and mean cross-entropy loss of `state` on `(X, y)`."""
    return evaluate_flat(name, flatten_state(state, model_spec(name)), X, y)
