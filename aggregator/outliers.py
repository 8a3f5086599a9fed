"""Outlier detection before aggregation: every flag names the trainer, a reason and the numbers behind it.

Checks, in order (a trainer caught by an earlier check is left out of the statistics of the later ones):

1. `invalid`: not a float vector of the model's size, NaN/Inf, or a norm above `max_norm` (garbage that would
   overflow float32 sums). Never raises: the trainer is flagged and the round goes on.
2. `free_rider`: an update norm below `free_rider_ratio` times the median norm (the global model sent back).
3. `sybil_cluster` (off unless `sybil_cosine` is set): groups of updates with pairwise cosine >= `sybil_cosine`
   (near-copies, as in FoolsGold: Fung, Yoon, Beschastnikh 2020, "The Limitations of Federated Learning in Sybil
   Settings", RAID). Flagging them also flags a trainer who was copied; the `near_copies` defense
   (`aggregator.defenses`) counts copies once instead, and is what projects run by default.
4. `distance_outlier`: the distance to a robust center (geometric median, or coordinate-wise median) has a
   modified z-score above `mad_threshold`, with the median absolute deviation as the scale (Iglewicz, Hoaglin
   1993, "How to Detect and Handle Outliers"), floored at `min_scale` times the median distance so a tight
   honest cluster does not turn ordinary spread into outliers.
5. `inconsistent_direction`: the cosine between this round's (sketched) direction and the trainer's own
   running direction from past rounds is below `consistency_threshold` (noise has no memory; honest data
   pulls the same way round after round).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from aggregator.engine import Engine
from aggregator.errors import AggregatorError
from aggregator.history import TrainerHistory, direction_sketch
from aggregator.matrix import DEFAULT_CHUNK, GramStats, UpdateMatrix, gram_stats
from aggregator.rules._order import column_median
from aggregator.rules.geometric_median import weiszfeld

__all__ = [
    "REASONS",
    "Flag",
    "OutlierConfig",
    "OutlierReport",
    "detect_outliers",
    "flag_message",
    "flag_outliers",
]

REASONS = ("invalid", "free_rider", "sybil_cluster", "distance_outlier", "inconsistent_direction")
_CENTERS = ("geometric_median", "coordinate_median")


@dataclass(frozen=True)
class OutlierConfig:
    """Thresholds of the checks above; `to_dict()` goes into the round report."""

    center: str = "geometric_median"
    mad_threshold: float = 3.5
    min_scale: float = 1.0
    min_rows_for_mad: int = 4
    sybil_cosine: float | None = None
    free_rider_ratio: float = 0.05
    max_norm: float = 1e12
    consistency_threshold: float = 0.2
    consistency_min_rounds: int = 1
    history_decay: float = 0.5
    sketch_dim: int = 256
    sketch_seed: int = 0
    chunk: int = DEFAULT_CHUNK

    def __post_init__(self) -> None:
        if self.center not in _CENTERS:
            raise AggregatorError(f"outlier center must be one of {_CENTERS}, got {self.center!r}")
        checks = {
            "mad_threshold": self.mad_threshold > 0,
            "min_scale": self.min_scale >= 0,
            "min_rows_for_mad": self.min_rows_for_mad >= 3,
            "sybil_cosine": self.sybil_cosine is None or 0 < self.sybil_cosine <= 1,
            "free_rider_ratio": 0 <= self.free_rider_ratio < 1,
            "max_norm": self.max_norm > 0,
            "consistency_threshold": -1 <= self.consistency_threshold <= 1,
            "consistency_min_rounds": self.consistency_min_rounds >= 1,
            "history_decay": 0 <= self.history_decay < 1,
            "sketch_dim": self.sketch_dim >= 1,
            "chunk": self.chunk >= 1,
        }
        bad = [
            k
            for k, ok in checks.items()
            if not ok or (getattr(self, k) is not None and not np.isfinite(float(getattr(self, k))))
        ]
        if bad:
            raise AggregatorError(f"bad outlier settings: {', '.join(bad)}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Flag:
    """One reason to leave a trainer's update out, with the figures that triggered it."""

    trainer: str
    reason: str
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class OutlierReport:
    flags: list[Flag]
    stats: dict[str, dict[str, Any]]  # per valid trainer: norm, distance, z-score, cosines
    sketches: dict[str, torch.Tensor]  # per valid trainer, for the history update

    @property
    def flagged(self) -> set[str]:
        return {f.trainer for f in self.flags}


