"""Local training as a trainer runs it, and the updates that misbehaving trainers submit.

Every function returns the model a trainer would upload (a state dict); `models.state_delta(local, global)`
turns it into the delta the aggregator works on. Trainers' data never leaves these functions.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from aggregator.data import NUM_CLASSES
from aggregator.errors import AggregatorError
from aggregator.models import build_model, flatten_state, model_spec, unflatten_state

__all__ = ["free_rider", "gaussian_noise", "label_flip", "scale", "sign_flip", "sybil_copies", "train_local"]

State = dict[str, torch.Tensor]


def train_local(
    model_name: str,
    global_state: Mapping[str, torch.Tensor],
    X: torch.Tensor,
    y: torch.Tensor,
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    seed: int,
    momentum: float = 0.9,
) -> State:
    """Mini-batch SGD with momentum from the global model; the batch order depends only on `seed`."""
    if epochs < 1 or batch_size < 1 or not lr > 0:
        raise AggregatorError(f"need epochs >= 1, batch_size >= 1, lr > 0; got {epochs}, {batch_size}, {lr}")
    if X.dim() != 2 or X.shape[0] != y.shape[0] or X.shape[0] == 0:
        raise AggregatorError(f"training data: X {list(X.shape)} and y {list(y.shape)} do not match")
    model = build_model(model_name)
    model.load_state_dict(dict(global_state))
    model.train()
    params = list(model.parameters())
    velocity = [torch.zeros_like(p) for p in params]
    gen = torch.Generator().manual_seed(seed)
    loss_fn = nn.CrossEntropyLoss()
    for _ in range(epochs):
        order = torch.randperm(X.shape[0], generator=gen)
        for start in range(0, X.shape[0], batch_size):
            batch = order[start : start + batch_size]
            grads = torch.autograd.grad(loss_fn(model(X[batch]), y[batch]), params)
            # Heavy-ball momentum as torch.optim.SGD does it (v <- mu v + g; p <- p - lr v), written out
            # because importing torch.optim pulls in the compiler stack (seconds, once per process).
            with torch.no_grad():
                for p, v, g in zip(params, velocity, grads, strict=True):
                    v.mul_(momentum).add_(g)
                    p.sub_(lr * v)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _combine(
    global_state: Mapping[str, torch.Tensor], local: Mapping[str, torch.Tensor], factor: float
) -> State:
    return {k: global_state[k] + factor * (local[k] - global_state[k]) for k in global_state}


def sign_flip(
    global_state: Mapping[str, torch.Tensor], local: Mapping[str, torch.Tensor], factor: float = 1.0
) -> State:
    """The honest delta reversed (and scaled by `factor`): pushes the model away from what the data says."""
    return _combine(global_state, local, -factor)


def scale(
    global_state: Mapping[str, torch.Tensor], local: Mapping[str, torch.Tensor], factor: float = 10.0
) -> State:
    """The honest delta times `factor` (model replacement / boosting)."""
    return _combine(global_state, local, factor)


def gaussian_noise(
    model_name: str, global_state: Mapping[str, torch.Tensor], *, std: float, seed: int
) -> State:
    """No training at all: the global model plus N(0, std^2) noise on every weight."""
    spec = model_spec(model_name)
    flat = flatten_state(global_state, spec)
    noise = torch.randn(flat.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float32)
    return unflatten_state(flat + std * noise, global_state)


def label_flip(
    model_name: str,
    global_state: Mapping[str, torch.Tensor],
    X: torch.Tensor,
    y: torch.Tensor,
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    seed: int,
) -> State:
    """Honest training on poisoned labels: class c is relabelled 9 - c."""
    return train_local(
        model_name,
        global_state,
        X,
        NUM_CLASSES - 1 - y,
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        seed=seed,
    )


def free_rider(global_state: Mapping[str, torch.Tensor], mode: str = "global") -> State:
    """A trainer who does no work: sends the global model back (`"global"`) or all zeros (`"zeros"`)."""
    if mode == "global":
        return {k: v.detach().clone() for k, v in global_state.items()}
    if mode == "zeros":
        return {k: torch.zeros_like(v) for k, v in global_state.items()}
    raise AggregatorError(f"free_rider mode must be 'global' or 'zeros', got {mode!r}")


def sybil_copies(local: Mapping[str, torch.Tensor], k: int) -> list[State]:
    """`k` identical submissions of one update, as `k` colluding identities would send."""
    if k < 1:
        raise AggregatorError(f"need at least one copy, got {k}")
    return [{name: t.detach().clone() for name, t in local.items()} for _ in range(k)]
