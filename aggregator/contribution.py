"""How much each trainer's update was worth this round, measured on the round's validation examples.

The valuation values what was really applied. Every trainer's *piece* is its update times the weight the
defenses and the rule gave it (its influence on the aggregate), times the server learning rate; the pieces add up
to the round's step (exactly for weighted-mean rules, as a linear model of the rule's choice for coordinate-wise
ones). A *player* is a trainer, or a group of near-copies that counts as one source (`aggregator.defenses`):
its members share one player's value. The utility of a coalition S is the validation score of
`global + sum_{p in S} piece_p`, example by example (negative loss by default, or 1 for a correct prediction):
what the model would be had only S's pieces been applied.

This is what makes the score hard to farm. An update the defenses rejected has weight 0: its piece is nothing
and so is its value. An update built from the others' updates (near their mean, or a copy) carries no more
weight than any honest row, so it can earn no more than a weight's share of what the round achieved, and copies
count once. (The utility of the *mean* of a subset, the usual choice, instead pays an update for sitting near
the mean: alone it is a better model than any honest update.)

- `gtg_shapley`: Liu, Lv, Yang, Yu, Zhang, Chen, Ng 2022, "GTG-Shapley: Efficient and Accurate Participant
  Contribution Evaluation in Federated Learning" (ACM TIST): Monte Carlo permutations with guided leads (each
  player leads in turn), within-permutation truncation (once a prefix is within `truncation` of the full gain,
  later marginals are 0), between-round truncation (a round that barely moved the score is not valued), seeded
  from the round. It stops after `min_permutations` (default: each player leads once) as soon as every
  player's Monte Carlo error is below `precision` times an average player's share of the gain or below half its
  error from the validation sample (more permutations could not make the value surer), or at
  `max_permutations`.
- `leave_one_out`: `U(N) - U(N \\ {p})`.
- `similarity`: the cosine of each update with the aggregate, clipped at 0 (no model evaluation).

Subset models are built from the rows a column chunk at a time (only the rows a coalition uses are read), so
valuation needs a few model copies of memory whatever the number of players; Shapley permutations and
leave-one-out models run as tasks on the round's engine (`aggregator.engine`) and are folded in a fixed order,
and every cached model is keyed by the exact order its pieces were added in, so no value depends on the engine,
on which worker valued what, or on the cache.

Confidence. A Shapley value is linear in the utility, so the per-example marginals give each value's spread over
the validation examples (how much a different validation sample could move it), and the spread of the
permutations' marginals its Monte Carlo error; the standard error combines both. `aggregator.shares` turns values
and errors into the round's scores.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any

import numpy as np
import torch

from aggregator.engine import LOCAL, Engine
from aggregator.errors import AggregatorError
from aggregator.evaluation import Evaluator
from aggregator.matrix import DEFAULT_CHUNK, UpdateMatrix, check_chunk

__all__ = [
    "METHODS",
    "PIECE_CACHE_BYTES",
    "UTILITIES",
    "ContributionConfig",
    "Estimate",
    "PieceUtility",
    "Player",
    "combine_rows",
    "gtg_shapley",
    "leave_one_out",
    "players_from",
    "similarity_scores",
]

METHODS = ("gtg_shapley", "leave_one_out", "similarity")
UTILITIES = ("accuracy", "metric", "neg_loss")

# Pieces kept in memory between permutation walks when they all fit (else re-read from the rows each step).
PIECE_CACHE_BYTES = 256 << 20

# A utility: per-example scores `[V]` (float64) of a coalition, given as player indices.
Utility = Callable[[Sequence[int]], torch.Tensor]


@dataclass(frozen=True)
class ContributionConfig:
    method: str = "gtg_shapley"
    utility: str = "neg_loss"
    max_permutations: int = 100
    min_permutations: int | None = None  # None: one per player (each leads once)
    precision: float = 0.1  # target Monte Carlo error, relative to an average player's share of the gain
    seed: int = 0
    round_truncation: float = 1e-4  # |U(N) - U(empty)| below this: the round is not valued, weights decide
    truncation: float = 0.01  # relative to the round's gain
    shrinkage: bool = True  # pull values within their noise towards the players' weight shares

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise AggregatorError(f"contribution method must be one of {METHODS}, got {self.method!r}")
        if self.utility not in UTILITIES:
            raise AggregatorError(f"contribution utility must be one of {UTILITIES}, got {self.utility!r}")
        for name in ("max_permutations", "min_permutations"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise AggregatorError(f"{name} must be a positive integer, got {value!r}")
        for name in ("precision", "round_truncation", "truncation"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not (np.isfinite(value) and value >= 0)
            ):
                raise AggregatorError(f"{name} must be finite and non-negative, got {value!r}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise AggregatorError(f"seed must be an integer, got {self.seed!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Player:
    """One valued source: its members (trainer addresses, one unless near-copies) and its piece's
    coefficients on the round's update matrix rows."""

    members: tuple[str, ...]
    coeffs: torch.Tensor  # [n] float64

    @property
    def weight(self) -> float:
        return float(self.coeffs.sum())