def _row_problem(row: Any, expected_dim: int | None, chunk: int, max_norm: float) -> tuple[str | None, float]:
    """Why a row cannot be used (or None) and its float64 norm, reading it a chunk at a time."""
    if isinstance(row, np.ndarray):
        try:
            row = torch.from_numpy(row)
        except TypeError:
            return f"unsupported array dtype {row.dtype}", 0.0
    if not isinstance(row, torch.Tensor):
        return f"not a tensor ({type(row).__name__})", 0.0
    if not row.is_floating_point():
        return f"expected a float tensor, got {row.dtype}", 0.0
    if row.dim() != 1 or (expected_dim is not None and row.numel() != expected_dim):
        return f"expected shape [{expected_dim}], got {list(row.shape)}", 0.0
    if row.numel() == 0:
        return "empty update", 0.0
    total = 0.0
    for start in range(0, row.numel(), chunk):
        part = row[start : start + chunk].to(torch.float64)
        if not bool(torch.isfinite(part).all()):
            return "contains NaN or Inf", 0.0
        total += float(part.square().sum())
    norm = float(np.sqrt(total))
    if not norm <= max_norm:
        return f"norm {norm:.3g} above the {max_norm:.3g} limit", norm
    return None, norm


def _median(values: torch.Tensor) -> float:
    return float(column_median(torch.sort(values.to(torch.float64)).values[:, None])[0])


def _sybil_clusters(cos: torch.Tensor, members: list[int], threshold: float) -> list[list[int]]:
    """Connected components of the graph `cos >= threshold` among `members`, of size two or more."""
    parent = {i: i for i in members}

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    # Only the pairs above the threshold, found in one vectorized comparison: a Python loop over all n^2 pairs
    # took seconds at a thousand trainers. Components do not depend on the order pairs are joined in.
    index = torch.tensor(members, dtype=torch.long)
    close = torch.triu(cos[index][:, index] >= threshold, diagonal=1)
    for i, j in torch.nonzero(close).tolist():
        a, b = members[i], members[j]
        parent[max(root(a), root(b))] = min(root(a), root(b))
    groups: dict[int, list[int]] = {}
    for i in members:
        groups.setdefault(root(i), []).append(i)
    return [g for g in groups.values() if len(g) > 1]


