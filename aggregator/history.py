"""Compact cross-round memory of each trainer's update direction.

A count sketch (Charikar, Chen, Farach-Colton 2002, "Finding Frequent Items in Data Streams") maps a
`d`-dimensional delta to `dim` buckets with random signs; inner products, and so cosines, are preserved in
expectation. Each trainer's history is the unit-norm running mean of its sketched directions: a few hundred
floats whatever the model size, small enough to persist in the round report and feed the next round.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from aggregator.errors import AggregatorError
from aggregator.matrix import UpdateMatrix

__all__ = ["SKETCH_BLOCK", "TrainerHistory", "direction_sketch", "history_from_report", "update_history"]

# Hashes are drawn per fixed block of columns, so a column's bucket never depends on how a pass is chunked.
SKETCH_BLOCK = 1 << 16


def direction_sketch(matrix: UpdateMatrix, dim: int = 256, seed: int = 0) -> torch.Tensor:
    """Count sketch `[n, dim]` (float64) of every row; one pass over the columns."""
    if dim < 1:
        raise AggregatorError(f"sketch dimension must be positive, got {dim}")
    out = torch.zeros(matrix.n, dim, dtype=torch.float64)
    for _start, _stop, part in matrix.map_chunks(_sketch_part, SKETCH_BLOCK, (dim, seed)):
        out += part
    return out


def _sketch_part(block: torch.Tensor, start: int, stop: int, dim: int, seed: int) -> torch.Tensor:
    """One block's count sketch `[n, dim]`: the hashes depend on the block's index only."""
    gen = torch.Generator().manual_seed((seed << 32) + start // SKETCH_BLOCK)
    buckets = torch.randint(dim, (stop - start,), generator=gen)
    signs = torch.randint(0, 2, (stop - start,), generator=gen).to(torch.float64) * 2.0 - 1.0
    return torch.zeros(block.shape[0], dim, dtype=torch.float64).index_add_(
        1, buckets, block.cpu().to(torch.float64) * signs
    )


@dataclass(frozen=True)
class TrainerHistory:
    """How many rounds a trainer's direction has been seen, and its unit-norm running mean sketch."""

    rounds: int
    direction: tuple[float, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"rounds": self.rounds, "direction": list(self.direction)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainerHistory:
        try:
            rounds, direction = int(data["rounds"]), tuple(float(x) for x in data["direction"])
        except (KeyError, TypeError, ValueError) as exc:
            raise AggregatorError(f"bad trainer history entry: {exc}") from None
        if rounds < 0 or not direction or not all(math.isfinite(x) for x in direction):
            raise AggregatorError(
                "bad trainer history entry: negative rounds or empty / non-finite direction"
            )
        return cls(rounds, direction)

    def tensor(self) -> torch.Tensor:
        return torch.tensor(self.direction, dtype=torch.float64)


def _unit(v: torch.Tensor) -> torch.Tensor:
    norm = float(v.norm())
    return v / norm if norm > 0 else v


def update_history(
    history: Mapping[str, TrainerHistory], sketches: Mapping[str, torch.Tensor], decay: float = 0.5
) -> dict[str, TrainerHistory]:
    """Fold this round's sketches in: `direction <- unit(decay * direction + (1 - decay) * unit(sketch))`.

    Trainers without a usable sketch this round (zero update) keep their history unchanged.
    """
    if not 0.0 <= decay < 1.0:
        raise AggregatorError(f"history decay must be in [0, 1), got {decay}")
    out = dict(history)
    for trainer, sketch in sketches.items():
        if float(sketch.norm()) == 0.0:
            continue
        past = history.get(trainer)
        if past is None or past.rounds == 0 or len(past.direction) != sketch.numel():
            new, rounds = _unit(sketch), 1
        else:
            new, rounds = _unit(decay * past.tensor() + (1.0 - decay) * _unit(sketch)), past.rounds + 1
        out[trainer] = TrainerHistory(rounds, tuple(float(x) for x in new))
    return dict(sorted(out.items()))


def history_from_report(data: Mapping[str, Any]) -> dict[str, TrainerHistory]:
    """Histories from a whole round report (its `"history"` entry) or from that entry itself
    (`{trainer: {"rounds": k, "direction": [...]}}`)."""
    if "version" in data and isinstance(data.get("history"), Mapping):
        data = data["history"]
    return {str(k): TrainerHistory.from_dict(v) for k, v in sorted(data.items())}
