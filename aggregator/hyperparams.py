"""Server optimizer and client learning-rate schedule, carried from round to round in the round report.

The server applies the aggregated delta as a pseudo-gradient (Reddi, Charles, Zaheer, Garrett, Rush, Konečný,
Kumar, McMahan 2021, "Adaptive Federated Optimization", ICLR):

- `sgd`: `x <- x + server_lr * delta` (server_lr = 1 is plain FedAvg);
- `fedadam`: `m <- b1 m + (1 - b1) delta`, `v <- b2 v + (1 - b2) delta^2`, `x <- x + server_lr * m / (sqrt(v) + tau)`.

After each round the schedule moves on: the client learning rate decays geometrically down to a floor, and the
server learning rate backs off by `backoff` when the round made the validation loss worse (down to a floor).
Scalars go into the report as JSON; FedAdam's moment tensors travel beside it (safetensors) and the report
holds their sha256.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, fields, replace
from typing import Any

import numpy as np
import torch
from safetensors.torch import save

from aggregator.errors import AggregatorError

__all__ = ["OPTIMIZERS", "HyperParams"]

OPTIMIZERS = ("fedadam", "sgd")
_CHUNK = 1 << 20


@dataclass(frozen=True)
class HyperParams:
    optimizer: str = "sgd"
    server_lr: float = 1.0
    server_lr_min: float = 0.05
    backoff: float = 0.5
    client_lr: float = 0.05
    client_lr_decay: float = 0.95
    client_lr_min: float = 0.005
    beta1: float = 0.9
    beta2: float = 0.99
    tau: float = 1e-3
    round: int = 0
    m: torch.Tensor | None = field(default=None, repr=False, compare=False)
    v: torch.Tensor | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise AggregatorError(f"server optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        positive = ("server_lr", "server_lr_min", "client_lr", "client_lr_min", "tau")
        unit = ("backoff", "client_lr_decay", "beta1", "beta2")
        for name in positive:
            value = getattr(self, name)
            if not (isinstance(value, int | float) and np.isfinite(value) and value > 0):
                raise AggregatorError(f"hyper-parameter {name} must be positive and finite, got {value!r}")
        for name in unit:
            value = getattr(self, name)
            if not (isinstance(value, int | float) and 0 < value <= 1):
                raise AggregatorError(f"hyper-parameter {name} must be in (0, 1], got {value!r}")
        if not isinstance(self.round, int) or self.round < 0:
            raise AggregatorError(f"round must be a non-negative integer, got {self.round!r}")
        if (self.m is None) != (self.v is None):
            raise AggregatorError("FedAdam state needs both moments m and v")

    def apply(self, global_flat: torch.Tensor, delta: torch.Tensor) -> tuple[torch.Tensor, HyperParams]:
        """The next global model (float32 flat) and the optimizer state after this step."""
        if global_flat.shape != delta.shape or global_flat.dim() != 1:
            raise AggregatorError(f"model {list(global_flat.shape)} and delta {list(delta.shape)} differ")
        if self.optimizer == "sgd":
            # A chunk at a time (elementwise: the same bits): whole-model float64 temporaries would cost four
            # model copies of memory in a round that may hold only a few.
            new = torch.empty_like(global_flat, dtype=torch.float32)
            for start in range(0, global_flat.numel(), _CHUNK):
                part = slice(start, start + _CHUNK)
                new[part] = global_flat[part].double() + self.server_lr * delta[part].double()
            return new, self
        m = self.m.double() if self.m is not None else torch.zeros_like(delta, dtype=torch.float64)
        v = self.v.double() if self.v is not None else torch.zeros_like(delta, dtype=torch.float64)
        if m.shape != delta.shape:
            raise AggregatorError(f"FedAdam state has {m.numel()} entries, the model {delta.numel()}")
        m = self.beta1 * m + (1 - self.beta1) * delta.double()
        v = self.beta2 * v + (1 - self.beta2) * delta.double().square()
        step = self.server_lr * m / (v.sqrt() + self.tau)
        new = (global_flat.double() + step).to(torch.float32)
        return new, replace(self, m=m.to(torch.float32), v=v.to(torch.float32))

    def advance(self, loss_before: float, loss_after: float) -> HyperParams:
        """The schedule for the next round, given the validation loss before and after this one."""
        server_lr = self.server_lr
        if not loss_after <= loss_before:  # worse, or NaN: slow the server down
            server_lr = max(self.server_lr_min, self.server_lr * self.backoff)
        client_lr = max(self.client_lr_min, self.client_lr * self.client_lr_decay)
        return replace(self, server_lr=server_lr, client_lr=client_lr, round=self.round + 1)

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """FedAdam's moments (empty for sgd or before the first step)."""
        if self.m is None or self.v is None:
            return {}
        return {"m": self.m.contiguous(), "v": self.v.contiguous()}

    def state_sha256(self) -> str | None:
        tensors = self.state_tensors()
        return hashlib.sha256(save(tensors)).hexdigest() if tensors else None

    def to_report(self) -> dict[str, Any]:
        scalars = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("m", "v")}
        return {**scalars, "state_sha256": self.state_sha256()}

    @classmethod
    def from_report(cls, data: dict[str, Any], tensors: dict[str, torch.Tensor] | None = None) -> HyperParams:
        """Rebuild from `to_report()` output and `state_tensors()`, checking the state's hash."""
        known = {f.name for f in fields(cls)} - {"m", "v"}
        unknown = sorted(set(data) - known - {"state_sha256"})
        if unknown:
            raise AggregatorError(f"unknown hyper-parameters {unknown}")
        tensors = tensors or {}
        params = cls(**{k: v for k, v in data.items() if k in known}, m=tensors.get("m"), v=tensors.get("v"))
        if params.state_sha256() != data.get("state_sha256"):
            raise AggregatorError("hyper-parameter state does not match the hash in the report")
        return params