def _center_geometry(
    matrix: UpdateMatrix, gram: GramStats, candidates: list[int], config: OutlierConfig
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Distances of every row to the robust center of `candidates`, each row's inner product with the
    center, and the center's squared norm."""
    if config.center == "geometric_median":
        sub = gram.subset(candidates)
        coeffs_sub, _ = weiszfeld(
            sub, torch.full((len(candidates),), 1.0 / len(candidates), dtype=torch.float64)
        )
        coeffs = torch.zeros(matrix.n, dtype=torch.float64)
        coeffs[candidates] = coeffs_sub
        raw = gram.raw_gram()
        return gram.sq_distances_to(coeffs).sqrt(), raw @ coeffs, float(coeffs @ raw @ coeffs)
    sq_dist = torch.zeros(matrix.n, dtype=torch.float64)
    dots = torch.zeros(matrix.n, dtype=torch.float64)
    center_sq = 0.0
    for _start, _stop, (part_sq, part_dots, part_center) in matrix.map_chunks(
        _median_geometry, config.chunk, (candidates,)
    ):
        sq_dist += part_sq
        dots += part_dots
        center_sq += part_center
    return sq_dist.sqrt(), dots, center_sq


def _median_geometry(
    block: torch.Tensor, start: int, stop: int, candidates: list[int]
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """One chunk's squared distances and inner products of every row with the candidates' coordinate median."""
    median = column_median(torch.sort(block[candidates], dim=0, stable=True).values)
    return (
        (block - median).double().square().sum(dim=1).cpu(),
        (block.double() @ median.double()).cpu(),
        float(median.double().square().sum()),
    )


def detect_outliers(
    deltas: torch.Tensor | Sequence[Any],
    trainer_ids: Sequence[str],
    history: Mapping[str, TrainerHistory] | None = None,
    *,
    config: OutlierConfig | None = None,
    expected_dim: int | None = None,
    norms: Sequence[float] | None = None,
    engine: Engine | None = None,
) -> OutlierReport:
    """Run every check; see the module docstring. `deltas` is `[n, d]` or one row per trainer (1-D tensors or
    row sources). `norms`, when the caller has already checked every row (`aggregator.rows.row_summary`),
    are their float64 norms and skip check 1; `engine` runs the passes."""
    config = config or OutlierConfig()
    ids = [str(t) for t in trainer_ids]
    rows = list(deltas) if isinstance(deltas, torch.Tensor) and deltas.dim() == 2 else deltas
    if isinstance(rows, torch.Tensor) or len(rows) != len(ids):
        raise AggregatorError(
            f"expected one delta per trainer ({len(ids)}), got {getattr(rows, 'shape', None)}"
        )
    if len(set(ids)) != len(ids):
        raise AggregatorError("trainer ids must be unique")
    if expected_dim is None:
        lengths = [r.numel() for r in rows if isinstance(r, torch.Tensor) and r.dim() == 1]
        expected_dim = max(sorted(set(lengths)), key=lengths.count) if lengths else None
    flags: list[Flag] = []
    if norms is not None:
        if len(norms) != len(ids):
            raise AggregatorError(f"expected one norm per trainer ({len(ids)}), got {len(norms)}")
        valid, norms = list(ids), [float(v) for v in norms]
    else:
        valid, norms = [], []
        for trainer, row in zip(ids, rows, strict=True):
            problem, norm = _row_problem(row, expected_dim, config.chunk, config.max_norm)
            if problem is None:
                valid.append(trainer)
                norms.append(norm)
            else:
                flags.append(Flag(trainer, "invalid", {"error": problem}))
    if not valid:
        return OutlierReport(flags, {}, {})
    matrix = UpdateMatrix([rows[ids.index(t)] for t in valid], device="cpu", engine=engine)
    norm_t = torch.tensor(norms, dtype=torch.float64)
    stats: dict[str, dict[str, Any]] = {t: {"norm": norms[i]} for i, t in enumerate(valid)}

    median_norm = _median(norm_t)
    riders = [i for i, v in enumerate(norms) if v <= config.free_rider_ratio * median_norm]
    for i in riders:
        detail = {"norm": norms[i], "median_norm": median_norm, "ratio": config.free_rider_ratio}
        flags.append(Flag(valid[i], "free_rider", detail))

    gram = gram_stats(matrix, config.chunk)
    raw = gram.raw_gram()
    safe = torch.where(norm_t > 0, norm_t, torch.ones_like(norm_t))
    cos = raw / safe[:, None] / safe[None, :]
    directional = [i for i in range(matrix.n) if i not in riders]
    sybils: set[int] = set()
    clusters = (
        _sybil_clusters(cos, directional, config.sybil_cosine) if config.sybil_cosine is not None else []
    )
    for cluster in clusters:
        names = [valid[i] for i in cluster]
        least = min(float(cos[a, b]) for a in cluster for b in cluster if a != b)
        for i in cluster:
            flags.append(Flag(valid[i], "sybil_cluster", {"cluster": names, "min_cosine": least}))
        sybils.update(cluster)

    candidates = [i for i in directional if i not in sybils]
    if len(candidates) >= config.min_rows_for_mad:
        dist, dots, center_sq = _center_geometry(matrix, gram, candidates, config)
        med = _median(dist[candidates])
        mad = _median((dist[candidates] - med).abs())
        scale = max(1.4826 * mad, config.min_scale * med)
        center_norm = float(np.sqrt(max(center_sq, 0.0)))
        for i, trainer in enumerate(valid):
            z = float((dist[i] - med) / scale) if scale > 0 else 0.0
            cos_center = float(dots[i] / (safe[i] * center_norm)) if center_norm > 0 else 0.0
            stats[trainer].update({"distance": float(dist[i]), "z_score": z, "cosine_to_center": cos_center})
            if i in candidates and scale > 0 and z > config.mad_threshold:
                detail = {"distance": float(dist[i]), "median": med, "scale": scale, "z_score": z}
                flags.append(Flag(trainer, "distance_outlier", {**detail, "center": config.center}))

    sketch = direction_sketch(matrix, config.sketch_dim, config.sketch_seed)
    sketches = {t: sketch[i] for i, t in enumerate(valid)}
    for i, trainer in enumerate(valid):
        past = (history or {}).get(trainer)
        norm = float(sketch[i].norm())
        if past is None or past.rounds < config.consistency_min_rounds or norm == 0.0:
            continue
        if len(past.direction) != config.sketch_dim:
            raise AggregatorError(
                f"history of {trainer} has {len(past.direction)} dims, not {config.sketch_dim}"
            )
        similarity = float(sketch[i] @ past.tensor() / (norm * float(past.tensor().norm())))
        stats[trainer]["self_consistency"] = similarity
        if similarity < config.consistency_threshold:
            detail = {"cosine": similarity, "threshold": config.consistency_threshold, "rounds": past.rounds}
            flags.append(Flag(trainer, "inconsistent_direction", detail))

    order = {t: i for i, t in enumerate(ids)}
    flags.sort(key=lambda f: (order[f.trainer], REASONS.index(f.reason)))
    return OutlierReport(flags, stats, sketches)


def flag_message(reason: str, detail: Mapping[str, Any]) -> str:
    """A flag in words the explorer can show: what was wrong, with the figures that showed it."""
    d = dict(detail)
    if reason == "invalid":
        return f"the update could not be used: {d.get('error', 'invalid')}"
    if reason == "free_rider":
        median = float(d.get("median_norm", 0) or 0)
        size = f"{float(d.get('norm', 0)) / median:.2g}x the median norm" if median > 0 else "almost zero"
        return (
            f"its update is almost empty: {size} (norm {d.get('norm', 0):.3g}, below the "
            f"{d.get('ratio', 0):g}x limit), as if the global model were sent back"
        )
    if reason == "sybil_cluster":
        return f"a near-copy of {len(d.get('cluster', [])) - 1} other update(s) (cosine {d.get('min_cosine', 0):.3f})"
    if reason == "distance_outlier":
        return (
            f"far from the others: distance {d.get('distance', 0):.3g} to their robust centre, "
            f"{d.get('z_score', 0):.1f} robust deviations above the median {d.get('median', 0):.3g}"
        )
    if reason == "inconsistent_direction":
        return (
            f"its direction does not follow its own past updates (cosine {d.get('cosine', 0):.2f} with its "
            f"running direction over {d.get('rounds', 0)} rounds, below {d.get('threshold', 0):g})"
        )
    return reason.replace("_", " ")


def flag_outliers(
    deltas: torch.Tensor | Sequence[Any],
    trainer_ids: Sequence[str],
    history: Mapping[str, TrainerHistory] | None = None,
    *,
    config: OutlierConfig | None = None,
    expected_dim: int | None = None,
) -> list[Flag]:
    """The flags of `detect_outliers`: one per (trainer, reason), in trainer order."""
    return detect_outliers(deltas, trainer_ids, history, config=config, expected_dim=expected_dim).flags
