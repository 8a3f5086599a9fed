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

Subset models are built from the deltas a column chunk at a time (`SubsetUtility`), so valuation needs a few
model copies of memory whatever the number of players; Shapley permutations and leave-one-out models run as
parallel tasks on the round's engine, and are folded in a fixed order.

`contribution_scores` turns the chosen valuation into the round's scores: negative values become 0, flagged and
invalid submitters get 0, the rest is normalised to sum to 1 over every submitter. If every value is 0 (a round
that did not help), the similarity signal decides; if that is 0 too, the unflagged players share equally.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any

import numpy as np
import torch

from aggregator.engine import LOCAL, Engine, run_chunks
from aggregator.errors import AggregatorError
from aggregator.evaluation import Evaluator
from aggregator.matrix import DEFAULT_CHUNK, UpdateMatrix, check_chunk

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
    """`U(S)` for subsets of the players' deltas, built from the rows of an `UpdateMatrix` a column chunk at a
    time (the deltas are never stacked in memory) and valued by the round's `Evaluator`.

    A subset model is `global + (sum_{i in S} delta_i) / |S|`, the sum in float64. Each way of forming subsets
    fixes its summation order, so a value never depends on the engine, the chunking or the cache:
    `utility(S)` adds rows in index order; a Shapley permutation adds them in the permutation's order (its
    prefix sums grow by one row per step: one row read per subset); leave-one-out models are the full sum minus
    one row. Values are cached by that order.
    """

    def __init__(
        self,
        evaluator: Evaluator,
        global_flat: torch.Tensor,
        deltas: UpdateMatrix | torch.Tensor,
        metric: str = "neg_loss",
        *,
        chunk: int = DEFAULT_CHUNK,
    ) -> None:
        if metric not in UTILITIES:
            raise AggregatorError(f"utility must be one of {UTILITIES}, got {metric!r}")
        if metric == "accuracy" and not evaluator.task.classifies:
            raise AggregatorError(
                f"utility 'accuracy' needs a classification task, not {evaluator.task.name}"
            )
        matrix = deltas if isinstance(deltas, UpdateMatrix) else UpdateMatrix(deltas)
        if matrix.d != global_flat.numel() or global_flat.dim() != 1:
            raise AggregatorError(
                f"deltas [{matrix.n}, {matrix.d}] do not match the model ({global_flat.numel()})"
            )
        self.evaluator, self.chunk = evaluator, check_chunk(chunk)
        self.metric = evaluator.task.metric if metric == "metric" else metric
        self.global_flat = global_flat.detach().to(torch.float32)
        self.matrix = matrix
        self.calls = 0
        self._cache: dict[tuple[Any, ...], float] = {}

    @property
    def n(self) -> int:
        return self.matrix.n

    @property
    def engine(self) -> Engine:
        return self.matrix.engine

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_cache": {}, "calls": 0}  # a worker starts with its own cache

    def value(self, flat: torch.Tensor) -> float:
        result = self.evaluator.evaluate(flat)
        return -result["loss"] if self.metric == "neg_loss" else result[self.metric]

    def _cached(self, key: tuple[Any, ...], build: Callable[[], torch.Tensor]) -> float:
        if key not in self._cache:
            self.calls += 1
            self._cache[key] = self.value(build())
        return self._cache[key]

    def __call__(self, subset: Sequence[int]) -> float:
        key = tuple(sorted(subset))
        return self._cached(("set", *key), lambda: self._subset_model(key))

    def _subset_model(self, rows: Sequence[int]) -> torch.Tensor:
        if not rows:
            return self.global_flat
        model = torch.empty_like(self.global_flat)
        for start, stop, block in run_chunks(self.matrix.subset(rows), _identity, self.chunk):
            model[start:stop] = self._mix(start, stop, _sum_rows(block), len(rows))
        return model

    def _mix(self, start: int, stop: int, total: torch.Tensor, k: int) -> torch.Tensor:
        return (self.global_flat[start:stop].to(torch.float64) + total / k).to(torch.float32)

    def _model_from_sum(self, total: torch.Tensor, k: int) -> torch.Tensor:
        """`global + total / k` a chunk at a time: whole-model float64 temporaries would be three more copies."""
        model = torch.empty_like(self.global_flat)
        for start in range(0, self.matrix.d, self.chunk):
            stop = min(start + self.chunk, self.matrix.d)
            model[start:stop] = self._mix(start, stop, total[start:stop], k)
        return model

    def row_sum(self) -> torch.Tensor:
        """The float64 sum of every row, in index order (`[d]`)."""
        total = torch.empty(self.matrix.d, dtype=torch.float64)
        for start, stop, block in run_chunks(self.matrix, _identity, self.chunk):
            total[start:stop] = _sum_rows(block)
        return total

    def full_value(self, total: torch.Tensor) -> float:
        """`U(N)` from the row sum: the same bits as `utility(range(n))`."""
        key = ("set", *range(self.n))
        return self._cached(key, partial(self._model_from_sum, total, self.n))

    def without(self, i: int, total: torch.Tensor) -> float:
        """`U(N \\ {i})` as the full sum minus row `i`."""
        if self.n == 1:
            return self([])
        row = self.matrix.subset([i])

        def build() -> torch.Tensor:
            model = torch.empty_like(self.global_flat)
            for start, stop, block in run_chunks(row, _identity, self.chunk):
                model[start:stop] = self._mix(
                    start, stop, total[start:stop] - block[0].to(torch.float64), self.n - 1
                )
            return model

        return self._cached(("without", i), build)

    def walk(
        self, order: Sequence[int], full: float, empty: float, cutoff: float
    ) -> tuple[list[float], set[Any]]:
        """The utilities of the prefixes of `order`, growing one row at a time; once a prefix is within `cutoff`
        of `full` the rest repeat it (GTG's within-round truncation). Also the cache keys it valued."""
        acc = torch.zeros(self.matrix.d, dtype=torch.float64)
        values, keys, previous = [], set(), empty
        for j, player in enumerate(order, start=1):
            if abs(full - previous) < cutoff:
                values.append(previous)
                continue
            if j == self.n:
                current = full  # the whole set: the canonical U(N), so marginals sum to the round's gain
            else:
                row = self.matrix.subset([player])
                for start, stop, block in run_chunks(row, _identity, self.chunk):
                    acc[start:stop] += block[0].to(torch.float64)
                # Addition is commutative, so only the first two rows' order is free.
                key = ("set", *sorted(order[:j])) if j <= 2 else ("prefix", *sorted(order[:2]), *order[2:j])
                keys.add(key)
                current = self._cached(key, partial(self._model_from_sum, acc, j))
            values.append(current)
            previous = current
        return values, keys


