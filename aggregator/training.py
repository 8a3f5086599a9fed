"""Local training as a trainer runs it (the project's recipe), and the updates that misbehaving trainers submit.

`train(model, task, global_state, examples, recipe)` returns the travelling tensors a trainer ends with;
`models.state_delta(local, global)` turns them into the delta the aggregator works on. Trainers' data never
leaves these functions. The batch order comes from the recipe's seed (a `torch.Generator`), dropout from the same
seed (the global RNG is forked and restored), so a trainer can reproduce its own update.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch

from aggregator.data import NUM_CLASSES
from aggregator.errors import AggregatorError
from aggregator.evaluation import check_fit, check_runs
from aggregator.examples import Examples
from aggregator.models import BuiltModel, builtin_model, flatten_state, model_spec, unflatten_state
from aggregator.tasks import Task, get_task

__all__ = [
    "OPTIMIZERS",
    "Recipe",
    "StepCallback",
    "free_rider",
    "gaussian_noise",
    "label_flip",
    "scale",
    "sign_flip",
    "sybil_copies",
    "train",
    "train_local",
]

State = dict[str, torch.Tensor]
OPTIMIZERS = ("adam", "adamw", "sgd")
StepCallback = Callable[[int, int, float], None]


@dataclass(frozen=True)
class Recipe:
    """How trainers train (the manifest's `recipe`): optimizer, learning rate (round 0's; the aggregator's schedule
    moves it), epochs or a fixed number of optimizer steps, batch size, weight decay, SGD momentum, seed."""

    optimizer: str = "sgd"
    lr: float = 0.05
    epochs: int = 10
    max_steps: int | None = None  # when set, exactly this many steps (epochs repeat as needed)
    batch_size: int = 16
    weight_decay: float = 0.0
    momentum: float = 0.9  # sgd only
    seed: int = 0

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise AggregatorError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        if not (isinstance(self.lr, int | float) and math.isfinite(self.lr) and self.lr > 0):
            raise AggregatorError(f"learning rate must be positive and finite, got {self.lr!r}")
        for name in ("epochs", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise AggregatorError(f"{name} must be a positive integer, got {value!r}")
        if self.max_steps is not None and (not isinstance(self.max_steps, int) or self.max_steps < 1):
            raise AggregatorError(f"max_steps must be a positive integer, got {self.max_steps!r}")
        if not (isinstance(self.weight_decay, int | float) and 0 <= self.weight_decay < math.inf):
            raise AggregatorError(f"weight_decay must be non-negative and finite, got {self.weight_decay!r}")
        if not (isinstance(self.momentum, int | float) and 0 <= self.momentum < 1):
            raise AggregatorError(f"momentum must be in [0, 1), got {self.momentum!r}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise AggregatorError(f"seed must be an integer, got {self.seed!r}")

    def steps(self, examples: int) -> int:
        """Optimizer steps for `examples` training examples."""
        if self.max_steps is not None:
            return self.max_steps
        return self.epochs * math.ceil(examples / self.batch_size)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Recipe:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise AggregatorError(f"unknown recipe setting(s) {unknown}; known: {sorted(known)}")
        return cls(**dict(data))


def _optimizer(recipe: Recipe, params: list[torch.nn.Parameter], lr: float) -> torch.optim.Optimizer:
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay)
    if recipe.optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=recipe.weight_decay)
    return torch.optim.AdamW(params, lr=lr, weight_decay=recipe.weight_decay)


def train(
    model: BuiltModel,
    task: Task | str,
    global_state: Mapping[str, torch.Tensor],
    examples: Examples,
    recipe: Recipe,
    *,
    lr: float | None = None,
    seed: int | None = None,
    on_step: StepCallback | None = None,
) -> State:
    """Train `model` from `global_state` on `examples` by `recipe` (at `lr` when given: the round's learning rate);
    the travelling tensors after training. `on_step(step, total, loss)` follows progress."""
    task = get_task(task) if isinstance(task, str) else task
    lr = recipe.lr if lr is None else lr
    if not (math.isfinite(lr) and lr > 0):
        raise AggregatorError(f"learning rate must be positive and finite, got {lr}")
    seed = recipe.seed if seed is None else seed
    model.load_state(global_state)
    check_fit(model, task, examples)
    encoded = model.encode(examples)
    check_runs(model, task, examples, encoded)
    params = [p for p in model.module.parameters() if p.requires_grad]
    optimizer = _optimizer(recipe, params, lr)
    gen = torch.Generator().manual_seed(seed)
    m, total, step = len(examples), recipe.steps(len(examples)), 0
    model.module.train()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # dropout masks
        while step < total:
            order = torch.randperm(m, generator=gen)
            for start in range(0, m, recipe.batch_size):
                index = order[start : start + recipe.batch_size]
                loss = task.loss(model.outputs(model.batch(encoded, index)), examples.targets[index])
                value = float(loss.detach())
                if not math.isfinite(value):
                    raise AggregatorError(
                        f"training diverged at step {step + 1} (loss {value}); lower the learning rate"
                    )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                step += 1
                if on_step is not None:
                    on_step(step, total, value)
                if step >= total:
                    break
    model.module.eval()
    state = model.module.state_dict()
    return {k: state[k].detach().clone() for k in model.travelling}


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
    """Mini-batch SGD with momentum on a digits-shaped builtin model (the simulation's trainers)."""
    if epochs < 1 or batch_size < 1 or not lr > 0:
        raise AggregatorError(f"need epochs >= 1, batch_size >= 1, lr > 0; got {epochs}, {batch_size}, {lr}")
    if X.dim() != 2 or X.shape[0] != y.shape[0] or X.shape[0] == 0:
        raise AggregatorError(f"training data: X {list(X.shape)} and y {list(y.shape)} do not match")
    recipe = Recipe("sgd", lr, epochs, None, batch_size, 0.0, momentum, seed)
    return train(builtin_model(model_name), "classification", global_state, Examples(y, features=X), recipe)


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