def players_from(
    trainers: Sequence[str], influence: torch.Tensor, groups: Sequence[Sequence[int]] = ()
) -> list[Player]:
    """Players from each trainer's influence (`[n]`, in matrix row order) and the groups that count once
    (row indices); trainers and groups without influence are not players (they are worth nothing)."""
    if influence.dim() != 1 or influence.numel() != len(trainers):
        raise AggregatorError(f"influence {list(influence.shape)} does not match {len(trainers)} trainers")
    if bool((influence < 0).any()) or not bool(torch.isfinite(influence).all()):
        raise AggregatorError("influence must be finite and non-negative")
    grouped = {i for g in groups for i in g}
    players = []
    for i, trainer in enumerate(trainers):
        if i not in grouped and float(influence[i]) > 0:
            coeffs = torch.zeros(len(trainers), dtype=torch.float64)
            coeffs[i] = influence[i]
            players.append(Player((trainer,), coeffs))
    for group in groups:
        rows = sorted(group)
        coeffs = torch.zeros(len(trainers), dtype=torch.float64)
        coeffs[rows] = influence[rows].to(torch.float64)
        if float(coeffs.sum()) > 0:
            players.append(Player(tuple(trainers[i] for i in rows), coeffs))
    return players


def _combine_part(block: torch.Tensor, start: int, stop: int, coeffs: torch.Tensor) -> torch.Tensor:
    """One chunk of `sum_i coeffs[i] * row_i` in float64 (a fresh tensor; the block is a reused buffer)."""
    return coeffs @ block.to(torch.float64)


def combine_rows(matrix: UpdateMatrix, coeffs: torch.Tensor, chunk: int = DEFAULT_CHUNK) -> torch.Tensor:
    """`sum_i coeffs[i] * row_i` as a float64 `[d]`, reading only the rows with a nonzero coefficient, by the
    same chunk function on every engine (so the same bits wherever it runs)."""
    nonzero = torch.nonzero(coeffs).flatten().tolist()
    out = torch.zeros(matrix.d, dtype=torch.float64)
    if not nonzero:
        return out
    view = matrix.subset(nonzero)
    c = coeffs[nonzero].to(torch.float64)
    for start, stop, part in view.map_chunks(_combine_part, chunk, (c,)):
        out[start:stop] = part
    return out


