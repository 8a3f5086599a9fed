"""`Examples`: a labelled data set as models consume it, after the project's data schema has checked it.

Either feature tensors (`features`, float32 `[m, *feature_shape]`) or texts (`texts`, m strings), and `targets`:
int64 class indices for classification, float32 values for regression.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from aggregator.errors import AggregatorError

__all__ = ["Examples"]


@dataclass(frozen=True)
class Examples:
    targets: torch.Tensor
    features: torch.Tensor | None = None
    texts: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if (self.features is None) == (self.texts is None):
            raise AggregatorError("examples hold either feature tensors or texts")
        if self.targets.dim() != 1:
            raise AggregatorError(f"targets must be 1-D, got shape {list(self.targets.shape)}")
        m = len(self.texts) if self.texts is not None else int(self.features.shape[0])  # type: ignore[union-attr]
        if m != self.targets.shape[0]:
            raise AggregatorError(f"{m} examples but {self.targets.shape[0]} targets")
        if m == 0:
            raise AggregatorError("no examples")

    def __len__(self) -> int:
        return int(self.targets.shape[0])

    @property
    def kind(self) -> str:
        return "text" if self.texts is not None else "tensor"

    def subset(self, index: Sequence[int] | torch.Tensor) -> Examples:
        idx = torch.as_tensor(index, dtype=torch.int64)
        if self.texts is not None:
            return Examples(self.targets[idx], texts=tuple(self.texts[i] for i in idx.tolist()))
        assert self.features is not None
        return Examples(self.targets[idx], features=self.features[idx])
