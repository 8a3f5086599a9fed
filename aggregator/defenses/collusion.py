"""Colluders who push one shared objective: groups whose deviations from the consensus point the same way.

Honest trainers deviate from the round's consensus in the direction of their own data, so their deviations are
close to independent: on non-IID digits (20 trainers, Dirichlet 0.5) no honest update has two others whose
deviation has a cosine above ~0.42 with its own. Colluders that share a goal (a backdoor trigger, a crafted
direction) add the same component to honest-looking training, and their deviations line up (cosines of 0.5 to
0.7 within a few rounds of a model-replacement backdoor scaled to the honest norm). A row with at least
`min_group - 1` others whose deviation cosine with its own reaches `cosine`, connected into a group of at least
`min_group` such rows, is left out of this round's aggregate (and so paid nothing) with the group named; it is
not flagged, since a few honest trainers with near-identical data can look the same.

The consensus is the geometric median of the rows (Weiszfeld on the Gram matrix), so deviations, like every
other figure here, come from the Gram matrix without a pass over the data. The signal is FoolsGold's (Fung,
Yoon, Beschastnikh 2020, "The Limitations of Federated Learning in Sybil Settings", RAID: Sybils sharing an
objective look alike) applied to deviations, as Divide-and-Conquer does with their top singular direction
(Shejwalkar, Houmansadr 2021, NDSS).
"""

from __future__ import annotations

from typing import Any

import torch

from aggregator.defenses.base import (
    Defense,
    DefenseContext,
    DefenseStep,
    Rejection,
    RowMix,
    check_count,
    check_positive,
)
from aggregator.errors import AggregatorError
from aggregator.rules.geometric_median import weiszfeld

__all__ = ["SharedDeviation", "deviation_cosines"]


def deviation_cosines(rows: RowMix, context: DefenseContext) -> torch.Tensor:
    """Cosines `[m, m]` between the rows' deviations from their geometric median (0 for a row at the centre)."""
    stats = rows.gram_stats(context.gram)
    m = rows.m
    coeffs, _ = weiszfeld(stats, torch.full((m,), 1.0 / m, dtype=torch.float64))
    raw = stats.raw_gram()
    towards = raw @ coeffs
    centered = raw - towards[:, None] - towards[None, :] + coeffs @ raw @ coeffs
    norms = torch.diagonal(centered).clamp_min(0.0).sqrt()
    safe = torch.where(norms > 0, norms, torch.ones_like(norms))
    cos = (centered / safe[:, None] / safe[None, :]).clamp(-1.0, 1.0)
    cos[norms == 0, :] = 0.0
    cos[:, norms == 0] = 0.0
    return cos


class SharedDeviation(Defense):
    """Leave out groups of at least `min_group` rows whose deviations share a direction (see the module
    docstring)."""

    name = "shared_deviation"

    def __init__(self, cosine: float = 0.45, min_group: int = 3) -> None:
        self.cosine = check_positive(self.name, "cosine", cosine)
        if self.cosine > 1.0:
            raise AggregatorError(f"{self.name}: cosine must be at most 1, got {cosine!r}")
        self.min_group = check_count(self.name, "min_group", min_group, 2)

    def params(self) -> dict[str, Any]:
        return {"cosine": self.cosine, "min_group": self.min_group}

    def apply(self, rows: RowMix, context: DefenseContext) -> DefenseStep:
        active = rows.active()
        if len(active) <= self.min_group:
            return DefenseStep(rows, details={"groups": []})
        sub = RowMix(rows.mix[active], rows.weights[active])
        cos = deviation_cosines(sub, context)
        cos.fill_diagonal_(-1.0)
        strong = cos >= self.cosine
        candidates = [i for i in range(len(active)) if int(strong[i].sum()) >= self.min_group - 1]
        groups, seen = [], set()
        for start in candidates:
            if start in seen:
                continue
            stack, group = [start], []
            while stack:
                a = stack.pop()
                if a in seen:
                    continue
                seen.add(a)
                group.append(a)
                stack.extend(b for b in candidates if bool(strong[a, b]) and b not in seen)
            if len(group) >= self.min_group:
                groups.append(sorted(group))
        # Never leave out a majority: then the "consensus" itself is what these rows agree on.
        if sum(len(g) for g in groups) * 2 >= len(active):
            return DefenseStep(rows, details={"groups": [], "majority_kept": True})
        weights = rows.weights.clone()
        rejected: list[Rejection] = []
        found = []
        for group in groups:
            members = [active[i] for i in group]
            submitted = sorted(j for k in members for j in torch.nonzero(rows.mix[k]).flatten().tolist())
            least = min(float(cos[a, b]) for a in group for b in group if a != b)
            found.append({"members": submitted, "min_cosine": least})
            reason = (
                f"its deviation from the consensus points the same way as {len(group) - 1} other updates' "
                f"(cosine {least:.2f} or more): a coordinated group"
            )
            for k in members:
                weights[k] = 0.0
                rejected.extend(
                    Rejection(j, self.name, reason, {"group_rows": submitted, "min_cosine": least})
                    for j in torch.nonzero(rows.mix[k]).flatten().tolist()
                )
        return DefenseStep(RowMix(rows.mix, weights), tuple(rejected), {"groups": found})
