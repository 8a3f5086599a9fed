"""One aggregation round, deterministically: the core that both the round runner and the verifier call.

`run_round(RoundInputs) -> RoundOutcome`: check every submission against the model spec, flag outliers, run the
defenses and aggregate what they keep with the chosen rule (`aggregator.aggregation`), step the server
optimizer, value every trainer's piece of the aggregate on the round's validation examples, update the
hyper-parameters and trainer histories, and encode the result (model bytes, fixed-point scores, canonical
report, result digest). Same inputs, same platform: the same bytes and the same
digest, whichever engine ran the passes.

Updates travel as rows of an `UpdateMatrix` (`aggregator.matrix`), never stacked: flat tensors for updates
held in memory, or row sources (`aggregator.rows.SafetensorsRow`: update files on disk) for rounds bigger than
memory. Every step works in passes over column chunks (a per-row check, outlier statistics, the rule, subset
models for contribution valuation), so a round needs O(n^2 + n * chunk) memory plus a few model copies,
whatever n x d is. The engine (`aggregator.engine`) runs the passes here or on a Ray cluster.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from aggregator.aggregation import defend_and_aggregate, reference_update, value_contributions
from aggregator.contribution import ContributionConfig
from aggregator.defaults import DEFAULT_RULE, default_defenses, default_rule_params
from aggregator.defenses import needs_reference, parse_defenses
from aggregator.engine import LOCAL, Engine, deterministic
from aggregator.errors import AggregatorError, InsufficientUpdates, InvalidUpdate
from aggregator.evaluation import Evaluator
from aggregator.history import TrainerHistory, update_history
from aggregator.hyperparams import HyperParams
from aggregator.matrix import UpdateMatrix
from aggregator.models import flatten_state, unflatten_state
from aggregator.outliers import Flag, OutlierConfig, detect_outliers, flag_message
from aggregator.report import canonical_json, fixed_point_scores, model_bytes, result_digest, sha256_hex
from aggregator.rows import DeltaRow, RowSource, row_summary
from aggregator.rules import get_rule
from aggregator.training import Recipe

__all__ = ["REPORT_VERSION", "RoundInputs", "RoundOutcome", "deterministic", "run_round"]

REPORT_VERSION = 2
UPDATE_KINDS = ("delta", "model")


@dataclass(frozen=True)
class RoundInputs:
    """Everything a round depends on. `evaluator` holds the model (its travelling spec), the task and the
    round's validation examples. `updates` maps a trainer address to its submission: a state dict (a delta, or
    the local model when `update_kind="model"`), a flat 1-D float32 tensor, or a row source
    (`aggregator.rows.RowSource`, e.g. an update file read a chunk at a time). `invalid` maps the trainers whose
    submission could not even be decoded (download, hash, codec failures) to the reason. `refused` maps trainers
    whose submission was refused before decoding to a flag reason of its own and its detail (the round runner's
    `copied_update`: an update that names another trainer than the one that revealed it). `defenses` run before
    the rule (`aggregator.defenses`; the defaults are `aggregator.defaults`); `recipe` is the project's training
    recipe, needed when a defense trains the owner's reference update (FLTrust)."""

    evaluator: Evaluator
    global_state: Mapping[str, torch.Tensor]
    updates: Mapping[str, Any]
    rule: str = DEFAULT_RULE
    rule_params: Mapping[str, Any] | None = (
        None  # None: the defaults' parameters for the default rule, else {}
    )
    defenses: Sequence[Mapping[str, Any]] = field(default_factory=default_defenses)
    recipe: Recipe | None = None
    # Trainer addresses in the order their submissions landed (the chain's event order), when known: among
    # exact copies, the first submitted is the original.
    submission_order: Sequence[str] | None = None
    invalid: Mapping[str, str] = field(default_factory=dict)
    refused: Mapping[str, tuple[str, str]] = field(default_factory=dict)
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


