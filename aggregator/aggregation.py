"""The middle of a round: from the updates that passed outlier detection to the aggregate and everyone's score.

`defend_and_aggregate` runs the manifest's defenses (`aggregator.defenses`) on the updates' Gram matrix, hands
the rule the rows they produce (read chunk by chunk, never stacked), adds the defenses' noise (seeded) and works
out each trainer's influence on the result. `value_contributions` values every trainer's piece of that result
on the round's validation examples (`aggregator.contribution`) and turns values into scores with an interval
each (`aggregator.shares`). Both are pure; the pipeline calls them in order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from aggregator.contribution import (
    ContributionConfig,
    Estimate,
    PieceUtility,
    gtg_shapley,
    leave_one_out,
    players_from,
    similarity_scores,
)
from aggregator.defenses import (
    Defense,
    DefenseChain,
    Reference,
    RowMix,
    apply_defenses,
    mixed_updates,
    needs_reference,
)
from aggregator.errors import AggregatorError, InsufficientUpdates
from aggregator.evaluation import Evaluator
from aggregator.matrix import DEFAULT_CHUNK, UpdateMatrix, column_dots, gram_stats
from aggregator.models import flatten_state
from aggregator.rules import AggregationRule
from aggregator.shares import RoundScores, round_scores
from aggregator.training import Recipe, train

__all__ = ["DefendedAggregate", "defend_and_aggregate", "reference_update", "value_contributions"]


@dataclass(frozen=True)
class DefendedAggregate:
    aggregate: torch.Tensor  # [d], the rule's result plus the defenses' noise
    influence: torch.Tensor  # [n] float64: each row's coefficient in the aggregate (0 = no part in it)
    rule_weights: torch.Tensor  # [n] float64, summing to 1: the rule's weights mapped back to the rows
    chain: DefenseChain
    rule_details: dict[str, Any]


def reference_update(
    evaluator: Evaluator,
    global_state: Mapping[str, torch.Tensor],
    global_flat: torch.Tensor,
    recipe: Recipe,
    lr: float,
    seed: int,
) -> torch.Tensor:
    """FLTrust's server update: the global model trained on the round's validation examples (the owner's own
    data) by the project's recipe at the round's learning rate, as a flat delta. The evaluator's module is
    restored afterwards, so evaluation sees the same weights and buffers as before."""
    module = evaluator.model.module
    saved = {k: v.detach().clone() for k, v in module.state_dict().items()}
    try:
        local = train(
            evaluator.model, evaluator.task, global_state, evaluator.examples, recipe, lr=lr, seed=seed
        )
    finally:
        module.load_state_dict(saved)
        module.eval()
    return flatten_state(local, evaluator.spec) - global_flat


def _reference(matrix: UpdateMatrix, update: torch.Tensor, chunk: int) -> Reference:
    ref = update.to(torch.float64)
    return Reference(column_dots(matrix, ref, chunk), float(ref.square().sum()))


def defend_and_aggregate(
    matrix: UpdateMatrix,
    rule: AggregationRule,
    defenses: Sequence[Defense],
    *,
    seed: int,
    reference: torch.Tensor | None = None,
    order: Sequence[int] | None = None,
    chunk: int = DEFAULT_CHUNK,
) -> DefendedAggregate:
    """Defenses, then the rule on their rows, then their noise (see the module docstring). `order` ranks the
    rows by submission time when the round knows it (0 = first)."""
    if needs_reference(defenses) and reference is None:
        raise AggregatorError("fltrust needs the owner's reference update (a training recipe for the round)")
    ref = _reference(matrix, reference, chunk) if reference is not None else None
    chain = apply_defenses(
        defenses, gram_stats(matrix, chunk), seed=seed, reference=ref, order=order, matrix=matrix
    )
    active = chain.rows.active()
    rows = RowMix(chain.rows.mix[active], chain.rows.weights[active])
    if rows.m < rule.min_updates:
        raise InsufficientUpdates(
            f"{rule.name} needs {rule.min_updates} updates; the defenses left {rows.m}",
            have=rows.m,
            need=rule.min_updates,
        )
    result = rule.aggregate(mixed_updates(matrix, rows), weights=rows.weights)
    aggregate = result.aggregate
    if chain.noise_std > 0:
        gen = torch.Generator().manual_seed(seed)
        noise = torch.randn(aggregate.shape, generator=gen, dtype=torch.float64) * chain.noise_std
        aggregate = (aggregate.to(torch.float64) + noise).to(aggregate.dtype)
    weights = result.weights.to(torch.float64)
    if not getattr(rule, "weighs_rows", True):
        # Order statistics treat kept rows alike; a row the defenses down-weighted keeps a smaller piece.
        weights = weights * rows.weights / rows.weights.mean()
    influence = rows.influence(weights).clamp_min(0.0)
    mapped = rows.influence(result.weights.to(torch.float64)).clamp_min(0.0)
    mapped = mapped / mapped.sum() if float(mapped.sum()) > 0 else mapped
    return DefendedAggregate(aggregate, influence, mapped, chain, result.details)


def value_contributions(
    evaluator: Evaluator,
    global_flat: torch.Tensor,
    matrix: UpdateMatrix,
    trainers: Sequence[str],
    submitters: Sequence[str],
    defended: DefendedAggregate,
    config: ContributionConfig,
    *,
    step_scale: float = 1.0,
    chunk: int = DEFAULT_CHUNK,
) -> tuple[RoundScores, dict[str, Any]]:
    """Scores for every submitter: the trainers' pieces (rows of `matrix`, in `trainers` order) valued by the
    configured method; groups of near-copies are one player. Also what the report says about the valuation."""
    players = players_from(trainers, defended.influence, defended.chain.groups)
    if not players:
        raise AggregatorError("no update has any weight in the aggregate")
    utility = PieceUtility(
        evaluator, global_flat, matrix, players, config.utility, scale=step_scale, chunk=chunk
    )
    details: dict[str, Any] = {"players": len(players), "examples": utility.examples}
    if config.method == "gtg_shapley":
        estimate = gtg_shapley(
            utility,
            len(players),
            max_permutations=config.max_permutations,
            min_permutations=config.min_permutations,
            precision=config.precision,
            seed=config.seed,
            round_truncation=config.round_truncation,
            truncation=config.truncation,
        )
    elif config.method == "leave_one_out":
        estimate = leave_one_out(utility, len(players))
    else:
        # Similarity: each player's weight times its cosine with the aggregate, no model evaluated.
        cos = similarity_scores(matrix, defended.aggregate.to(matrix.compute_dtype), chunk)
        values = np.array([float(p.coeffs.to(torch.float64) @ torch.from_numpy(cos)) for p in players])
        estimate = Estimate(values, np.zeros(len(players)), 1.0, {})
    # The models the estimate used, whichever process valued them (this process's count would depend on it).
    details.update({"utility_evaluations": utility.calls, **estimate.details, "gain": estimate.gain})
    scores = round_scores(
        players,
        submitters,
        estimate,
        basis=config.method,
        shrinkage=config.shrinkage and config.method != "similarity",
        round_truncation=config.round_truncation,
    )
    return scores, {**details, **scores.details}