class PieceUtility:
    """Per-example utility `[V]` of `global + scale * sum_{p in S} piece_p`, cached by how it was built.

    Pieces are read from the update matrix a column chunk at a time (`combine_rows`), and only the rows a
    piece uses: a coalition model costs one read of its members' rows, a permutation walk one read of every
    row. Sums are float64 in a fixed order: a set's coefficients are added by player index and its rows read
    once; a walk adds pieces to a zero sum in the permutation's order (only the first two commute exactly), and
    the cache key names that order. A utility shipped to an engine's worker starts with an empty cache.
    """

    def __init__(
        self,
        evaluator: Evaluator,
        global_flat: torch.Tensor,
        matrix: UpdateMatrix | torch.Tensor,
        players: Sequence[Player],
        utility: str = "neg_loss",
        *,
        scale: float = 1.0,
        chunk: int = DEFAULT_CHUNK,
    ) -> None:
        if utility not in UTILITIES:
            raise AggregatorError(f"utility must be one of {UTILITIES}, got {utility!r}")
        if utility == "accuracy" and not evaluator.task.classifies:
            raise AggregatorError(
                f"utility 'accuracy' needs a classification task, not {evaluator.task.name}"
            )
        self.matrix = matrix if isinstance(matrix, UpdateMatrix) else UpdateMatrix(matrix)
        if self.matrix.d != global_flat.numel() or global_flat.dim() != 1:
            raise AggregatorError(
                f"updates [{self.matrix.n}, {self.matrix.d}] do not match the model ({global_flat.numel()})"
            )
        if any(p.coeffs.numel() != self.matrix.n for p in players):
            raise AggregatorError(f"every player's coefficients must cover the {self.matrix.n} rows")
        self.evaluator, self.players, self.scale = evaluator, list(players), float(scale)
        self.chunk = check_chunk(chunk)
        self.utility = utility
        self.global_flat = global_flat.detach().to(torch.float64)
        self.calls = 0
        self._pieces: dict[int, torch.Tensor] = {}
        self._cache: dict[tuple[Any, ...], torch.Tensor] = {}

    @property
    def n(self) -> int:
        return len(self.players)

    @property
    def examples(self) -> int:
        return len(self.evaluator)

    @property
    def engine(self) -> Engine:
        return self.matrix.engine

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_cache": {}, "_pieces": {}, "calls": 0}  # a worker keeps its own

    def scores(self, flat: torch.Tensor) -> torch.Tensor:
        """The per-example utility of a model (float64 `[V]`)."""
        figures = self.evaluator.per_example(flat.to(torch.float32))
        if self.utility == "neg_loss" or (self.utility == "metric" and not self.evaluator.task.classifies):
            return -figures["loss"]
        return figures["accuracy"]

    def piece(self, p: int) -> torch.Tensor:
        """Player `p`'s piece `[d]` (float64): read from its rows at each walk step, or kept after the first
        read while all pieces together fit in `PIECE_CACHE_BYTES`."""
        if p in self._pieces:
            return self._pieces[p]
        piece = combine_rows(self.matrix, self.players[p].coeffs, self.chunk) * self.scale
        if self.n * self.matrix.d * 8 <= PIECE_CACHE_BYTES:
            self._pieces[p] = piece
        return piece

    def _value(self, key: tuple[Any, ...], model: Callable[[], torch.Tensor]) -> torch.Tensor:
        if key not in self._cache:
            self.calls += 1
            self._cache[key] = self.scores(model())
        return self._cache[key]

    def __call__(self, subset: Sequence[int]) -> torch.Tensor:
        key = tuple(sorted(set(subset)))

        def build() -> torch.Tensor:
            if not key:
                return self.global_flat
            coeffs = torch.zeros(self.matrix.n, dtype=torch.float64)
            for p in key:
                coeffs += self.players[p].coeffs
            return self.global_flat + combine_rows(self.matrix, coeffs, self.chunk) * self.scale

        return self._value(("set", *key), build)

    def walk(
        self, order: Sequence[int], full: torch.Tensor, empty: torch.Tensor, cutoff: float
    ) -> tuple[list[torch.Tensor], set[Any]]:
        """The utilities of the prefixes of `order`, growing one piece at a time; once a prefix's mean is
        within `cutoff` of the full coalition's, the rest repeat it (GTG's within-permutation truncation).
        Also the keys of the models it valued."""
        acc = torch.zeros(self.matrix.d, dtype=torch.float64)
        values, keys, previous = [], set(), empty
        full_mean = float(full.mean())
        for j, player in enumerate(order, start=1):
            if abs(full_mean - float(previous.mean())) < cutoff:
                values.append(previous)
                continue
            acc += self.piece(player)
            if j == self.n:
                current = full  # the canonical U(N): marginals sum to the round's gain
            else:
                # 0 + a + b == 0 + b + a exactly; from the third piece on, the order is part of the value.
                key = ("walk", *sorted(order[: min(j, 2)]), *order[2:j])
                keys.add(key)
                current = self._value(key, partial(torch.add, self.global_flat, acc))
            values.append(current)
            previous = current
        return values, keys


@dataclass(frozen=True)
class Estimate:
    """Each player's value (float64), its standard error (Monte Carlo and validation sample together) and
    how the estimate ended."""

    values: np.ndarray
    stderr: np.ndarray
    gain: float
    details: dict[str, Any] = field(default_factory=dict)


def _check_players(n: int) -> None:
    if n < 1:
        raise AggregatorError("no player to value")


