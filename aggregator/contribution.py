"""How much each trainer's update was worth this round, measured on the owner's validation set.

Players are the round's unflagged trainers. The utility of a subset S is a validation score of
`global + mean_{i in S} delta_i` from the round's evaluator: the negative task loss (`neg_loss`: cross-entropy or
MSE), the task's metric (`metric`: accuracy, or R-squared), or `accuracy` for classification tasks; the model FedAvg over S would produce; the
empty set is the global model itself. Nothing is retrained: every subset model comes from the submitted deltas.

- `leave_one_out`: `U(N) - U(N \\ {i})`.
- `gtg_shapley`: Liu, Lv, Yang, Yu, Zhang, Chen, Ng 2022, "GTG-Shapley: Efficient and Accurate Participant
  Contribution Evaluation in Federated Learning" (ACM TIST): Monte Carlo Shapley over permutations, with
  between-round truncation (a round that barely moved the utility gives everyone 0), within-round truncation
  (once a prefix is within `truncation` of the full gain, later marginals are 0), guided sampling (each player
  leads the permutation in turn) and a convergence test, under a permutation budget and a seed.
- `similarity_scores`: the cosine of each delta with the round's aggregate, clipped at 0 (cheap, no model).

`contribution_scores` turns the chosen valuation into the round's scores: negative values become 0, flagged and
invalid submitters get 0, the rest is normalised to sum to 1 over every submitter. If every value is 0 (a round
that did not help), the similarity signal decides; if that is 0 too, the unflagged players share equally.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from aggregator.errors import AggregatorError
from aggregator.evaluation import Evaluator

__all__ = [
    "METHODS",
    "ContributionConfig",
    "ContributionResult",
    "SubsetUtility",
    "contribution_scores",
    "gtg_shapley",
    "leave_one_out",
    "similarity_scores",
]

METHODS = ("gtg_shapley", "leave_one_out", "similarity")
UTILITIES = ("accuracy", "metric", "neg_loss")

Utility = Callable[[Sequence[int]], float]


@dataclass(frozen=True)
class ContributionConfig:
    method: str = "gtg_shapley"
    utility: str = "neg_loss"
    max_permutations: int = 100
    seed: int = 0
    round_truncation: float = 1e-4  # |U(N) - U(empty)| below this: nobody gets credit from the valuation
    truncation: float = 0.01  # relative to the round's gain
    convergence: float = 0.01  # mean relative change of the estimates over one window of permutations

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise AggregatorError(f"contribution method must be one of {METHODS}, got {self.method!r}")
        if self.utility not in UTILITIES:
            raise AggregatorError(f"contribution utility must be one of {UTILITIES}, got {self.utility!r}")
        if self.max_permutations < 1:
            raise AggregatorError(f"max_permutations must be positive, got {self.max_permutations}")
        for name in ("round_truncation", "truncation", "convergence"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value >= 0):
                raise AggregatorError(f"{name} must be finite and non-negative, got {value}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class SubsetUtility:
    """`U(S)` for subsets of the players' deltas, cached (a permutation walk revisits no subset twice, but
    leave-one-out and the full set recur across methods)."""

    def __init__(
        self,
        evaluator: Evaluator,
        global_flat: torch.Tensor,
        deltas: torch.Tensor,
        metric: str = "neg_loss",
    ) -> None:
        if metric not in UTILITIES:
            raise AggregatorError(f"utility must be one of {UTILITIES}, got {metric!r}")
        if metric == "accuracy" and not evaluator.task.classifies:
            raise AggregatorError(
                f"utility 'accuracy' needs a classification task, not {evaluator.task.name}"
            )
        if deltas.dim() != 2 or deltas.shape[1] != global_flat.numel():
            raise AggregatorError(
                f"deltas {list(deltas.shape)} do not match the model ({global_flat.numel()})"
            )
        self.evaluator = evaluator
        self.metric = evaluator.task.metric if metric == "metric" else metric
        self.global_flat = global_flat.to(torch.float64)
        self.deltas = deltas.to(torch.float64)
        self.calls = 0
        self._cache: dict[tuple[int, ...], float] = {}

    @property
    def n(self) -> int:
        return int(self.deltas.shape[0])

    def __call__(self, subset: Sequence[int]) -> float:
        key = tuple(sorted(subset))
        if key not in self._cache:
            self.calls += 1
            flat = self.global_flat
            if key:
                flat = flat + self.deltas[list(key)].mean(dim=0)
            result = self.evaluator.evaluate(flat.to(torch.float32))
            self._cache[key] = -result["loss"] if self.metric == "neg_loss" else result[self.metric]
        return self._cache[key]


def leave_one_out(utility: Utility, n: int) -> np.ndarray:
    """`U(N) - U(N \\ {i})` for every player (float64, may be negative)."""
    everyone = list(range(n))
    full = utility(everyone)
    return np.array([full - utility([j for j in everyone if j != i]) for i in range(n)], dtype=np.float64)


def gtg_shapley(
    utility: Utility,
    n: int,
    *,
    max_permutations: int = 100,
    seed: int = 0,
    round_truncation: float = 1e-4,
    truncation: float = 0.01,
    convergence: float = 0.01,
) -> tuple[np.ndarray, dict[str, Any]]:
    """GTG-Shapley estimates (float64 `[n]`, may be negative) and how the estimate ended."""
    empty, full = utility([]), utility(list(range(n)))
    gain = full - empty
    if abs(gain) < round_truncation:
        return np.zeros(n), {"permutations": 0, "truncated_round": True, "converged": True, "gain": gain}
    rng = np.random.default_rng(seed)
    values = np.zeros(n, dtype=np.float64)
    window = max(n, 10)
    snapshots: list[np.ndarray] = []
    converged = False
    k = 0
    while k < max_permutations and not converged:
        k += 1
        # Guided sampling: player (k-1) mod n leads, the others follow in random order.
        lead = (k - 1) % n
        rest = rng.permutation([i for i in range(n) if i != lead])
        order = [lead, *rest.tolist()]
        previous, prefix = empty, []
        for player in order:
            prefix.append(player)
            # Within-round truncation: once the prefix is this close to the full gain, the rest adds nothing.
            current = previous if abs(full - previous) < truncation * abs(gain) else utility(prefix)
            values[player] += (current - previous - values[player]) / k
            previous = current
        snapshots.append(values.copy())
        if k >= 2 * window:
            old = snapshots[-1 - window]
            # Relative L1 change over the last window: near-zero values do not stall the test.
            converged = bool(np.abs(values - old).sum() <= convergence * max(np.abs(values).sum(), 1e-300))
    return values, {"permutations": k, "truncated_round": False, "converged": converged, "gain": gain}


def similarity_scores(deltas: torch.Tensor, aggregate: torch.Tensor) -> np.ndarray:
    """Cosine of each delta `[n, d]` with the aggregate `[d]`, clipped at 0 (float64 `[n]`)."""
    if deltas.dim() != 2 or aggregate.dim() != 1 or deltas.shape[1] != aggregate.numel():
        raise AggregatorError(f"shapes {list(deltas.shape)} and {list(aggregate.shape)} do not match")
    d64, a64 = deltas.to(torch.float64), aggregate.to(torch.float64)
    norms = d64.norm(dim=1) * a64.norm()
    cos = torch.where(norms > 0, (d64 @ a64) / norms.clamp_min(1e-300), torch.zeros_like(norms))
    return cos.clamp_min(0.0).numpy()


@dataclass(frozen=True)
class ContributionResult:
    scores: dict[str, float]  # every submitter, float64 >= 0, summing to 1
    values: dict[str, float]  # the valuation of each player before clipping and normalising
    basis: str  # the method that decided, or "similarity_fallback" / "uniform_fallback"
    details: dict[str, Any]


def contribution_scores(
    players: Sequence[str],
    submitters: Sequence[str],
    *,
    utility: SubsetUtility,
    aggregate: torch.Tensor,
    config: ContributionConfig | None = None,
) -> ContributionResult:
    """Scores for every submitter (see the module docstring); `players` are the unflagged ones, in the row
    order of `utility.deltas`."""
    config = config or ContributionConfig()
    if len(players) != utility.n or len(set(players)) != len(players):
        raise AggregatorError("players must be unique and match the utility's rows")
    if not set(players) <= set(submitters):
        raise AggregatorError("every player must be a submitter")
    if not players:
        raise AggregatorError("no unflagged submitter to score")
    n = len(players)
    details: dict[str, Any] = {}
    if config.method == "gtg_shapley":
        raw, details = gtg_shapley(
            utility,
            n,
            max_permutations=config.max_permutations,
            seed=config.seed,
            round_truncation=config.round_truncation,
            truncation=config.truncation,
            convergence=config.convergence,
        )
    elif config.method == "leave_one_out":
        raw = leave_one_out(utility, n)
    else:
        raw = similarity_scores(utility.deltas, aggregate)
    details["utility_evaluations"] = utility.calls
    positive, basis = np.clip(raw, 0.0, None), config.method
    if positive.sum() <= 0.0:
        positive, basis = similarity_scores(utility.deltas, aggregate), "similarity_fallback"
    if positive.sum() <= 0.0:
        positive, basis = np.ones(n), "uniform_fallback"
    shares = positive / positive.sum()
    scores = {s: 0.0 for s in sorted(submitters)}
    scores.update({p: float(v) for p, v in zip(players, shares, strict=True)})
    values = {p: float(v) for p, v in zip(players, raw, strict=True)}
    return ContributionResult(scores, values, basis, details)
