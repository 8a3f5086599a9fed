"""The built-in models (`builtin:NAME`): small networks any project can use without installing anything.

- `digits_linear`, `digits_mlp`, `digits_cnn`: fixed shapes for scikit-learn's 8x8 digits (64 inputs, 10 classes),
  the names the marketplace has always had;
- `linear`, `mlp`, `cnn`: the same designs sized from the project's data (features, classes or one regression
  output). `mlp` takes `hidden=H` (default 64); `cnn` takes image-shaped features ([C, H, W] or [H, W]), or
  flat ones with the `channels`, `height` and `width` options.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from torch import nn

from aggregator.models.base import ModelContext, ModelError, check_names

__all__ = ["BUILTIN_MODELS", "builtin_factory", "digits_context"]


def digits_context(task: str = "classification") -> ModelContext:
    """What the digits models are built for: 64 features, 10 classes."""
    return ModelContext(task=task, num_outputs=10, feature_shape=(64,))


class _Image(nn.Module):
    """Flat features back to [C, H, W] images (a no-op for inputs that already have that shape)."""

    def __init__(self, shape: tuple[int, int, int]) -> None:
        super().__init__()
        self.shape = shape

    def forward(self, x):
        return x.reshape(x.shape[0], *self.shape)


def _features(ctx: ModelContext, name: str) -> int:
    if ctx.feature_shape is None:
        raise ModelError(f"builtin:{name} takes feature tensors; a text project needs an hf: model")
    return math.prod(ctx.feature_shape)


def _fixed_digits(ctx: ModelContext, name: str) -> None:
    if _features(ctx, name) != 64 or ctx.num_outputs != 10 or ctx.task != "classification":
        raise ModelError(
            f"builtin:{name} classifies 64 features into 10 classes; this project has "
            f"{_features(ctx, name)} features and {ctx.num_outputs} output(s) ({ctx.task}): use "
            f"builtin:{name.removeprefix('digits_')} instead"
        )


def _digits_linear(ctx: ModelContext) -> nn.Module:
    check_names(list(ctx.options), [], "builtin:digits_linear")
    _fixed_digits(ctx, "digits_linear")
    return nn.Sequential(nn.Linear(64, 10))


def _digits_mlp(ctx: ModelContext) -> nn.Module:
    # scikit-learn digits: 8x8 images as 64 inputs, 10 classes; one hidden layer is enough for ~97%.
    check_names(list(ctx.options), [], "builtin:digits_mlp")
    _fixed_digits(ctx, "digits_mlp")
    return nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))


def _cnn(ctx: ModelContext, shape: tuple[int, int, int], width: int) -> nn.Module:
    channels = shape[0]
    # Two 3x3 convolutions and a pooled linear head: ~10k weights on 8x8 digits, 98% accuracy centrally.
    return nn.Sequential(
        _Image(shape),
        nn.Conv2d(channels, width, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(width, 2 * width, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d((4, 4)),
        nn.Flatten(),
        nn.Linear(2 * width * 16, ctx.num_outputs),
    )


def _digits_cnn(ctx: ModelContext) -> nn.Module:
    check_names(list(ctx.options), [], "builtin:digits_cnn")
    _fixed_digits(ctx, "digits_cnn")
    return _cnn(ctx, (1, 8, 8), 16)


def _linear(ctx: ModelContext) -> nn.Module:
    check_names(list(ctx.options), [], "builtin:linear")
    return nn.Sequential(nn.Flatten(), nn.Linear(_features(ctx, "linear"), ctx.num_outputs))


def _positive_int(ctx: ModelContext, name: str, default: int, model: str) -> int:
    value = ctx.options.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ModelError(f"builtin:{model}: option {name} must be a positive integer, got {value!r}")
    return value


def _mlp(ctx: ModelContext) -> nn.Module:
    check_names(list(ctx.options), ["hidden"], "builtin:mlp")
    hidden = _positive_int(ctx, "hidden", 64, "mlp")
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(_features(ctx, "mlp"), hidden),
        nn.ReLU(),
        nn.Linear(hidden, ctx.num_outputs),
    )


def _generic_cnn(ctx: ModelContext) -> nn.Module:
    check_names(list(ctx.options), ["channels", "height", "width"], "builtin:cnn")
    features = _features(ctx, "cnn")
    shape: tuple[int, ...]
    if {"channels", "height", "width"} & set(ctx.options):
        shape = tuple(_positive_int(ctx, k, 1, "cnn") for k in ("channels", "height", "width"))
    elif ctx.feature_shape is not None and len(ctx.feature_shape) in (2, 3):
        shape = ctx.feature_shape if len(ctx.feature_shape) == 3 else (1, *ctx.feature_shape)
    else:
        raise ModelError(
            f"builtin:cnn needs image-shaped features ([C, H, W] or [H, W]), got {list(ctx.feature_shape or ())}; "
            "or give --model-option channels=C --model-option height=H --model-option width=W"
        )
    if math.prod(shape) != features:
        raise ModelError(f"builtin:cnn: an image of shape {list(shape)} is not {features} features")
    return _cnn(ctx, (shape[0], shape[1], shape[2]), 16)


_FACTORIES: dict[str, Callable[[ModelContext], nn.Module]] = {
    "cnn": _generic_cnn,
    "digits_cnn": _digits_cnn,
    "digits_linear": _digits_linear,
    "digits_mlp": _digits_mlp,
    "linear": _linear,
    "mlp": _mlp,
}
BUILTIN_MODELS: tuple[str, ...] = tuple(sorted(_FACTORIES))


def builtin_factory(name: str) -> Callable[[ModelContext], nn.Module]:
    try:
        return _FACTORIES[name]
    except (KeyError, TypeError):
        raise ModelError(
            f"unknown model {name!r}; built-in models: {', '.join(BUILTIN_MODELS)} (or hf:DIR, plugin:NAME)"
        ) from None
