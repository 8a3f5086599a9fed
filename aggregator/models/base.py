"""What every model source builds: a `BuiltModel`, which knows the module, which of its tensors travel between
trainers and the aggregator, and how examples become the module's inputs.

**What travels** (one rule for every source): every parameter that trains (`requires_grad`) and every
floating-point buffer (BatchNorm's running mean and variance: state that local training changes, averaged with
the parameters as FedAvg averages whole state dicts). Everything else stays where it was built: frozen weights
(a LoRA model's base, FFA-LoRA's A matrices) and integer buffers (`num_batches_tracked`). What stays is the same
on every machine because it comes from the pinned source and the manifest's seed; `frozen_sha256` proves it.

Flat vectors (what the aggregator works on) concatenate the travelling tensors in the module's state-dict order.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from safetensors.torch import save
from torch import nn
from torch.func import functional_call

from aggregator.errors import AggregatorError, InvalidUpdate

__all__ = [
    "INPUT_KINDS",
    "BuiltModel",
    "ModelContext",
    "ModelError",
    "Spec",
    "flatten_state",
    "spec_numel",
    "state_delta",
    "unflatten_state",
]

Spec = OrderedDict[str, tuple[tuple[int, ...], str]]
INPUT_KINDS = ("tensor", "text")

# Model inputs for one batch: positional tensors (a tensor model's features) and keyword tensors (token ids).
Inputs = tuple[tuple[torch.Tensor, ...], dict[str, torch.Tensor]]


class ModelError(AggregatorError):
    """A model cannot be built or does not fit the project's task and data."""


@dataclass(frozen=True)
class ModelContext:
    """What a model factory is told about the project: the task, how many outputs it needs (classes, or 1 for
    regression), the shape of one example's features (None for text) and the owner's model options."""

    task: str
    num_outputs: int
    feature_shape: tuple[int, ...] | None = None
    options: Mapping[str, Any] = field(default_factory=dict)


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def spec_numel(spec: Spec) -> int:
    total = 0
    for shape, _ in spec.values():
        n = 1
        for s in shape:
            n *= s
        total += n
    return total


