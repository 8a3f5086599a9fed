"""The model zoo: models are addressed by name, their weights travel as flat float vectors or state dicts.

A model's spec (parameter names in order, shapes, dtype strings) is what the aggregator checks every submitted
update against before it looks at any value.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping
from functools import cache
from typing import NamedTuple

import torch
from torch import nn
from torch.func import functional_call

from aggregator.errors import AggregatorError, InvalidUpdate

__all__ = [
    "MODELS",
    "Evaluation",
    "build_model",
    "evaluate",
    "evaluate_flat",
    "flatten_state",
    "initial_state",
    "model_spec",
    "state_delta",
    "unflatten_state",
]

Spec = OrderedDict[str, tuple[tuple[int, ...], str]]


def _digits_mlp() -> nn.Module:
    # scikit-learn digits: 8x8 images as 64 inputs, 10 classes; one hidden layer is enough for ~97%.
    return nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))


def _digits_linear() -> nn.Module:
    return nn.Sequential(nn.Linear(64, 10))


_FACTORIES: dict[str, Callable[[], nn.Module]] = {"digits_linear": _digits_linear, "digits_mlp": _digits_mlp}
MODELS: tuple[str, ...] = tuple(sorted(_FACTORIES))


class Evaluation(NamedTuple):
    accuracy: float
    loss: float


def _factory(name: str) -> Callable[[], nn.Module]:
    try:
        return _FACTORIES[name]
    except (KeyError, TypeError):
        raise AggregatorError(f"unknown model {name!r}; known models: {', '.join(MODELS)}") from None


def build_model(name: str, seed: int = 0) -> nn.Module:
    """A fresh model whose initial weights depend only on `seed` (the global RNG is left untouched)."""
    factory = _factory(name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return factory().to(torch.float32)


def initial_state(name: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """The initial global model as a state dict of detached float32 tensors."""
    return {k: v.detach().clone() for k, v in build_model(name, seed).state_dict().items()}


@cache
def model_spec(name: str) -> Spec:
    """Parameter name -> (shape, dtype string), in the order flat vectors use."""
    state = _factory(name)().state_dict()
    return OrderedDict((k, (tuple(v.shape), str(v.dtype).removeprefix("torch."))) for k, v in state.items())


def flatten_state(state: Mapping[str, torch.Tensor], spec: Spec | None = None) -> torch.Tensor:
    """Concatenate a state dict into one float32 vector, in `spec` order when given (and checked against it:
    missing or extra names, wrong shapes or dtypes raise `InvalidUpdate`); without a spec, any float dtype."""
    if spec is not None:
        missing, extra = sorted(set(spec) - set(state)), sorted(set(state) - set(spec))
        if missing or extra:
            raise InvalidUpdate(
                f"parameter names differ from the model: missing {missing}, unexpected {extra}"
            )
    names = list(spec) if spec is not None else list(state)
    parts = []
    for name in names:
        tensor = state[name]
        if not isinstance(tensor, torch.Tensor):
            raise InvalidUpdate(f"{name}: not a tensor ({type(tensor).__name__})")
        if not tensor.is_floating_point():
            raise InvalidUpdate(f"{name}: expected a float tensor, got {tensor.dtype}")
        if spec is not None and tuple(tensor.shape) != spec[name][0]:
            raise InvalidUpdate(f"{name}: expected shape {list(spec[name][0])}, got {list(tensor.shape)}")
        if spec is not None and str(tensor.dtype).removeprefix("torch.") != spec[name][1]:
            raise InvalidUpdate(f"{name}: expected dtype {spec[name][1]}, got {tensor.dtype}")
        parts.append(tensor.detach().reshape(-1).to(torch.float32))
    if not parts:
        raise InvalidUpdate("empty state dict")
    return torch.cat(parts)


def unflatten_state(vector: torch.Tensor, like: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Split a flat vector back into tensors shaped (and typed) like `like`."""
    total = sum(t.numel() for t in like.values())
    if vector.dim() != 1 or vector.numel() != total:
        raise InvalidUpdate(f"expected a flat vector of {total} values, got shape {list(vector.shape)}")
    out, offset = {}, 0
    for name, ref in like.items():
        out[name] = vector[offset : offset + ref.numel()].reshape(ref.shape).to(ref.dtype).clone()
        offset += ref.numel()
    return out


def state_delta(
    local: Mapping[str, torch.Tensor], base: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """`local - base`, name by name: the update a trainer submits."""
    if set(local) != set(base):
        raise InvalidUpdate("the two state dicts have different parameter names")
    return {k: (local[k].detach() - base[k].detach()) for k in base}


@cache
def _template(name: str) -> nn.Module:
    return build_model(name).eval()


def evaluate_flat(name: str, vector: torch.Tensor, X: torch.Tensor, y: torch.Tensor) -> Evaluation:
    """Accuracy and mean cross-entropy of the model whose flat weights are `vector` (spec order)."""
    spec = model_spec(name)
    if vector.dim() != 1 or vector.numel() != sum(_numel(s) for s, _ in spec.values()):
        raise InvalidUpdate(f"{name}: flat weights have the wrong size {list(vector.shape)}")
    if X.dim() != 2 or y.dim() != 1 or X.shape[0] != y.shape[0] or X.shape[0] == 0:
        raise AggregatorError(f"evaluation data: X {list(X.shape)} and y {list(y.shape)} do not match")
    params, offset = {}, 0
    for key, (shape, _) in spec.items():
        params[key] = vector[offset : offset + _numel(shape)].reshape(shape)
        offset += _numel(shape)
    with torch.no_grad():
        logits = functional_call(_template(name), params, (X.to(torch.float32),))
        loss = nn.functional.cross_entropy(logits.double(), y, reduction="mean")
        accuracy = (logits.argmax(dim=1) == y).double().mean()
    return Evaluation(float(accuracy), float(loss))


def evaluate(name: str, state: Mapping[str, torch.Tensor], X: torch.Tensor, y: torch.Tensor) -> Evaluation:
    """Accuracy and mean cross-entropy loss of `state` on `(X, y)`."""
    return evaluate_flat(name, flatten_state(state, model_spec(name)), X, y)


def _numel(shape: tuple[int, ...]) -> int:
    out = 1
    for s in shape:
        out *= s
    return out
