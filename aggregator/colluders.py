"""What a group of colluders submits in a simulated round: the training an attack asks for, what the colluders
know, the crafted updates and their jitter (`aggregator.attacks` holds the attacks themselves).

Colluders have shards of data like everyone else. They train honestly on them when they estimate the honest
statistics themselves (`knowledge="own"`) or when the attack needs their own update (scaling), and on poisoned
data when the attack poisons (label flipping, Sybil copies, backdoors). Omniscient colluders see the round's
honest updates before they send theirs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from aggregator.attacks import Attack, AttackSpec, AttackView, get_attack, jitter
from aggregator.data import Split
from aggregator.errors import AggregatorError
from aggregator.models import flatten_state, model_spec, state_delta
from aggregator.training import train_local

__all__ = ["Colluders", "flat_delta"]


def flat_delta(
    model: str, local: Mapping[str, torch.Tensor], global_state: Mapping[str, torch.Tensor]
) -> torch.Tensor:
    return flatten_state(state_delta(local, global_state), model_spec(model))


@dataclass
class Colluders:
    """One attack run by `members` (addresses, each with its shard) across rounds; keeps the attack's memory."""

    spec: AttackSpec
    members: Sequence[str]
    attack: Attack = field(init=False)
    memory: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.attack = get_attack(self.spec.name, **dict(self.spec.params))
        if len(self.members) != self.spec.count:
            raise AggregatorError(
                f"{self.spec.label}: {self.spec.count} colluders, {len(self.members)} addresses"
            )

    def _train(
        self,
        model: str,
        global_state: Mapping[str, torch.Tensor],
        shards: Mapping[str, Split],
        train: Mapping[str, Any],
        round_seed: int,
        poisoned: bool,
    ) -> torch.Tensor:
        rows = []
        for k, member in enumerate(self.members):
            shard = shards[member]
            seed = round_seed + 7919 * (k + 1) + (104_729 if poisoned else 0)
            X, y = self.attack.poison(shard.X, shard.y, seed) if poisoned else (shard.X, shard.y)
            local = train_local(model, global_state, X, y, seed=seed, **dict(train))
            rows.append(flat_delta(model, local, global_state))
        return torch.stack(rows)

    def updates(
        self,
        model: str,
        global_state: Mapping[str, torch.Tensor],
        honest: torch.Tensor,
        shards: Mapping[str, Split],
        train: Mapping[str, Any],
        round_seed: int,
        n: int,
    ) -> dict[str, torch.Tensor]:
        """This round's flat deltas of every colluder; `honest` `[h, d]` are the round's honest updates."""
        needs_clean = self.spec.knowledge == "own" or self.attack.trains == "clean"
        clean = self._train(model, global_state, shards, train, round_seed, False) if needs_clean else None
        own = clean if self.attack.trains == "clean" else None
        if self.attack.trains == "poisoned":
            own = self._train(model, global_state, shards, train, round_seed, True)
        reference = honest if self.spec.knowledge == "omniscient" else clean
        if reference is None or reference.shape[0] == 0:
            raise AggregatorError(f"{self.spec.label}: the colluders know no honest update to work from")
        view = AttackView(reference, self.spec.count, n, round_seed, own=own, memory=self.memory)
        crafted = self.attack.craft(view)
        self.memory = dict(crafted.memory)
        rows = (
            jitter(crafted.updates, self.spec.jitter, round_seed + 1) if self.spec.jitter else crafted.updates
        )
        return {member: rows[k].to(torch.float32).contiguous() for k, member in enumerate(self.members)}