def _row(inputs: RoundInputs, update: Any, global_flat: torch.Tensor, spec: Any) -> Any:
    """The flat float32 delta of one submission (a tensor, or a row source read later); `InvalidUpdate` when
    its shape or dtype cannot be one."""
    if isinstance(update, RowSource):
        if update.numel != global_flat.numel():
            raise InvalidUpdate(f"expected {global_flat.numel()} values, got {update.numel}")
        return DeltaRow(update, global_flat) if inputs.update_kind == "model" else update
    if isinstance(update, torch.Tensor):
        if update.dim() != 1 or update.numel() != global_flat.numel() or update.dtype != torch.float32:
            raise InvalidUpdate(
                f"expected a float32 vector of {global_flat.numel()}, got {update.dtype} {list(update.shape)}"
            )
        return update.detach()
    if isinstance(update, Mapping):
        flat = flatten_state(update, spec)
        return flat - global_flat if inputs.update_kind == "model" else flat
    raise InvalidUpdate(f"not a state dict or tensor ({type(update).__name__})")


def _summary(row: Any, chunk: int, max_norm: float) -> Any:
    return row_summary(row, chunk, max_norm)


def _rows(inputs: RoundInputs, global_flat: torch.Tensor) -> tuple[dict[str, Any], dict[str, str]]:
    """The usable submissions as rows, and the reason for every unusable one (shape and dtype only: values
    are checked in the first pass)."""
    spec = inputs.evaluator.spec
    rows: dict[str, Any] = {}
    invalid = {str(t): str(reason) for t, reason in inputs.invalid.items()}
    for trainer, update in inputs.updates.items():
        trainer = str(trainer)
        if trainer in invalid or trainer in inputs.refused:
            continue
        try:
            rows[trainer] = _row(inputs, update, global_flat, spec)
        except InvalidUpdate as exc:
            invalid[trainer] = str(exc)
    return rows, invalid


def _enough(rule: Any, have: int, total: int, why: str = "") -> None:
    if have < rule.min_updates:
        raise InsufficientUpdates(
            f"{rule.name} needs {rule.min_updates} usable updates, got {have} of {total}{why}",
            have=have,
            need=rule.min_updates,
        )


def _ranks(players: list[str], order: Sequence[str] | None) -> list[int] | None:
    """Each player's rank in submission order (players the order does not name come last, by address)."""
    if order is None:
        return None
    position = {str(t): i for i, t in reversed(list(enumerate(order)))}
    ranked = sorted(range(len(players)), key=lambda i: (position.get(players[i], len(position)), i))
    ranks = [0] * len(players)
    for rank, i in enumerate(ranked):
        ranks[i] = rank
    return ranks


def _rejections(rejected: Any, players: list[str]) -> dict[str, list[dict[str, Any]]]:
    """Each rejected trainer's rejections, with the rows a detail names turned into addresses."""
    out: dict[str, list[dict[str, Any]]] = {}
    renames = {"copy_of_rows": "copy_of", "group_rows": "group"}
    for r in rejected:
        detail = {
            renames.get(k, k): [players[i] for i in v] if k in renames else v for k, v in r.detail.items()
        }
        out.setdefault(players[r.row], []).append(
            {"defense": r.defense, "reason": r.reason, "message": r.reason, "detail": detail}
        )
    return out


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
    defenses = parse_defenses(inputs.defenses)  # a bad chain is refused before any work
    if needs_reference(defenses) and inputs.recipe is None:
        raise AggregatorError(
            "fltrust needs the project's training recipe to train the owner's reference update"
        )


def run_round(inputs: RoundInputs, engine: Engine | None = None) -> RoundOutcome:
    """Run one round (see the module docstring) with its passes on `engine` (this process by default: the
    engine never changes the result). Raises `InsufficientUpdates` before any work when fewer usable
    submissions remain than the rule needs, and again if too few survive the checks or outlier detection."""
    _check_inputs(inputs)
    with deterministic():
        return _run(inputs, engine or LOCAL)


