"""Bucketing.

Karimireddy, He, Jaggi 2022, "Byzantine-Robust Learning on Heterogeneous Datasets via Bucketing" (ICLR). The
active rows are shuffled (a permutation seeded by the round) and averaged in buckets of `s`; the rule then
aggregates the bucket means. Averaging shrinks the honest spread under heterogeneous data, at the price of
letting each attacker contaminate one bucket.
"""

from __future__ import annotations

from typing import Any

import torch

from aggregator.defenses.base import Defense, DefenseContext, DefenseStep, RowMix, check_count

__all__ = ["Bucketing"]


class Bucketing(Defense):
    """Average the active rows in seeded random buckets of `s` (the last bucket may be smaller); a bucket's
    weight is its members' total, its row their weighted mean."""

    name = "bucketing"

    def __init__(self, s: int = 2) -> None:
        self.s = check_count(self.name, "s", s, 1)

    def params(self) -> dict[str, Any]:
        return {"s": self.s}

    def apply(self, rows: RowMix, context: DefenseContext) -> DefenseStep:
        active = rows.active()
        gen = torch.Generator().manual_seed(context.seed)
        order = [active[i] for i in torch.randperm(len(active), generator=gen).tolist()]
        buckets = [order[i : i + self.s] for i in range(0, len(order), self.s)]
        mix = torch.zeros(len(buckets), rows.mix.shape[1], dtype=torch.float64)
        weights = torch.zeros(len(buckets), dtype=torch.float64)
        for b, members in enumerate(buckets):
            w = rows.weights[members]
            mix[b] = (w / w.sum()) @ rows.mix[members]
            weights[b] = w.sum()
        return DefenseStep(RowMix(mix, weights), details={"buckets": buckets})
