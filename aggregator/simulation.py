"""Off-chain simulation of marketplace rounds on digits: honest trainers, attackers, and `run_round`.

No chain and no store: each round every trainer trains (or misbehaves) from the current global model, the
pipeline aggregates and scores, and the next round starts from its output, exactly as the round runner will
chain them. `demo()` runs the acceptance scenario (5 honest trainers, 1 sign-flip, 1 label-flip, 1
free-rider, 2 Sybil copies of one label-flipping attacker; 5 rounds) beside the same run without attackers.
"""

from __future__ import annotations

import hashlib
import statistics
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from aggregator.contribution import ContributionConfig
from aggregator.data import DigitsData, load_digits_data, non_iid_splits
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


def role_updates(
    roles: Mapping[str, str],
    shards: Mapping[str, Any],
    model: str,
    global_state: dict[str, torch.Tensor],
    train: dict[str, Any],
    round_seed: int,
) -> dict[str, dict[str, torch.Tensor]]:
    """What every simulated trainer uploads this round, as delta state dicts: `roles` maps address -> role,
    `shards` address -> its `Split` (Sybils share one), `train` the keyword arguments of `train_local`."""
    models: dict[str, dict[str, torch.Tensor]] = {}
    honest_norms = []
    sybil_base: dict[str, torch.Tensor] | None = None
    for k, (trainer, role) in enumerate(sorted(roles.items())):
        seed = round_seed + k
        if role == "honest":
            shard = shards[trainer]
            models[trainer] = train_local(model, global_state, shard.X, shard.y, seed=seed, **train)
            delta = state_delta(models[trainer], global_state)
            honest_norms.append(float(torch.cat([v.flatten() for v in delta.values()]).norm()))
        elif role in ("sign_flip", "scale"):
            shard = shards[trainer]
            local = train_local(model, global_state, shard.X, shard.y, seed=seed, **train)
            models[trainer] = (
                sign_flip(global_state, local) if role == "sign_flip" else scale(global_state, local)
            )
        elif role == "label_flip":
            shard = shards[trainer]
            models[trainer] = label_flip(model, global_state, shard.X, shard.y, seed=seed, **train)
        elif role == "sybil":
            if sybil_base is None:
                shard = shards[trainer]
                sybil_base = label_flip(model, global_state, shard.X, shard.y, seed=seed, **train)
            models[trainer] = sybil_copies(sybil_base, 1)[0]
        elif role in ("free_rider", "free_rider_zeros"):
            models[trainer] = free_rider(global_state, "global" if role == "free_rider" else "zeros")
    d = sum(v.numel() for v in global_state.values())
    noise_std = (statistics.median(honest_norms) if honest_norms else 1.0) / d**0.5
    for k, (trainer, role) in enumerate(sorted(roles.items())):
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
) -> SimulationResult:
    """Run `rounds` rounds with `n_honest` honest trainers and `attackers` (role -> count, roles in `ROLES`).

    The training set is cut into `n_shards` (at least one per data-using identity) label-skewed shards with a
    Dirichlet(`alpha`) prior; Byzantine-count rules default to `f = 1` when there are attackers.
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
    shards = dict(zip(owners, non_iid_splits(data.train, count, alpha, seed), strict=False))
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
        updates = role_updates(roles, shards, model, state, train, round_seed=seed * 1_000_003 + r * 1000)
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
            )
        )
        outcomes.append(outcome)
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
