"""Near-copies count once.

Colluders that craft one update and jitter it, or copy an honest trainer (Mimic), send updates that sit much
closer to each other than any two trainers with their own data do: in a federation of 20 on digits (Dirichlet
0.5 shards), no two honest updates are nearer than ~0.45 times the median distance between updates (IID shards:
~0.6; Dirichlet 0.1: ~0.25), while copies jittered by 20% of their norm sit at ~0.15-0.2 after the first rounds.
The median over all pairs stays an honest figure as long as no group holds more than about a quarter of the
rows. Rows joined by such near pairs (or by a cosine of at least `cosine`) form a group, and a group is one
source:

- exact copies (identical up to float rounding) cannot be told apart by their values. When the round knows the
  order of submission, the first is the original (copying needs a submission to copy) and keeps its row; the
  later ones are left out. Otherwise they are averaged into one row with one member's weight and share it;
- jittered copies of one member (Mimic with noise): the member the others scatter around is the original
  (its distance to the other members' mean is under `center` times theirs; noise in many dimensions has
  nearly the same length every time, so only an original sits that close). It keeps its row; the copies are
  left out;
- jittered copies with no original among them (a crafted update sent by all colluders): the group is averaged
  into one row whose weight is one member's divided by the group size, since none of them sent its own work.
  Two rows are never judged so: with two, neither is the centre, and honest twins get one row between them.

Nobody is flagged: a copied honest trainer cannot be told from its copiers by the updates alone (sealed
submissions stop copying in the first place). The idea of down-weighting mutually similar updates is
FoolsGold's (Fung, Yoon, Beschastnikh 2020, "The Limitations of Federated Learning in Sybil Settings", RAID);
the relative distance test and the authorship rule are ours.
"""

from __future__ import annotations

from typing import Any

import torch

from aggregator.defenses.base import Defense, DefenseContext, DefenseStep, Rejection, RowMix, check_positive
from aggregator.errors import AggregatorError

__all__ = ["NearCopies", "near_copy_groups"]

# Float32 rounding of equal updates: distances below this fraction of the norm are the same update.
# Equal rows, as the Gram tells them: float32 products put a distance of up to ~sqrt(eps32) (3e-4) of the norm
# between two copies of one row (a BLAS kernel need not sum x.x and x.y in one order); jitter is far above this.
_EXACT = 2e-3


def _sources(rows: RowMix, k: int) -> list[int]:
    return torch.nonzero(rows.mix[k]).flatten().tolist()


def _components(m: int, near: torch.Tensor) -> list[list[int]]:
    parent = list(range(m))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a in range(m):
        for b in range(a + 1, m):
            if bool(near[a, b]):
                ra, rb = root(a), root(b)
                parent[max(ra, rb)] = min(ra, rb)
    groups: dict[int, list[int]] = {}
    for i in range(m):
        groups.setdefault(root(i), []).append(i)
    return [g for g in groups.values() if len(g) > 1]