def _batches(items: list[Any], workers: int) -> list[list[Any]]:
    """Contiguous batches, two per worker (one item each in this process: no batching to wait for)."""
    if workers <= 1:
        return [[item] for item in items]
    size = max(1, -(-len(items) // (2 * workers)))
    return [items[i : i + size] for i in range(0, len(items), size)]


def _generic_walk(
    utility: Utility, order: Sequence[int], full: torch.Tensor, empty: torch.Tensor, cutoff: float
) -> tuple[list[torch.Tensor], set[Any]]:
    values, keys, previous, prefix = [], set(), empty, []
    full_mean = float(full.mean())
    for player in order:
        prefix.append(player)
        if abs(full_mean - float(previous.mean())) < cutoff:
            values.append(previous)
            continue
        keys.add(("set", *sorted(prefix)))
        previous = utility(prefix)
        values.append(previous)
    return values, keys


def _walk_batch(
    orders: list[list[int]], utility: Utility, full: torch.Tensor, empty: torch.Tensor, cutoff: float
) -> list[tuple[list[torch.Tensor], set[Any]]]:
    walk = utility.walk if isinstance(utility, PieceUtility) else partial(_generic_walk, utility)
    return [walk(order, full, empty, cutoff) for order in orders]


def gtg_shapley(
    utility: Utility,
    n: int,
    *,
    max_permutations: int = 100,
    min_permutations: int | None = None,
    precision: float = 0.1,
    seed: int = 0,
    round_truncation: float = 1e-4,
    truncation: float = 0.01,
) -> Estimate:
    """GTG-Shapley values with standard errors (see the module docstring).

    Permutations are walked independently (on a `PieceUtility`'s engine, several at once); their marginals are
    folded in permutation order and the stopping test runs after each, so the estimate and where it stops are
    those of one permutation after the other, whatever ran in parallel.
    """
    _check_players(n)
    empty, full = utility([]), utility(list(range(n)))
    examples = int(empty.numel())
    gain = float((full - empty).mean())
    if abs(gain) < round_truncation:
        zeros = np.zeros(n)
        return Estimate(
            zeros,
            zeros.copy(),
            gain,
            {"permutations": 0, "truncated_round": True, "converged": True, "utility_evaluations": 2},
        )
    engine = utility.engine if isinstance(utility, PieceUtility) else LOCAL
    least = min(max_permutations, min_permutations if min_permutations is not None else n)
    rng = np.random.default_rng(seed)
    per_example = torch.zeros(n, examples, dtype=torch.float64)
    total, squares = np.zeros(n), np.zeros(n)
    cutoff = truncation * abs(gain)
    target = precision * abs(gain) / n
    valued: set[Any] = set()
    k, converged = 0, False
    # One permutation at a time in this process; on a cluster, a few per worker at once (the extra ones past
    # the stop are wasted work, never a different result).
    batch = 1 if engine.workers <= 1 else 8 * engine.workers
    while k < max_permutations and not converged:
        orders = []
        for lead in range(k, min(k + batch, max_permutations)):
            # Guided sampling: player lead mod n leads, the others follow in random order.
            rest = rng.permutation([i for i in range(n) if i != lead % n])
            orders.append([lead % n, *rest.tolist()])
        parts = engine.map(_walk_batch, _batches(orders, engine.workers), (utility, full, empty, cutoff))
        for order, (prefixes, keys) in zip(orders, [w for part in parts for w in part], strict=True):
            k += 1
            valued |= keys
            previous = empty
            for player, current in zip(order, prefixes, strict=True):
                marginal = current - previous
                per_example[player] += marginal
                mean = float(marginal.mean())
                total[player] += mean
                squares[player] += mean * mean
                previous = current
            if k >= least:
                mc_var = np.maximum(squares / k - (total / k) ** 2, 0.0) / max(k - 1, 1)
                sample = _sample_var(per_example / k, examples)
                converged = bool((np.sqrt(mc_var) <= np.maximum(target, 0.5 * np.sqrt(sample))).all())
            if converged:
                break
    values = total / k
    mc_var = np.maximum(squares / k - values**2, 0.0) / max(k - 1, 1)
    sample_var = _sample_var(per_example / k, examples)
    details = {
        "permutations": k,
        "truncated_round": False,
        "converged": converged,
        "monte_carlo_stderr": np.sqrt(mc_var).tolist(),
        "sample_stderr": np.sqrt(sample_var).tolist(),
        # The models this estimate used (each valued once), whichever process valued them.
        "utility_evaluations": len(valued | {("set",), ("set", *range(n))}),
    }
    return Estimate(values, np.sqrt(mc_var + sample_var), gain, details)


def _sample_var(per_example: torch.Tensor, examples: int) -> np.ndarray:
    """The variance of each value's mean over the validation examples (0 with a single example)."""
    if examples < 2:
        return np.zeros(per_example.shape[0])
    return per_example.var(dim=1, unbiased=True).numpy() / examples


def _without_batch(indices: list[int], utility: Utility, n: int) -> list[torch.Tensor]:
    return [utility([j for j in range(n) if j != i]) for i in indices]


def leave_one_out(utility: Utility, n: int) -> Estimate:
    """`U(N) - U(N \\ {p})` per player, with its standard error over the validation examples; a
    `PieceUtility` values the `n` models as tasks on its engine."""
    _check_players(n)
    everyone = list(range(n))
    empty, full = utility([]), utility(everyone)
    engine = utility.engine if isinstance(utility, PieceUtility) else LOCAL
    parts = engine.map(_without_batch, _batches(everyone, engine.workers), (utility, n))
    diffs = torch.stack([full - v for part in parts for v in part])
    examples = diffs.shape[1]
    stderr = (
        diffs.std(dim=1, unbiased=True) / examples**0.5
        if examples > 1
        else torch.zeros(n, dtype=torch.float64)
    )
    details = {"utility_evaluations": n + 2}
    return Estimate(diffs.mean(dim=1).numpy(), stderr.numpy(), float((full - empty).mean()), details)


def similarity_scores(
    deltas: UpdateMatrix | torch.Tensor, aggregate: torch.Tensor, chunk: int = DEFAULT_CHUNK
) -> np.ndarray:
    """Cosine of each delta with the aggregate `[d]`, clipped at 0 (float64 `[n]`), one pass."""
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
        _similarity_part, check_chunk(chunk), (aggregate,)
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