def _identity(block: torch.Tensor, start: int, stop: int) -> torch.Tensor:
    return block


def _sum_rows(block: torch.Tensor) -> torch.Tensor:
    """The float64 sum of a block's rows, added in row order (an explicit order: a reduction kernel may not)."""
    total = block[0].to(torch.float64, copy=True)
    for row in block[1:]:
        total += row
    return total


def leave_one_out(utility: Utility, n: int) -> np.ndarray:
    """`U(N) - U(N \\ {i})` for every player (float64, may be negative); a `SubsetUtility` values the `n`
    models as parallel tasks on its engine."""
    if isinstance(utility, SubsetUtility):
        total = utility.row_sum()
        full = utility.full_value(total)
        batches = _batches(list(range(n)), utility.engine.workers)
        parts = utility.engine.map(_without_batch, batches, (utility, total))
        return np.array([full - v for part in parts for v in part], dtype=np.float64)
    everyone = list(range(n))
    full = utility(everyone)
    return np.array([full - utility([j for j in everyone if j != i]) for i in range(n)], dtype=np.float64)


def _without_batch(indices: list[int], utility: SubsetUtility, total: torch.Tensor) -> list[float]:
    return [utility.without(i, total) for i in indices]


def _batches(items: list[Any], workers: int) -> list[list[Any]]:
    """Contiguous batches, two per worker (one item each in this process: no batching to wait for)."""
    if workers <= 1:
        return [[item] for item in items]
    size = max(1, -(-len(items) // (2 * workers)))
    return [items[i : i + size] for i in range(0, len(items), size)]


def _generic_walk(
    utility: Utility, order: Sequence[int], full: float, empty: float, cutoff: float
) -> tuple[list[float], set[Any]]:
    values, keys, previous, prefix = [], set(), empty, []
    for player in order:
        prefix.append(player)
        if abs(full - previous) < cutoff:
            values.append(previous)
            continue
        keys.add(("set", *sorted(prefix)))
        previous = utility(prefix)
        values.append(previous)
    return values, keys


def _walk_batch(
    orders: list[list[int]], utility: Utility, full: float, empty: float, cutoff: float
) -> list[tuple[list[float], set[Any]]]:
    walk = utility.walk if isinstance(utility, SubsetUtility) else partial(_generic_walk, utility)
    return [walk(order, full, empty, cutoff) for order in orders]


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
    """GTG-Shapley estimates (float64 `[n]`, may be negative) and how the estimate ended.

    Permutations are walked independently (on a `SubsetUtility`'s engine, several at once); their marginals
    are folded in permutation order and the convergence test runs after each, so the estimate and where it
    stops are those of one permutation after the other, whatever ran in parallel.
    """
    empty, full = utility([]), utility(list(range(n)))
    gain = full - empty
    if abs(gain) < round_truncation:
        return np.zeros(n), {
            "permutations": 0,
            "truncated_round": True,
            "converged": True,
            "gain": gain,
            "utility_evaluations": 2,
        }
    engine = utility.engine if isinstance(utility, SubsetUtility) else LOCAL
    rng = np.random.default_rng(seed)
    values = np.zeros(n, dtype=np.float64)
    window = max(n, 10)
    snapshots: list[np.ndarray] = []
    valued: set[Any] = set()
    converged = False
    k = 0
    # One permutation at a time in this process; on a cluster, a few per worker at once (the extra ones past
    # convergence are wasted work, never a different result).
    batch = 1 if engine.workers <= 1 else 8 * engine.workers
    while k < max_permutations and not converged:
        orders = []
        for lead in range(k, min(k + batch, max_permutations)):
            # Guided sampling: player lead mod n leads, the others follow in random order.
            rest = rng.permutation([i for i in range(n) if i != lead % n])
            orders.append([lead % n, *rest.tolist()])
        walks = [
            w
            for part in engine.map(
                _walk_batch, _batches(orders, engine.workers), (utility, full, empty, truncation * abs(gain))
            )
            for w in part
        ]
        for order, (prefix_values, keys) in zip(orders, walks, strict=True):
            k += 1
            previous = empty
            for player, current in zip(order, prefix_values, strict=True):
                values[player] += (current - previous - values[player]) / k
                previous = current
            valued |= keys
            snapshots.append(values.copy())
            if k >= 2 * window:
                old = snapshots[-1 - window]
                # Relative L1 change over the last window: near-zero values do not stall the test.
                converged = bool(
                    np.abs(values - old).sum() <= convergence * max(np.abs(values).sum(), 1e-300)
                )
            if converged:
                break
    # The subsets this estimate used (each valued once), whichever process valued them.
    evaluations = len(valued | {("set",), ("set", *range(n))})
    details = {"permutations": k, "truncated_round": False, "converged": converged, "gain": gain}
    return values, {**details, "utility_evaluations": evaluations}


def similarity_scores(deltas: UpdateMatrix | torch.Tensor, aggregate: torch.Tensor) -> np.ndarray:
    """Cosine of each delta `[n, d]` with the aggregate `[d]`, clipped at 0 (float64 `[n]`), one pass."""
    if isinstance(deltas, torch.Tensor) and (
        deltas.dim() != 2 or aggregate.dim() != 1 or deltas.shape[1] != aggregate.numel()
    ):
        raise AggregatorError(f"shapes {list(deltas.shape)} and {list(aggregate.shape)} do not match")
    matrix = deltas if isinstance(deltas, UpdateMatrix) else UpdateMatrix(deltas)
    if aggregate.dim() != 1 or aggregate.numel() != matrix.d:
        raise AggregatorError(f"shapes [{matrix.n}, {matrix.d}] and {list(aggregate.shape)} do not match")
    dots = torch.zeros(matrix.n, dtype=torch.float64)
    sq = torch.zeros(matrix.n, dtype=torch.float64)
    for _start, _stop, (part_dots, part_sq) in matrix.map_chunks(
        _similarity_part, DEFAULT_CHUNK, (aggregate,)
    ):
        dots += part_dots
        sq += part_sq
    norms = sq.sqrt() * aggregate.to(torch.float64).norm()
    cos = torch.where(norms > 0, dots / norms.clamp_min(1e-300), torch.zeros_like(norms))
    return cos.clamp_min(0.0).numpy()


def _similarity_part(
    block: torch.Tensor, start: int, stop: int, aggregate: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    wide = block.to(torch.float64)
    return wide @ aggregate[start:stop].to(torch.float64), wide.square().sum(dim=1)


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
    order of `utility.matrix`."""
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
        details["utility_evaluations"] = n + 1
    else:
        raw = similarity_scores(utility.matrix, aggregate)
        details["utility_evaluations"] = 0
    positive, basis = np.clip(raw, 0.0, None), config.method
    if positive.sum() <= 0.0:
        positive, basis = similarity_scores(utility.matrix, aggregate), "similarity_fallback"
    if positive.sum() <= 0.0:
        positive, basis = np.ones(n), "uniform_fallback"
    shares = positive / positive.sum()
    scores = {s: 0.0 for s in sorted(submitters)}
    scores.update({p: float(v) for p, v in zip(players, shares, strict=True)})
    values = {p: float(v) for p, v in zip(players, raw, strict=True)}
    return ContributionResult(scores, values, basis, details)