def _run(inputs: RoundInputs, engine: Engine) -> RoundOutcome:
    evaluator = inputs.evaluator
    spec = evaluator.spec
    try:
        global_flat = flatten_state(inputs.global_state, spec)
    except InvalidUpdate as exc:
        raise AggregatorError(f"the global model does not match {evaluator.model.uri}: {exc}") from None
    # Always the CPU: a verifier without a GPU must reproduce the aggregator's bytes.
    params = inputs.rule_params
    if params is None:
        params = default_rule_params() if inputs.rule == DEFAULT_RULE else {}
    rule = get_rule(inputs.rule, **{**dict(params), "device": "cpu"})
    rows, invalid = _rows(inputs, global_flat)
    submitters = _sorted_addresses([*inputs.updates, *inputs.invalid, *inputs.refused])
    _enough(rule, len(rows), len(submitters))
    # First pass: every row's values (finite, bounded norm) and the sha256 the report names it by.
    checked = [t for t in submitters if t in rows]
    config = inputs.outliers
    summaries = dict(
        zip(
            checked,
            engine.map(_summary, [rows[t] for t in checked], (config.chunk, config.max_norm)),
            strict=True,
        )
    )
    for t in checked:
        if summaries[t].problem is not None:
            invalid[t] = summaries[t].problem
    valid = [t for t in checked if t not in invalid]
    _enough(rule, len(valid), len(submitters))
    found = detect_outliers(
        [rows[t] for t in valid],
        valid,
        inputs.history,
        config=config,
        expected_dim=global_flat.numel(),
        norms=[summaries[t].norm for t in valid],
        engine=engine,
    )
    refused = {str(t): (str(reason), str(detail)) for t, (reason, detail) in inputs.refused.items()}
    flags = [
        Flag(t, refused[t][0], {"error": refused[t][1]})
        if t in refused
        else Flag(t, "invalid", {"error": invalid[t]})
        for t in submitters
        if t in invalid or t in refused
    ] + found.flags
    flagged = {f.trainer for f in flags}
    players = [t for t in valid if t not in flagged]
    _enough(rule, len(players), len(submitters), " after outlier detection")

    matrix = UpdateMatrix([rows[t] for t in players], engine=engine)
    seed = inputs.contribution.seed  # the round's: every random choice of the defenses comes from it
    defenses = parse_defenses(inputs.defenses)
    reference = None
    if needs_reference(defenses) and inputs.recipe is not None:
        reference = reference_update(
            evaluator, inputs.global_state, global_flat, inputs.recipe, inputs.hyperparams.client_lr, seed
        )
    defended = defend_and_aggregate(
        matrix,
        rule,
        defenses,
        seed=seed,
        reference=reference,
        order=_ranks(players, inputs.submission_order),
        chunk=config.chunk,
    )
    new_flat, stepped = inputs.hyperparams.apply(global_flat, defended.aggregate.to(torch.float32))
    before, after = evaluator.evaluate(global_flat), evaluator.evaluate(new_flat)
    valuation, valuation_details = value_contributions(
        evaluator,
        global_flat,
        matrix,
        players,
        submitters,
        defended,
        inputs.contribution,
        step_scale=inputs.hyperparams.server_lr,
        chunk=config.chunk,
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
    rejections = _rejections(defended.chain.rejected, players)
    groups = {players[i]: [players[j] for j in g] for g in defended.chain.groups for i in g}
    row_of = {t: i for i, t in enumerate(players)}
    trainers = {}
    for t in submitters:
        row = row_of.get(t)
        status = "flagged" if t in flagged else "rejected" if t in rejections else "scored"
        entry: dict[str, Any] = {
            "status": status,
            "flags": [
                {"reason": f.reason, "detail": f.detail, "message": flag_message(f.reason, f.detail)}
                for f in flags
                if f.trainer == t
            ],
            "rejections": rejections.get(t, []),
            "aggregation_weight": float(defended.rule_weights[row]) if row is not None else 0.0,
            "influence": float(defended.influence[row]) if row is not None else 0.0,
            "score": valuation.scores[t],
            "score_fixed": str(scores_fixed[t]),
            "valuation": valuation.values.get(t),
            "update_sha256": summaries[t].sha256 if t in summaries else None,
            "outlier_stats": found.stats.get(t, {}),
        }
        if t in valuation.intervals:
            entry["score_interval"] = list(valuation.intervals[t])
            entry["score_confidence"] = valuation.confidence[t]
        if t in groups:
            entry["counted_with"] = groups[t]
        trainers[t] = entry
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
        "rule": {"name": rule.name, "params": rule.params(), "details": defended.rule_details},
        "defenses": defended.chain.steps,
        "noise_std": defended.chain.noise_std,
        "outlier_config": inputs.outliers.to_dict(),
        "contribution": {
            "config": inputs.contribution.to_dict(),
            "basis": valuation.basis,
            "details": valuation_details,
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
