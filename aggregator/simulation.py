"""Off-chain simulation of marketplace rounds on digits: honest trainers, attackers, and `run_round`.

No chain and no store: each round every trainer trains (or misbehaves) from the current global model, the
pipeline aggregates and scores, and the next round starts from its output, exactly as the round runner will
chain them. `demo()` runs the acceptance scenario (5 honest trainers, 1 sign-flip, 1 label-flip, 1
free-rider, 2 Sybil copies of one label-flipping attacker; 5 rounds) beside the same run without attackers.
"""

from __future__ import annotations

import hashlib
import statistics
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

import torch

from aggregator.contribution import ContributionConfig
from aggregator.data import DigitsData, load_digits_data, non_iid_splits, sampled_shards
from aggregator.engine import LOCAL, Engine
from aggregator.errors import AggregatorError
from aggregator.evaluation import builtin_evaluator
from aggregator.history import TrainerHistory
from aggregator.hyperparams import HyperParams
from aggregator.models import evaluate, initial_state, state_delta
from aggregator.outliers import OutlierConfig
from aggregator.pipeline import RoundInputs, RoundOutcome, run_round
from aggregator.training import (
    free_rider,
    gaussian_noise,
    label_flip,
    scale,
    sign_flip,
    sybil_copies,
    train_local,
)

__all__ = [
    "DEMO_ATTACKERS",
    "ROLES",
    "DemoResult",
    "SimulationResult",
    "demo",
    "role_updates",
    "simulate",
    "trainer_address",
]

ROLES = (
    "free_rider",
    "free_rider_zeros",
    "gaussian_noise",
    "honest",
    "label_flip",
    "scale",
    "sign_flip",
    "sybil",
)
# Attackers that need a shard of training data (all Sybil copies share one).
_TRAINS = ("label_flip", "scale", "sign_flip", "sybil")
DEMO_ATTACKERS: dict[str, int] = {"sign_flip": 1, "label_flip": 1, "free_rider": 1, "sybil": 2}
_DEMO_SHARDS = 8  # 5 honest + sign-flip + label-flip + one for the Sybil group
_MIN_SHARD = 10  # the fewest samples a trainer's shard holds


def trainer_address(role: str, index: int) -> str:
    """A stable, address-shaped name for the simulated trainer `index` playing `role`."""
    return "0x" + hashlib.sha256(f"{role}:{index}".encode()).hexdigest()[:40]


