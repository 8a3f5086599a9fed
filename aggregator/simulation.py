"""Off-chain simulation of marketplace rounds on digits: honest trainers, attackers, and `run_round`.

No chain and no store: each round every trainer trains (or misbehaves) from the current global model, the
pipeline aggregates and scores, and the next round starts from its output, exactly as the round runner will
chain them. Attackers are either the simple roles of `ROLES` or an attack from the suite
(`aggregator.attacks`, run by `aggregator.colluders`), omniscient or not, jittered or not. `demo()` runs the
acceptance scenario (5 honest trainers, 1 sign-flip, 1 label-flip, 1 free-rider, 2 Sybil copies of one
label-flipping attacker; 5 rounds) beside the same run without attackers.
"""

from __future__ import annotations

import hashlib
import statistics
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

import torch

from aggregator.attacks import AttackSpec, triggered_test_set
from aggregator.colluders import Colluders
from aggregator.contribution import ContributionConfig
from aggregator.data import DigitsData, Split, load_digits_data, non_iid_splits, sampled_shards
from aggregator.defaults import DEFAULT_RULE, default_defenses, default_rule_params
from aggregator.engine import LOCAL, Engine
from aggregator.errors import AggregatorError
from aggregator.evaluation import builtin_evaluator
from aggregator.history import TrainerHistory
from aggregator.hyperparams import HyperParams
from aggregator.models import evaluate, flatten_state, initial_state, state_delta
from aggregator.outliers import OutlierConfig
from aggregator.pipeline import RoundInputs, RoundOutcome, run_round
from aggregator.training import (
    Recipe,
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
    "equal_iid_splits",
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


def equal_iid_splits(split: Split, k: int, seed: int = 0) -> list[Split]:
    """`split` dealt into `k` shards of equal size (within one) and equal label mix: each class is shuffled
    (seeded) and dealt round-robin, continuing where the previous class stopped."""
    if k < 1 or len(split) < k:
        raise AggregatorError(f"{len(split)} samples cannot give {k} shards")
    gen = torch.Generator().manual_seed(seed)
    parts: list[list[int]] = [[] for _ in range(k)]
    turn = 0
    for c in torch.unique(split.y).tolist():
        members = torch.nonzero(split.y == c).flatten()
        for i in members[torch.randperm(members.numel(), generator=gen)].tolist():
            parts[turn % k].append(i)
            turn += 1
    index = [torch.tensor(sorted(p), dtype=torch.long) for p in parts]
    return [Split(split.X[i], split.y[i]) for i in index]


@dataclass
class SimulationResult:
    roles: dict[str, str]  # address -> role ("honest", a role of ROLES, or the attack's name)
    outcomes: list[RoundOutcome]
    test_accuracy: float
    final_state: dict[str, torch.Tensor] = field(repr=False)
    backdoor_success: float | None = None  # backdoor attacks: triggered test inputs classified as the target
    shard_sizes: dict[str, int] = field(default_factory=dict)
    label_coverage: dict[str, int] = field(default_factory=dict)  # classes present in each trainer's shard

    @property
    def mean_scores(self) -> dict[str, float]:
        """Each trainer's score averaged over the rounds (these still sum to 1): its share of the pool."""
        return {t: statistics.fmean(o.scores.get(t, 0.0) for o in self.outcomes) for t in sorted(self.roles)}

    @property
    def honest(self) -> list[str]:
        return sorted(t for t, r in self.roles.items() if r == "honest")

    @property
    def attackers(self) -> list[str]:
        return sorted(t for t, r in self.roles.items() if r != "honest")

    @property
    def honest_share(self) -> float:
        return sum(s for t, s in self.mean_scores.items() if self.roles[t] == "honest")

    @property
    def attackers_share(self) -> float:
        return sum(s for t, s in self.mean_scores.items() if self.roles[t] != "honest")

    def trainer_rounds(self, trainers: Sequence[str], status: str) -> int:
        """How many (trainer, round) pairs had `status` ("flagged", or "excluded": flagged or left out by a
        defense)."""
        count = 0
        for outcome in self.outcomes:
            entries = outcome.report["trainers"]
            for t in trainers:
                state = entries.get(t, {}).get("status")
                count += state == "flagged" if status == "flagged" else state in ("flagged", "rejected")
        return count

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


@dataclass(frozen=True)
class _Setup:
    rule: str
    rule_params: dict[str, Any]
    defenses: list[dict[str, Any]]
    model: str
    alpha: float | None
    epochs: int
    batch_size: int
    outliers: OutlierConfig
    contribution: ContributionConfig
    hyperparams: HyperParams
    n_shards: int | None
    samples_per_trainer: int | None = None
    engine: Engine = LOCAL
    on_trained: Callable[[int, int, int], None] | None = None
    on_round: Callable[[int, RoundOutcome], None] | None = None


def simulate(
    n_honest: int = 5,
    attackers: Mapping[str, int] | None = None,
    rounds: int = 5,
    rule: str | None = None,
    seed: int = 0,
    *,
    attack: AttackSpec | None = None,
    rule_params: Mapping[str, Any] | None = None,
    defenses: Sequence[Mapping[str, Any]] | None = None,
    model: str = "digits_mlp",
    alpha: float | None = 1.0,
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
    """Run `rounds` rounds with `n_honest` honest trainers, the simple `attackers` (role -> count, roles in
    `ROLES`) and `attack` (an attack of the suite with its own colluders).

    The training set is cut into `n_shards` (at least one per data-using identity) label-skewed shards with a
    Dirichlet(`alpha`) prior, or equal IID shards when `alpha` is None; with `samples_per_trainer` (or more
    trainers than the data can give ten samples each) every trainer instead draws that many samples with its
    own Dirichlet label mix, so shards overlap (`sampled_shards`). `rule`, `rule_params` and `defenses`
    default to what `project create` picks (`aggregator.defaults`); Byzantine-count rules given without
    parameters assume one attacker gets past the defenses (`f = 1`). `engine` runs the trainings (virtual
    trainers as tasks) and the rounds' passes; `on_trained(round, done, total)` and `on_round(round, outcome)`
    follow the run.
    """
    attackers = dict(attackers or {})
    unknown = sorted(set(attackers) - set(ROLES) | ({"honest"} & set(attackers)))
    if unknown or any(c < 0 for c in attackers.values()) or n_honest < 0 or rounds < 1:
        raise AggregatorError(f"bad simulation set-up: unknown roles {unknown}, counts, or rounds {rounds}")
    rule = rule or DEFAULT_RULE
    if rule_params is None:
        rule_params = (
            default_rule_params() if rule == DEFAULT_RULE else _default_rule_params(rule, attackers, attack)
        )
    setup = _Setup(
        rule,
        dict(rule_params),
        default_defenses() if defenses is None else [dict(d) for d in defenses],
        model,
        alpha,
        epochs,
        batch_size,
        outliers or OutlierConfig(),
        contribution or ContributionConfig(seed=seed),
        hyperparams or HyperParams(),
        n_shards,
        samples_per_trainer,
        engine or LOCAL,
        on_trained,
        on_round,
    )
    with _one_thread():
        return _simulate(n_honest, attackers, attack, rounds, seed, setup, data or load_digits_data(seed))


def _shards(owners: list[str], data: DigitsData, setup: _Setup, seed: int) -> dict[str, Split]:
    count = max(setup.n_shards or 0, len(owners))
    samples = setup.samples_per_trainer
    if samples is None and count * _MIN_SHARD > len(data.train):
        samples = _MIN_SHARD * 3
    if samples is not None:
        # Near-IID draws (a flat label prior) when the shards are meant to be IID.
        alpha = setup.alpha if setup.alpha is not None else 100.0
        parts = sampled_shards(data.train, count, samples, alpha, seed)
    elif setup.alpha is None:
        parts = equal_iid_splits(data.train, count, seed)
    else:
        parts = non_iid_splits(data.train, count, setup.alpha, seed, _MIN_SHARD)
    return dict(zip(owners, parts, strict=False))


def _simulate(
    n_honest: int,
    attackers: dict[str, int],
    attack: AttackSpec | None,
    rounds: int,
    seed: int,
    setup: _Setup,
    data: DigitsData,
) -> SimulationResult:
    roles = {trainer_address("honest", i): "honest" for i in range(n_honest)}
    for role, count in sorted(attackers.items()):
        roles.update({trainer_address(role, i): role for i in range(count)})
    colluders = None
    if attack is not None and attack.count:
        members = [trainer_address(f"attack:{attack.label}", i) for i in range(attack.count)]
        colluders = Colluders(attack, sorted(members))
        roles.update({m: attack.name for m in members})
    # One shard per honest trainer, per data-using attacker, and one for the whole Sybil group; honest
    # trainers take the first shards, so a run without attackers (same `n_shards`) gives them the same data.
    honest = sorted(t for t, r in roles.items() if r == "honest")
    sybils = sorted(t for t, r in roles.items() if r == "sybil")
    owners = honest + sorted(t for t, r in roles.items() if r in _TRAINS and r != "sybil") + sybils[:1]
    owners += list(colluders.members) if colluders is not None else []
    shards = _shards(owners, data, setup, seed)
    for t in sybils[1:]:
        shards[t] = shards[sybils[0]]

    simple = {t: r for t, r in roles.items() if colluders is None or t not in colluders.members}
    state = initial_state(setup.model, seed)
    hp = setup.hyperparams
    history: dict[str, TrainerHistory] = {}
    outcomes: list[RoundOutcome] = []
    evaluator = builtin_evaluator(setup.model, data.validation.X, data.validation.y)
    for r in range(rounds):
        train = {"epochs": setup.epochs, "lr": hp.client_lr, "batch_size": setup.batch_size}
        round_seed = seed * 1_000_003 + r * 1000
        trained = None if setup.on_trained is None else partial(setup.on_trained, r)
        updates: dict[str, Any] = dict(
            role_updates(
                simple, shards, setup.model, state, train, round_seed, engine=setup.engine, on_trained=trained
            )
        )
        if colluders is not None:
            spec = evaluator.spec
            honest_rows = (
                torch.stack([_flat(updates[t], spec) for t in honest]) if honest else torch.zeros(0, 0)
            )
            updates.update(
                colluders.updates(setup.model, state, honest_rows, shards, train, round_seed, len(roles))
            )
        outcome = run_round(
            RoundInputs(
                evaluator=evaluator,
                global_state=state,
                updates=updates,
                rule=setup.rule,
                rule_params=setup.rule_params,
                defenses=setup.defenses,
                # How every simulated trainer trains: what FLTrust's reference update needs.
                recipe=Recipe(
                    "sgd", hp.client_lr, setup.epochs, None, setup.batch_size, 0.0, 0.9, round_seed
                ),
                outliers=setup.outliers,
                contribution=replace(setup.contribution, seed=setup.contribution.seed + r),
                hyperparams=hp,
                history=history,
                round_index=r,
                # Honest trainers submit as soon as they have trained; colluders who watch them, after.
                submission_order=[*sorted(simple), *(colluders.members if colluders is not None else [])],
                context={"simulation_seed": seed},
            ),
            setup.engine,
        )
        outcomes.append(outcome)
        if setup.on_round is not None:
            setup.on_round(r, outcome)
        state, hp, history = outcome.global_state, outcome.hyperparams, outcome.history
    accuracy = evaluate(setup.model, state, data.test.X, data.test.y).accuracy
    backdoor = None
    if colluders is not None and hasattr(colluders.attack, "trigger"):
        X, y = triggered_test_set(data.test.X, data.test.y, colluders.attack.trigger)
        backdoor = evaluate(setup.model, state, X, y).accuracy
    sizes = {t: len(shards[t]) for t in roles if t in shards}
    coverage = {t: int(torch.unique(shards[t].y).numel()) for t in roles if t in shards}
    return SimulationResult(roles, outcomes, accuracy, state, backdoor, sizes, coverage)


def _flat(delta: Mapping[str, torch.Tensor], spec: Any) -> torch.Tensor:
    return flatten_state(delta, spec)


def _default_rule_params(
    rule: str, attackers: Mapping[str, int], attack: AttackSpec | None
) -> dict[str, Any]:
    """Byzantine-count rules assume one attacker slips past the defenses (f = 1), none without attackers."""
    if rule in ("multi_krum", "bulyan"):
        return {"f": 1 if sum(attackers.values()) or (attack is not None and attack.count) else 0}
    return {}


def demo(seed: int = 0, rule: str | None = None, rounds: int = 5) -> DemoResult:
    """The acceptance scenario (`DEMO_ATTACKERS` beside 5 honest trainers) and the same run without attackers."""
    data = load_digits_data(seed)
    attacked = simulate(5, DEMO_ATTACKERS, rounds, rule, seed, data=data)
    baseline = simulate(5, {}, rounds, rule, seed, data=data, n_shards=_DEMO_SHARDS)
    return DemoResult(attacked, baseline)
