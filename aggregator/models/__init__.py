"""Models from three sources, one interface: `builtin:NAME` (the zoo), `hf:DIR` (a Hugging Face folder, with
LoRA / FFA-LoRA through peft) and `plugin:NAME` (an installed distribution's `trustmarket.models` entry point).

`build(ModelSource, ModelContext, seed) -> BuiltModel`; a `BuiltModel` knows which tensors travel (its `spec`, the
order flat vectors use), how examples become inputs, and the hash of what stays (`frozen_sha256`). See
docs/models.md. The transformers and peft imports happen only when an hf: model is built.
"""

from aggregator.models.base import (
    BuiltModel,
    ModelContext,
    ModelError,
    Spec,
    flatten_state,
    spec_numel,
    state_delta,
    unflatten_state,
)
from aggregator.models.hf import LoraSpec, parse_lora
from aggregator.models.named import (
    Evaluation,
    build_model,
    builtin_model,
    evaluate,
    evaluate_flat,
    initial_state,
    model_spec,
)
from aggregator.models.plugins import ENTRY_POINT_GROUP, PluginVersionMismatch, find_plugin, installed_plugins
from aggregator.models.sources import SOURCE_KINDS, ModelSource, build, parse_model
from aggregator.models.zoo import BUILTIN_MODELS, digits_context

MODELS = BUILTIN_MODELS

__all__ = [
    "BUILTIN_MODELS",
    "ENTRY_POINT_GROUP",
    "MODELS",
    "SOURCE_KINDS",
    "BuiltModel",
    "Evaluation",
    "LoraSpec",
    "ModelContext",
    "ModelError",
    "ModelSource",
    "PluginVersionMismatch",
    "Spec",
    "build",
    "build_model",
    "builtin_model",
    "digits_context",
    "evaluate",
    "evaluate_flat",
    "find_plugin",
    "flatten_state",
    "initial_state",
    "installed_plugins",
    "model_spec",
    "parse_lora",
    "parse_model",
    "spec_numel",
    "state_delta",
    "unflatten_state",
]
