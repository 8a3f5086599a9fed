"""One aggregation round, deterministically: the core that both the round runner and the verifier call.

`run_round(RoundInputs) -> RoundOutcome`: decode and check every submission against the model spec, flag
outliers, aggregate the unflagged deltas with the chosen rule, step the server optimizer, value every
contribution on the owner's validation set, update the hyper-parameters and trainer histories, and encode the
result (model bytes, fixed-point scores, canonical report, result digest). Same inputs, same platform: the
same bytes and the same digest.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch

from aggregator.contribution import ContributionConfig, SubsetUtility, contribution_scores
from aggregator.errors import AggregatorError, InsufficientUpdates, InvalidUpdate
from aggregator.evaluation import Evaluator
from aggregator.history import TrainerHistory, update_history
from aggregator.hyperparams import HyperParams
from aggregator.models import flatten_state, unflatten_state
from aggregator.outliers import Flag, OutlierConfig, detect_outliers
from aggregator.report import (
    canonical_json,
    fixed_point_scores,
    model_bytes,
    result_digest,
    sha256_hex,
    tensor_sha256,
)
from aggregator.rules import get_rule

__all__ = ["REPORT_VERSION", "RoundInputs", "RoundOutcome", "deterministic", "run_round"]

REPORT_VERSION = 2
UPDATE_KINDS = ("delta", "model")


@dataclass(frozen=True)
class RoundInputs:
    """Everything a round depends on. `evaluator` holds the model (its travelling spec), the task and the
    round's validation examples. `updates` maps a trainer address to its decoded submission: a state dict (a
    delta, or the local model when `update_kind="model"`) or a flat 1-D delta. `invalid` maps the trainers whose
    submission could not even be decoded (download, hash, codec failures) to the reason."""

    evaluator: Evaluator
    global_state: Mapping[str, torch.Tensor]
    updates: Mapping[str, Any]
    rule: str = "multi_krum"
    rule_params: Mapping[str, Any] = field(default_factory=dict)
    invalid: Mapping[str, str] = field(default_factory=dict)
    update_kind: str = "delta"
    outliers: OutlierConfig = field(default_factory=OutlierConfig)
    contribution: ContributionConfig = field(default_factory=ContributionConfig)
    hyperparams: HyperParams = field(default_factory=HyperParams)
    history: Mapping[str, TrainerHistory] = field(default_factory=dict)
    round_index: int = 0
    context: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RoundOutcome:
    global_state: dict[str, torch.Tensor]
    model_bytes: bytes
    scores: dict[str, float]
    scores_fixed: dict[str, int]
    flags: list[Flag]
    metrics: dict[str, float]
    hyperparams: HyperParams
    history: dict[str, TrainerHistory]
    report: dict[str, Any]
    report_bytes: bytes
    result_digest: str

    @property
    def flagged(self) -> list[str]:
        return sorted({f.trainer for f in self.flags})

    @property
    def model_sha256(self) -> str:
        return sha256_hex(self.model_bytes)

    @property
    def report_sha256(self) -> str:
        return sha256_hex(self.report_bytes)


@contextmanager
def deterministic() -> Iterator[None]:
    """Deterministic torch kernels for the duration (the previous setting is restored)."""
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous)


def _decode(inputs: RoundInputs, global_flat: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Flat float32 deltas of the usable submissions, and the reason for every unusable one."""
    spec = inputs.evaluator.spec
    deltas: dict[str, torch.Tensor] = {}
    invalid = {str(t): str(reason) for t, reason in inputs.invalid.items()}
    for trainer, update in inputs.updates.items():
        trainer = str(trainer)
        if trainer in invalid:
            continue
        try:
            if isinstance(update, torch.Tensor):
                if (
                    update.dim() != 1
                    or update.numel() != global_flat.numel()
                    or update.dtype != torch.float32
                ):
                    raise InvalidUpdate(
                        f"expected a float32 vector of {global_flat.numel()}, got {update.dtype} "
                        f"{list(update.shape)}"
                    )
                flat = update.detach().clone()
            elif isinstance(update, Mapping):
                flat = flatten_state(update, spec)
            else:
                raise InvalidUpdate(f"not a state dict or tensor ({type(update).__name__})")
            if inputs.update_kind == "model" and not isinstance(update, torch.Tensor):
                flat = flat - global_flat
            if not bool(torch.isfinite(flat).all()):
                raise InvalidUpdate("contains NaN or Inf")
            deltas[trainer] = flat
        except InvalidUpdate as exc:
            invalid[trainer] = str(exc)
    return deltas, invalid


def _sorted_addresses(addresses: Any) -> list[str]:
    return sorted({str(a) for a in addresses}, key=lambda a: (a.lower(), a))


def _check_inputs(inputs: RoundInputs) -> None:
    if inputs.update_kind not in UPDATE_KINDS:
        raise AggregatorError(f"update_kind must be one of {UPDATE_KINDS}, got {inputs.update_kind!r}")
    if not isinstance(inputs.round_index, int) or inputs.round_index < 0:
        raise AggregatorError(f"round_index must be a non-negative integer, got {inputs.round_index!r}")
    if not isinstance(inputs.evaluator, Evaluator):
        raise AggregatorError(
            f"evaluator must be an aggregator.evaluation.Evaluator, got {type(inputs.evaluator)}"
        )