def near_copy_groups(
    sq_dist: torch.Tensor, cos: torch.Tensor, ratio: float, cosine: float
) -> list[list[int]]:
    """Connected groups (two or more rows) of pairs nearer than `ratio` times the median distance between two
    rows, or with a cosine of at least `cosine`."""
    m = sq_dist.shape[0]
    if m < 2:
        return []
    dist = sq_dist.clamp_min(0.0).sqrt()
    upper = torch.triu_indices(m, m, 1)
    pairs = torch.sort(dist[upper[0], upper[1]]).values
    typical = float(pairs[(pairs.numel() - 1) // 2])
    near = (dist <= ratio * typical) | (cos >= cosine)
    near.fill_diagonal_(False)
    return _components(m, near)


class NearCopies(Defense):
    """See the module docstring: `ratio` is the near-pair distance relative to the median distance between
    rows, `cosine` a cosine that always makes a pair, `center` the original's distance test."""

    name = "near_copies"

    def __init__(self, ratio: float = 0.3, cosine: float = 0.99, center: float = 0.75) -> None:
        self.ratio = check_positive(self.name, "ratio", ratio)
        self.cosine = check_positive(self.name, "cosine", cosine)
        self.center = check_positive(self.name, "center", center)
        if self.ratio >= 1.0 or self.cosine > 1.0 or self.center >= 1.0:
            raise AggregatorError(f"{self.name}: ratio and center must be below 1, cosine at most 1")

    def params(self) -> dict[str, Any]:
        return {"center": self.center, "cosine": self.cosine, "ratio": self.ratio}

    def apply(self, rows: RowMix, context: DefenseContext) -> DefenseStep:
        active = rows.active()
        if len(active) < 2:
            return DefenseStep(rows, details={"groups": []})
        sub = RowMix(rows.mix[active], rows.weights[active])
        raw = sub.raw_gram(context.gram)
        norms = torch.diagonal(raw).clamp_min(0.0).sqrt()
        safe = torch.where(norms > 0, norms, torch.ones_like(norms))
        sq_dist = sub.sq_distances(context.gram)
        groups = near_copy_groups(sq_dist, raw / safe[:, None] / safe[None, :], self.ratio, self.cosine)
        mix, weights = rows.mix.clone(), rows.weights.clone()
        merged_mix, merged_weights = [], []
        rejected: list[Rejection] = []
        found, shared = [], []
        for local in groups:
            members = [active[i] for i in local]
            spread = float(sq_dist[local][:, local].max().sqrt())
            verdict, keep = self._judge(sq_dist, local, spread <= _EXACT * float(norms[local].max()))
            order = context.order
            if verdict == "exact" and order is not None:
                first = min(local, key=lambda i: min(order[j] for j in _sources(rows, active[i])))
                verdict, keep = "first_submitted", first
            submitted = sorted(j for k in members for j in torch.nonzero(rows.mix[k]).flatten().tolist())
            found.append({"members": submitted, "verdict": verdict})
            weights[members] = 0.0
            if keep is not None:
                original = active[keep]
                weights[original] = rows.weights[original]
                source = torch.nonzero(rows.mix[original]).flatten().tolist()
                for k in members:
                    if k == original:
                        continue
                    reason = (
                        "an exact copy of an update submitted earlier"
                        if verdict == "first_submitted"
                        else "a near-copy of another trainer's update (it scatters around that update)"
                    )
                    rejected.extend(
                        Rejection(j, self.name, reason, {"copy_of_rows": source})
                        for j in torch.nonzero(rows.mix[k]).flatten().tolist()
                    )
                continue
            w = rows.weights[members]
            merged_mix.append((w / w.sum()) @ rows.mix[members])
            share = 1.0 if verdict != "no_original" else 1.0 / len(members)
            merged_weights.append(w.mean() * share)
            shared.append(tuple(submitted))
        if merged_mix:
            mix = torch.cat([mix, torch.stack(merged_mix)])
            weights = torch.cat([weights, torch.stack(merged_weights).to(torch.float64)])
        return DefenseStep(RowMix(mix, weights), tuple(rejected), {"groups": found}, groups=tuple(shared))

    def _judge(self, sq_dist: torch.Tensor, local: list[int], exact: bool) -> tuple[str, int | None]:
        """("exact" | "original" | "no_original" | "pair", the original's local index or None)."""
        if exact:
            return "exact", None
        if len(local) < 3:
            return "pair", None
        k = len(local)
        d = sq_dist[local][:, local]
        # Each member's squared distance to the mean of the others, from the pairwise distances.
        to_others = torch.empty(k, dtype=torch.float64)
        for a in range(k):
            rest = [b for b in range(k) if b != a]
            inner = d[rest][:, rest].sum() / (2 * len(rest) ** 2)
            to_others[a] = d[a, rest].mean() - inner
        dist = to_others.clamp_min(0.0).sqrt()
        best = int(torch.sort(dist, stable=True).indices[0])
        others = torch.cat([dist[:best], dist[best + 1 :]])
        if float(dist[best]) <= self.center * float(others.median()):
            return "original", local[best]
        return "no_original", None
