"""Where a model comes from, and building it: `builtin:NAME`, `hf:DIR` or `plugin:NAME` (a bare name is builtin).

`build(source, context, seed)` gives the same `BuiltModel` on every machine for the same source, context and seed;
the round service pins the source in the project manifest (the hf folder by content hash, the plugin by
distribution version) and checks `frozen_sha256` against it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from aggregator.models.base import BuiltModel, ModelContext, ModelError
from aggregator.models.hf import LoraSpec, build_hf_model
from aggregator.models.plugins import find_plugin
from aggregator.models.zoo import builtin_factory

__all__ = ["SOURCE_KINDS", "ModelSource", "build", "parse_model"]

SOURCE_KINDS = ("builtin", "hf", "plugin")


def parse_model(text: str) -> tuple[str, str]:
    """`builtin:NAME`, `hf:DIR`, `plugin:NAME` or a bare builtin `NAME` -> (kind, name or folder)."""
    if not isinstance(text, str) or not text.strip():
        raise ModelError("--model must name a model: builtin:NAME, hf:DIR or plugin:NAME")
    kind, sep, rest = text.strip().partition(":")
    if not sep:
        return "builtin", kind
    if kind not in SOURCE_KINDS or not rest:
        raise ModelError(f"--model {text!r}: expected builtin:NAME, hf:DIR or plugin:NAME")
    return kind, rest


@dataclass(frozen=True)
class ModelSource:
    """A model to build. `path` is where an hf folder is on this machine; `distribution`/`version` pin a plugin."""

    kind: str
    name: str
    path: Path | None = None
    distribution: str | None = None
    version: str | None = None
    lora: LoraSpec | None = None
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in SOURCE_KINDS:
            raise ModelError(f"model source must be one of {SOURCE_KINDS}, got {self.kind!r}")
        if self.lora is not None and self.kind != "hf":
            raise ModelError(
                "--lora applies to hf: models (a builtin or plugin model trains all its weights)"
            )
        if self.kind == "hf" and self.path is None:
            raise ModelError(f"hf:{self.name}: no folder given")

    @property
    def uri(self) -> str:
        return f"{self.kind}:{self.name}"


def build(source: ModelSource, context: ModelContext, seed: int = 0) -> BuiltModel:
    """The model `source` describes, for the project's task and data, initialized from `seed`."""
    if context.num_outputs < 1:
        raise ModelError(f"a model needs at least one output, got {context.num_outputs}")
    ctx = ModelContext(context.task, context.num_outputs, context.feature_shape, dict(source.options))
    if source.kind == "hf":
        assert source.path is not None
        return build_hf_model(source.path, ctx, seed, lora=source.lora, uri=source.uri)
    if source.kind == "builtin":
        factory = builtin_factory(source.name)
        details: dict[str, Any] = {}
    else:
        plugin = find_plugin(source.name, source.distribution, source.version)
        factory = plugin.load()
        details = {"distribution": plugin.distribution, "version": plugin.version}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            module = factory(ctx)
        except ModelError:
            raise
        except Exception as exc:  # a plugin's own error, in one line
            raise ModelError(f"{source.uri}: the model factory failed: {type(exc).__name__}: {exc}") from None
    if not isinstance(module, torch.nn.Module):
        raise ModelError(f"{source.uri}: the factory returned {type(module).__name__}, not a torch.nn.Module")
    return BuiltModel(module.to(torch.float32), uri=source.uri, details=details)