def run_round(inputs: RoundInputs) -> RoundOutcome:
    """Run one round (see the module docstring). Raises `InsufficientUpdates` before any work when fewer
    usable submissions remain than the rule needs, and again if too few survive outlier detection."""
    _check_inputs(inputs)
    with deterministic():
        return _run(inputs)


def _run(inputs: RoundInputs) -> RoundOutcome:
    evaluator = inputs.evaluator
    spec = evaluator.spec
    try:
        global_flat = flatten_state(inputs.global_state, spec)
    except InvalidUpdate as exc:
        raise AggregatorError(f"the global model does not match {evaluator.model.uri}: {exc}") from None
    # Always the CPU: a verifier without a GPU must reproduce the aggregator's bytes.
    rule = get_rule(inputs.rule, **{**dict(inputs.rule_params), "device": "cpu"})
    deltas, invalid = _decode(inputs, global_flat)
    submitters = _sorted_addresses([*inputs.updates, *inputs.invalid])
    if len(deltas) < rule.min_updates:
        raise InsufficientUpdates(
            f"{rule.name} needs {rule.min_updates} usable updates, got {len(deltas)} of {len(submitters)}",
            have=len(deltas),
            need=rule.min_updates,
        )
    valid = [t for t in submitters if t in deltas]
    found = detect_outliers(
        [deltas[t] for t in valid],
        valid,
        inputs.history,
        config=inputs.outliers,
        expected_dim=global_flat.numel(),
    )
    flags = [Flag(t, "invalid", {"error": invalid[t]}) for t in submitters if t in invalid] + found.flags
    flagged = {f.trainer for f in flags}
    players = [t for t in valid if t not in flagged]
    if len(players) < rule.min_updates:
        raise InsufficientUpdates(
            f"{rule.name} needs {rule.min_updates} updates; only {len(players)} of {len(submitters)} "
            f"submissions passed outlier detection",
            have=len(players),
            need=rule.min_updates,
        )

    matrix = torch.stack([deltas[t] for t in players])
    result = rule.aggregate(matrix)
    new_flat, stepped = inputs.hyperparams.apply(global_flat, result.aggregate.to(torch.float32))
    before, after = evaluator.evaluate(global_flat), evaluator.evaluate(new_flat)
    utility = SubsetUtility(evaluator, global_flat, matrix, inputs.contribution.utility)
    valuation = contribution_scores(
        players, submitters, utility=utility, aggregate=result.aggregate, config=inputs.contribution
    )
    scores_fixed = fixed_point_scores(valuation.scores)
    next_params = stepped.advance(before["loss"], after["loss"])
    history = update_history(inputs.history, found.sketches, inputs.outliers.history_decay)
    # Flat vectors follow the spec's order; a decoded state dict may list its tensors in another.
    new_state = unflatten_state(new_flat, {k: inputs.global_state[k] for k in spec})
    encoded = model_bytes(new_state)
    # `<metric>_before` / `<metric>_after` for the loss and every metric of the task (accuracy, or r2 and mse).
    metrics = {
        f"{k}_{when}": v for when, m in (("before", before), ("after", after)) for k, v in sorted(m.items())
    }
    weights = dict(zip(players, result.weights.tolist(), strict=True))
    trainers = {}
    for t in submitters:
        trainers[t] = {
            "status": "flagged" if t in flagged else "scored",
            "flags": [{"reason": f.reason, "detail": f.detail} for f in flags if f.trainer == t],
            "aggregation_weight": weights.get(t, 0.0),
            "score": valuation.scores[t],
            "score_fixed": str(scores_fixed[t]),
            "valuation": valuation.values.get(t),
            "update_sha256": tensor_sha256(deltas[t]) if t in deltas else None,
            "outlier_stats": found.stats.get(t, {}),
        }
    report = {
        "version": REPORT_VERSION,
        "round": inputs.round_index,
        "context": dict(inputs.context),
        "model": evaluator.model.uri,
        "task": evaluator.task.describe(),
        "validation_examples": len(evaluator),
        "global_model_sha256": sha256_hex(model_bytes(dict(inputs.global_state))),
        "new_model_sha256": sha256_hex(encoded),
        "update_kind": inputs.update_kind,
        "rule": {"name": rule.name, "params": rule.params(), "details": result.details},
        "outlier_config": inputs.outliers.to_dict(),
        "contribution": {
            "config": inputs.contribution.to_dict(),
            "basis": valuation.basis,
            "details": valuation.details,
        },
        "trainers": trainers,
        "flagged": sorted(flagged),
        "metrics": metrics,
        "hyperparams": {"used": inputs.hyperparams.to_report(), "next": next_params.to_report()},
        "history": {t: h.to_dict() for t, h in history.items()},
    }
    report_bytes = canonical_json(report)
    digest = result_digest(sha256_hex(encoded), scores_fixed, sorted(flagged), sha256_hex(report_bytes))
    return RoundOutcome(
        global_state=new_state,
        model_bytes=encoded,
        scores=valuation.scores,
        scores_fixed=scores_fixed,
        flags=flags,
        metrics=metrics,
        hyperparams=next_params,
        history=history,
        report=report,
        report_bytes=report_bytes,
        result_digest=digest,
    )