@dataclass
class SimulationResult:
    roles: dict[str, str]  # address -> role
    outcomes: list[RoundOutcome]
    test_accuracy: float
    final_state: dict[str, torch.Tensor] = field(repr=False)

    @property
    def mean_scores(self) -> dict[str, float]:
        """Each trainer's score averaged over the rounds (these still sum to 1)."""
        return {t: statistics.fmean(o.scores.get(t, 0.0) for o in self.outcomes) for t in sorted(self.roles)}

    @property
    def honest_share(self) -> float:
        return sum(s for t, s in self.mean_scores.items() if self.roles[t] == "honest")

    def payouts(self, pool_wei: int) -> tuple[dict[str, int], int]:
        """What the contract would pay each trainer out of `pool_wei`, and the owner's refund: each round's
        pool (`pool // rounds`, the remainder on the last round) credited `floor(round_pool * score / sum)` of
        the posted fixed-point scores, the rounding dust back to the owner (docs/contracts.md)."""
        rounds = len(self.outcomes)
        paid = dict.fromkeys(sorted(self.roles), 0)
        refund = 0
        for r, outcome in enumerate(self.outcomes):
            round_pool = pool_wei // rounds + (pool_wei % rounds if r == rounds - 1 else 0)
            total = sum(outcome.scores_fixed.values())
            credited = {t: round_pool * s // total for t, s in outcome.scores_fixed.items()} if total else {}
            for trainer, amount in credited.items():
                paid[trainer] += amount
            refund += round_pool - sum(credited.values())
        return paid, refund

    def flags_by_role(self) -> dict[str, list[str]]:
        """Every reason each role was flagged for, over all rounds."""
        out: dict[str, set[str]] = {}
        for outcome in self.outcomes:
            for flag in outcome.flags:
                out.setdefault(self.roles[flag.trainer], set()).add(flag.reason)
        return {role: sorted(reasons) for role, reasons in sorted(out.items())}


@dataclass
class DemoResult:
    attacked: SimulationResult
    baseline: SimulationResult

    @property
    def accuracy_gap(self) -> float:
        return self.baseline.test_accuracy - self.attacked.test_accuracy


def _train_job(
    job: tuple[str, Any, int], model: str, global_state: dict[str, torch.Tensor], train: dict[str, Any]
) -> dict[str, torch.Tensor]:
    """One trainer's local training (`"train"`) or label-flipped training (`"label_flip"`): a task an engine
    can run anywhere, deterministic given its seed."""
    kind, shard, seed = job
    fit = train_local if kind == "train" else label_flip
    return fit(model, global_state, shard.X, shard.y, seed=seed, **train)


def role_updates(
    roles: Mapping[str, str],
    shards: Mapping[str, Any],
    model: str,
    global_state: dict[str, torch.Tensor],
    train: dict[str, Any],
    round_seed: int,
    *,
    engine: Engine | None = None,
    on_trained: Callable[[int, int], None] | None = None,
) -> dict[str, dict[str, torch.Tensor]]:
    """What every simulated trainer uploads this round, as delta state dicts: `roles` maps address -> role,
    `shards` address -> its `Split` (Sybils share one), `train` the keyword arguments of `train_local`.

    The trainings are tasks on `engine` (virtual trainers on Ray workers, say), each seeded by its trainer's
    place in address order, so the updates do not depend on where they ran; `on_trained(done, total)` follows
    them."""
    engine = engine or LOCAL
    ordered = sorted(roles.items())
    jobs: dict[str, tuple[str, Any, int]] = {}
    sybil_base: str | None = None
    for k, (trainer, role) in enumerate(ordered):
        if role in ("honest", "sign_flip", "scale"):
            jobs[trainer] = ("train", shards[trainer], round_seed + k)
        elif role == "label_flip" or (role == "sybil" and sybil_base is None):
            jobs[trainer] = ("label_flip", shards[trainer], round_seed + k)
            sybil_base = trainer if role == "sybil" else sybil_base
    names = list(jobs)
    trained: dict[str, dict[str, torch.Tensor]] = {}
    # Slices big enough to keep every worker busy, few enough that progress shows while a large federation trains.
    step = max(4 * engine.workers, -(-len(names) // 20))
    for i in range(0, len(names), step):
        part = names[i : i + step]
        trained.update(
            zip(
                part,
                engine.map(_train_job, [jobs[t] for t in part], (model, global_state, train)),
                strict=True,
            )
        )
        if on_trained is not None:
            on_trained(min(i + step, len(names)), len(names))
    models: dict[str, dict[str, torch.Tensor]] = {}
    honest_norms = []
    for trainer, role in ordered:
        if role == "honest":
            models[trainer] = trained[trainer]
            delta = state_delta(models[trainer], global_state)
            honest_norms.append(float(torch.cat([v.flatten() for v in delta.values()]).norm()))
        elif role in ("sign_flip", "scale"):
            local = trained[trainer]
            models[trainer] = (
                sign_flip(global_state, local) if role == "sign_flip" else scale(global_state, local)
            )
        elif role == "label_flip":
            models[trainer] = trained[trainer]
        elif role == "sybil":
            assert sybil_base is not None
            models[trainer] = sybil_copies(trained[sybil_base], 1)[0]
        elif role in ("free_rider", "free_rider_zeros"):
            models[trainer] = free_rider(global_state, "global" if role == "free_rider" else "zeros")
    d = sum(v.numel() for v in global_state.values())
    noise_std = (statistics.median(honest_norms) if honest_norms else 1.0) / d**0.5
    for k, (trainer, role) in enumerate(ordered):
        if role == "gaussian_noise":  # as large as a typical honest update, pointing nowhere
            models[trainer] = gaussian_noise(model, global_state, std=noise_std, seed=round_seed + k)
    return {t: state_delta(models[t], global_state) for t in sorted(models)}


_submissions = role_updates  # the name backend/marketplace/demo.py imports today


@contextmanager
def _one_thread() -> Iterator[None]:
    """Digits-sized tensors gain nothing from intra-op threads, and on a busy machine OpenMP workers spinning
    for cores make each tiny op up to 10x slower; the previous setting is restored."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def simulate(
    n_honest: int = 5,
    attackers: Mapping[str, int] | None = None,
    rounds: int = 5,
    rule: str = "multi_krum",
    seed: int = 0,
    *,
    rule_params: Mapping[str, Any] | None = None,
    model: str = "digits_mlp",
    alpha: float = 1.0,
    epochs: int = 10,
    batch_size: int = 16,
    outliers: OutlierConfig | None = None,
    contribution: ContributionConfig | None = None,
    hyperparams: HyperParams | None = None,
    data: DigitsData | None = None,
    n_shards: int | None = None,
    samples_per_trainer: int | None = None,
    engine: Engine | None = None,
    on_trained: Callable[[int, int, int], None] | None = None,
    on_round: Callable[[int, RoundOutcome], None] | None = None,
) -> SimulationResult:
    """Run `rounds` rounds with `n_honest` honest trainers and `attackers` (role -> count, roles in `ROLES`).

    The training set is cut into `n_shards` (at least one per data-using identity) label-skewed shards with a
    Dirichlet(`alpha`) prior; with `samples_per_trainer` (or more trainers than the data can give ten samples
    each) every trainer instead draws that many samples with its own Dirichlet label mix, so shards overlap
    (`sampled_shards`). Byzantine-count rules default to `f = 1` when there are attackers. `engine` runs the
    trainings (virtual trainers as tasks) and the rounds' passes; `on_trained(round, done, total)` and
    `on_round(round, outcome)` follow the run.
    """
    with _one_thread():
        return _simulate(
            n_honest,
            dict(attackers or {}),
            rounds,
            rule,
            seed,
            rule_params,
            model,
            alpha,
            epochs,
            batch_size,
            outliers,
            contribution,
            hyperparams,
            data,
            n_shards,
            samples_per_trainer=samples_per_trainer,
            engine=engine or LOCAL,
            on_trained=on_trained,
            on_round=on_round,
        )


def _simulate(
    n_honest: int,
    attackers: dict[str, int],
    rounds: int,
    rule: str,
    seed: int,
    rule_params: Mapping[str, Any] | None,
    model: str,
    alpha: float,
    epochs: int,
    batch_size: int,
    outliers: OutlierConfig | None,
    contribution: ContributionConfig | None,
    hyperparams: HyperParams | None,
    data: DigitsData | None,
    n_shards: int | None,
    *,
    samples_per_trainer: int | None,
    engine: Engine,
    on_trained: Callable[[int, int, int], None] | None,
    on_round: Callable[[int, RoundOutcome], None] | None,
) -> SimulationResult:
    unknown = sorted(set(attackers) - set(ROLES) | ({"honest"} & set(attackers)))
    if unknown or any(c < 0 for c in attackers.values()) or n_honest < 0 or rounds < 1:
        raise AggregatorError(f"bad simulation set-up: unknown roles {unknown}, counts, or rounds {rounds}")
    roles = {trainer_address("honest", i): "honest" for i in range(n_honest)}
    for role, count in sorted(attackers.items()):
        roles.update({trainer_address(role, i): role for i in range(count)})
    data = data or load_digits_data(seed)
    # One shard per honest trainer, per data-using attacker, and one for the whole Sybil group; honest
    # trainers take the first shards, so a run without attackers (same `n_shards`) gives them the same data.
    honest = sorted(t for t, r in roles.items() if r == "honest")
    sybils = sorted(t for t, r in roles.items() if r == "sybil")
    owners = honest + sorted(t for t, r in roles.items() if r in _TRAINS and r != "sybil") + sybils[:1]
    count = max(n_shards or 0, len(owners))
    if samples_per_trainer is None and count * _MIN_SHARD > len(data.train):
        samples_per_trainer = _MIN_SHARD * 3
    parts = (
        sampled_shards(data.train, count, samples_per_trainer, alpha, seed)
        if samples_per_trainer is not None
        else non_iid_splits(data.train, count, alpha, seed, _MIN_SHARD)
    )
    shards = dict(zip(owners, parts, strict=False))
    for t in sybils[1:]:
        shards[t] = shards[sybils[0]]

    params = dict(rule_params) if rule_params is not None else _default_rule_params(rule, attackers)
    contribution = contribution or ContributionConfig(seed=seed)
    state = initial_state(model, seed)
    hp = hyperparams or HyperParams()
    history: dict[str, TrainerHistory] = {}
    outcomes: list[RoundOutcome] = []
    evaluator = builtin_evaluator(model, data.validation.X, data.validation.y)
    for r in range(rounds):
        train = {"epochs": epochs, "lr": hp.client_lr, "batch_size": batch_size}
        updates = role_updates(
            roles,
            shards,
            model,
            state,
            train,
            round_seed=seed * 1_000_003 + r * 1000,
            engine=engine,
            on_trained=None if on_trained is None else partial(on_trained, r),
        )
        outcome = run_round(
            RoundInputs(
                evaluator=evaluator,
                global_state=state,
                updates=updates,
                rule=rule,
                rule_params=params,
                outliers=outliers or OutlierConfig(),
                contribution=replace(contribution, seed=contribution.seed + r),
                hyperparams=hp,
                history=history,
                round_index=r,
                context={"simulation_seed": seed},
            ),
            engine,
        )
        outcomes.append(outcome)
        if on_round is not None:
            on_round(r, outcome)
        state, hp, history = outcome.global_state, outcome.hyperparams, outcome.history
    accuracy = evaluate(model, state, data.test.X, data.test.y).accuracy
    return SimulationResult(roles, outcomes, accuracy, state)


def _default_rule_params(rule: str, attackers: Mapping[str, int]) -> dict[str, Any]:
    """Byzantine-count rules assume one attacker slips past outlier detection (f = 1), none without attackers."""
    if rule in ("multi_krum", "bulyan"):
        return {"f": 1 if sum(attackers.values()) else 0}
    return {}


def demo(seed: int = 0, rule: str = "multi_krum", rounds: int = 5) -> DemoResult:
    """The acceptance scenario (`DEMO_ATTACKERS` beside 5 honest trainers) and the same run without attackers."""
    data = load_digits_data(seed)
    attacked = simulate(5, DEMO_ATTACKERS, rounds, rule, seed, data=data)
    baseline = simulate(5, {}, rounds, rule, seed, data=data, n_shards=_DEMO_SHARDS)
    return DemoResult(attacked, baseline)