class BuiltModel:
    """A module ready to train and evaluate, with the split between travelling and staying tensors.

    `encode(examples)` turns examples into model inputs once (a text model tokenizes); `batch(encoded, idx)` cuts
    one batch out of them; `outputs(inputs, params)` runs the module, with `params` (travelling tensors by name)
    standing in for the module's own when given.
    """

    def __init__(
        self,
        module: nn.Module,
        *,
        uri: str,
        input_kind: str = "tensor",
        encoder: Callable[[Any], dict[str, torch.Tensor]] | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        if input_kind not in INPUT_KINDS:
            raise ModelError(f"input kind must be one of {INPUT_KINDS}, got {input_kind!r}")
        self.module = module
        self.uri = uri
        self.input_kind = input_kind
        self.details = dict(details or {})
        self._encoder = encoder
        trainable = {id(p) for p in module.parameters() if p.requires_grad}
        buffers = {id(b) for b in module.buffers() if b.is_floating_point()}
        state = module.state_dict(keep_vars=True)
        self.travelling: tuple[str, ...] = tuple(
            name for name, t in state.items() if id(t) in trainable or id(t) in buffers
        )
        if not self.travelling:
            raise ModelError(f"{uri}: the model has nothing to train")
        for name in self.travelling:
            if not state[name].is_floating_point():
                raise ModelError(f"{uri}: trainable tensor {name} is {state[name].dtype}, not floating point")
        self.spec: Spec = OrderedDict(
            (k, (tuple(state[k].shape), _dtype_name(state[k].dtype))) for k in self.travelling
        )
        self.dim = spec_numel(self.spec)

    # -- state ------------------------------------------------------------------------------------------------

    def initial_state(self) -> dict[str, torch.Tensor]:
        """The travelling tensors as built (the project's initial model), detached copies."""
        state = self.module.state_dict()
        return {k: state[k].detach().clone() for k in self.travelling}

    def frozen_state(self) -> dict[str, torch.Tensor]:
        """The tensors that never travel: they must be identical wherever the model is built."""
        travelling = set(self.travelling)
        return {k: v.detach() for k, v in self.module.state_dict().items() if k not in travelling}

    def frozen_sha256(self) -> str:
        """sha256 of the staying tensors (safetensors, names sorted): equal on every machine that builds the
        same source with the same seed, which the manifest pins."""
        frozen = self.frozen_state()
        seen: set[int] = set()
        prepared = {}
        for name in sorted(frozen):
            tensor = frozen[name].cpu().contiguous()
            # Tied weights share storage, which safetensors refuses; each gets its own copy.
            if tensor.numel() and tensor.untyped_storage().data_ptr() in seen:
                tensor = tensor.clone()
            if tensor.numel():
                seen.add(tensor.untyped_storage().data_ptr())
            prepared[name] = tensor
        return hashlib.sha256(save(prepared)).hexdigest()

    def load_state(self, state: Mapping[str, torch.Tensor]) -> None:
        """Write travelling tensors (exactly the spec's names, shapes and dtypes) into the module."""
        flat = flatten_state(state, self.spec)  # checks names, shapes and dtypes
        with torch.no_grad():
            own = self.module.state_dict(keep_vars=True)
            for name, value in unflatten_state(flat, {k: own[k] for k in self.travelling}).items():
                own[name].copy_(value)

    def params(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """Views of a flat vector (spec order) as the travelling tensors."""
        if flat.dim() != 1 or flat.numel() != self.dim:
            raise InvalidUpdate(
                f"{self.uri}: flat weights have the wrong size {list(flat.shape)}, not [{self.dim}]"
            )
        out, offset = {}, 0
        for name, (shape, dtype) in self.spec.items():
            n = 1
            for s in shape:
                n *= s
            out[name] = flat[offset : offset + n].reshape(shape).to(getattr(torch, dtype))
            offset += n
        return out

    # -- inputs -----------------------------------------------------------------------------------------------

    def encode(self, examples: Any) -> dict[str, torch.Tensor]:
        """Model inputs for every example, computed once (features, or token ids and attention masks)."""
        if self._encoder is not None:
            return self._encoder(examples)
        if examples.features is None:
            raise ModelError(f"{self.uri} takes feature tensors, but the data has none (is it text?)")
        return {"features": examples.features}

    def batch(self, encoded: Mapping[str, torch.Tensor], index: torch.Tensor | slice) -> Inputs:
        if self.input_kind == "tensor":
            return (encoded["features"][index],), {}
        ids, mask = encoded["input_ids"][index], encoded["attention_mask"][index]
        # Padding beyond the batch's longest example changes nothing but the cost.
        width = max(int(mask.sum(dim=1).max()), 1)
        return (), {"input_ids": ids[:, :width].contiguous(), "attention_mask": mask[:, :width].contiguous()}

    def outputs(self, inputs: Inputs, params: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
        args, kwargs = inputs
        if params is None:
            return self.module(*args, **kwargs)
        return functional_call(self.module, dict(params), args, kwargs)

    @property
    def total_parameters(self) -> int:
        """Every floating-point weight of the module, travelling or not (what a full update would hold)."""
        return sum(t.numel() for t in self.module.state_dict().values() if t.is_floating_point())

    def describe(self) -> dict[str, Any]:
        return {
            "uri": self.uri,
            "parameters": self.dim,
            "total_parameters": self.total_parameters,
            "tensors": len(self.spec),
            **self.details,
        }


def flatten_state(state: Mapping[str, torch.Tensor], spec: Spec | None = None) -> torch.Tensor:
    """Concatenate a state dict into one float32 vector, in `spec` order when given (and checked against it:
    missing or extra names, wrong shapes or dtypes raise `InvalidUpdate`); without a spec, any float dtype."""
    if spec is not None:
        missing, extra = sorted(set(spec) - set(state)), sorted(set(state) - set(spec))
        if missing or extra:
            raise InvalidUpdate(
                f"parameter names differ from the model: missing {missing[:5]}{'...' if len(missing) > 5 else ''},"
                f" unexpected {extra[:5]}{'...' if len(extra) > 5 else ''}"
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
        if spec is not None and _dtype_name(tensor.dtype) != spec[name][1]:
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


def check_names(names: Sequence[str], known: Sequence[str], what: str) -> None:
    """Refuse option names a factory does not take (a typo must not silently fall back to a default)."""
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise ModelError(f"{what} takes no option(s) {unknown}; known: {sorted(known) or 'none'}")
