"""Hugging Face models (`hf:DIR`): a transformer encoder read offline from a folder, with a task head and, with
`--lora`, low-rank adapters through peft.

The folder must hold `config.json`, safetensors weights and the tokenizer's files; it is read with
`local_files_only=True` and `use_safetensors=True` (no download, no pickle) and never runs code from the folder
(`trust_remote_code` stays off). The head mean-pools the encoder's last hidden states over the attention mask (as
sentence-transformers does for all-MiniLM-L6-v2) and maps them linearly to the task's outputs. The head and the
adapters are initialized under the manifest's seed, so every machine builds the same model.

LoRA (Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models", ICLR 2022): the base stays frozen and
each target linear layer learns `W + (alpha / r) B A`. Only the adapters and the head train, so only they travel.
FFA-LoRA (Sun, Qin, Rao, Li, Shen 2024, "Improving LoRA in Privacy-preserving Federated Learning", ICLR 2024) also
freezes A at its seeded initialization and trains B alone: then the average of the trainers' B matrices is exactly
the B of the averaged model (`mean(B_i) A = mean(B_i A)`), which plain LoRA's separate averaging of A and B is not.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from aggregator.models.base import BuiltModel, ModelContext, ModelError, check_names

__all__ = ["DEFAULT_MAX_LENGTH", "LoraSpec", "TextModel", "build_hf_model", "parse_lora"]

DEFAULT_MAX_LENGTH = 128
_LORA_KEYS = ("alpha", "dropout", "rank", "targets")


@dataclass(frozen=True)
class LoraSpec:
    """`--lora rank=R[,alpha=A][,targets=q,v][,dropout=P][,ffa]`; alpha defaults to 2 r."""

    rank: int
    alpha: float | None = None
    targets: tuple[str, ...] | None = None
    ffa: bool = False
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.rank, int) or isinstance(self.rank, bool) or self.rank < 1:
            raise ModelError(f"LoRA rank must be a positive integer, got {self.rank!r}")
        if self.alpha is not None and not (
            isinstance(self.alpha, int | float) and math.isfinite(self.alpha) and self.alpha > 0
        ):
            raise ModelError(f"LoRA alpha must be a positive number, got {self.alpha!r}")
        if not (isinstance(self.dropout, int | float) and 0 <= self.dropout < 1):
            raise ModelError(f"LoRA dropout must be in [0, 1), got {self.dropout!r}")
        if self.targets is not None and (
            not self.targets or not all(isinstance(t, str) and t for t in self.targets)
        ):
            raise ModelError(f"LoRA targets must be module names, got {self.targets!r}")

    @property
    def scale_alpha(self) -> float:
        return float(self.alpha) if self.alpha is not None else 2.0 * self.rank

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["targets"] = list(self.targets) if self.targets is not None else None
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LoraSpec:
        unknown = sorted(set(data) - {*_LORA_KEYS, "ffa"})
        if unknown:
            raise ModelError(f"unknown LoRA setting(s) {unknown}")
        targets = data.get("targets")
        return cls(
            rank=data.get("rank"),  # type: ignore[arg-type]
            alpha=data.get("alpha"),
            targets=tuple(targets) if targets is not None else None,
            ffa=bool(data.get("ffa", False)),
            dropout=data.get("dropout", 0.0),
        )


def parse_lora(text: str) -> LoraSpec:
    """`rank=8,alpha=16,targets=query,value,ffa` -> LoraSpec. Bare words after `targets=` extend the target list
    (`+` separates them too); `ffa` is a flag."""
    values: dict[str, Any] = {}
    targets: list[str] | None = None
    ffa = False
    for token in (t.strip() for t in text.split(",")):
        if not token:
            continue
        key, sep, raw = token.partition("=")
        if not sep:
            if key == "ffa":
                ffa = True
            elif targets is not None:
                targets.extend(p for p in key.split("+") if p)
            else:
                raise ModelError(
                    f"--lora: {token!r} is not NAME=VALUE or ffa (settings: rank, alpha, targets, dropout)"
                )
            continue
        if key not in _LORA_KEYS:
            raise ModelError(
                f"--lora: unknown setting {key!r} (settings: rank, alpha, targets, dropout, ffa)"
            )
        if key == "targets":
            targets = [p for p in raw.split("+") if p]
            continue
        try:
            values[key] = int(raw) if key == "rank" else float(raw)
        except ValueError:
            raise ModelError(f"--lora: {key}={raw!r} is not a number") from None
    if "rank" not in values:
        raise ModelError("--lora needs rank=R")
    return LoraSpec(
        rank=values["rank"],
        alpha=values.get("alpha"),
        targets=tuple(targets) if targets is not None else None,
        ffa=ffa,
        dropout=values.get("dropout", 0.0),
    )


class TextModel(nn.Module):
    """A transformer encoder, mean pooling over real tokens, and a linear head."""

    def __init__(self, encoder: nn.Module, hidden_size: int, num_outputs: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(hidden_size, num_outputs)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1.0)
        return self.head(pooled)


def _quiet_transformers() -> None:
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()


def _check_folder(path: Path) -> None:
    if not path.is_dir():
        raise ModelError(
            f"hf:{path}: not a folder (a Hugging Face model folder holds config.json and weights)"
        )
    if not (path / "config.json").is_file():
        raise ModelError(f"hf:{path}: no config.json")
    if not any(path.glob("*.safetensors")):
        raise ModelError(f"hf:{path}: no .safetensors weights (pickled .bin weights are never loaded)")


def _lora_targets(encoder: nn.Module, lora: LoraSpec) -> list[str]:
    if lora.targets is not None:
        return list(lora.targets)
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as DEFAULTS

    model_type = getattr(getattr(encoder, "config", None), "model_type", None)
    if model_type not in DEFAULTS:
        raise ModelError(
            f"no default LoRA targets for model type {model_type!r}: give --lora ...,targets=a+b"
        )
    return list(DEFAULTS[model_type])


def _add_lora(encoder: nn.Module, lora: LoraSpec) -> nn.Module:
    from peft import LoraConfig, inject_adapter_in_model

    config = LoraConfig(
        r=lora.rank,
        lora_alpha=lora.scale_alpha,  # type: ignore[arg-type]  # peft only divides it by r: a float is fine
        lora_dropout=lora.dropout,
        target_modules=_lora_targets(encoder, lora),
        bias="none",
    )
    try:
        adapted = inject_adapter_in_model(config, encoder)
    except ValueError as exc:
        raise ModelError(f"LoRA: {str(exc).splitlines()[0]}") from None
    for name, param in adapted.named_parameters():
        trains = ".lora_B." in name or (".lora_A." in name and not lora.ffa)
        param.requires_grad_(trains)
    return adapted


def build_hf_model(
    path: Path,
    ctx: ModelContext,
    seed: int,
    *,
    lora: LoraSpec | None = None,
    uri: str | None = None,
) -> BuiltModel:
    """The text model of the folder `path` for `ctx`, its head (and adapters) initialized from `seed`."""
    check_names(list(ctx.options), ["max_length"], "an hf: model")
    max_length = ctx.options.get("max_length", DEFAULT_MAX_LENGTH)
    if not isinstance(max_length, int) or isinstance(max_length, bool) or max_length < 2:
        raise ModelError(f"max_length must be an integer >= 2, got {max_length!r}")
    if ctx.feature_shape is not None:
        raise ModelError("hf: models read text: give the data a text column (--text-column)")
    path = Path(path)
    _check_folder(path)
    _quiet_transformers()
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    try:
        config = AutoConfig.from_pretrained(path, local_files_only=True, trust_remote_code=False)
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True, trust_remote_code=False)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            encoder = AutoModel.from_pretrained(
                path, local_files_only=True, use_safetensors=True, trust_remote_code=False
            ).to(torch.float32)
            hidden = int(getattr(config, "hidden_size", 0) or getattr(config, "dim", 0))
            if hidden < 1:
                raise ModelError(f"hf:{path.name}: config.json names no hidden_size")
            for param in encoder.parameters():
                param.requires_grad_(lora is None)  # without LoRA the whole encoder is fine-tuned
            if lora is not None:
                encoder = _add_lora(encoder, lora)
            module = TextModel(encoder, hidden, ctx.num_outputs).to(torch.float32)
    except (OSError, KeyError) as exc:
        raise ModelError(f"hf:{path.name}: cannot load the model: {str(exc).splitlines()[0]}") from None
    base_parameters = sum(
        p.numel() for n, p in module.named_parameters() if ".lora_" not in n and not n.startswith("head.")
    )

    def encode(examples: Any) -> dict[str, torch.Tensor]:
        texts: Sequence[str] | None = examples.texts
        if texts is None:
            raise ModelError(f"hf:{path.name} reads text, but the data has feature tensors")
        tokens = tokenizer(
            list(texts), padding="longest", truncation=True, max_length=max_length, return_tensors="pt"
        )
        return {
            "input_ids": tokens["input_ids"].to(torch.int64),
            "attention_mask": tokens["attention_mask"].to(torch.int64),
        }

    details = {
        "base_parameters": base_parameters,
        "lora": lora.to_dict() if lora is not None else None,
        "max_length": max_length,
    }
    return BuiltModel(
        module, uri=uri or f"hf:{path.name}", input_kind="text", encoder=encode, details=details
    )
