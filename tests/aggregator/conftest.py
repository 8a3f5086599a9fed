"""One real round of digits updates (honest trainers on non-IID shards, plus attackers), shared by tests."""

from __future__ import annotations

import pytest
import torch

from aggregator.data import load_digits_data, non_iid_splits
from aggregator.models import flatten_state, initial_state, model_spec, state_delta
from aggregator.training import label_flip, train_local

MLP = "digits_mlp"
TRAIN = {"epochs": 5, "lr": 0.05, "batch_size": 16}


class DigitsRound:
    """Six honest deltas `honest [6, d]`, a label-flipped one, the global model and the data."""

    def __init__(self) -> None:
        self.data = load_digits_data(0)
        self.global_state = initial_state(MLP, 0)
        self.spec = model_spec(MLP)
        shards = non_iid_splits(self.data.train, 7, alpha=1.0, seed=0)
        deltas = []
        for i, shard in enumerate(shards[:6]):
            local = train_local(MLP, self.global_state, shard.X, shard.y, seed=i, **TRAIN)
            deltas.append(self.flat(state_delta(local, self.global_state)))
        self.honest = torch.stack(deltas)
        flipped = label_flip(MLP, self.global_state, shards[6].X, shards[6].y, seed=6, **TRAIN)
        self.label_flipped = self.flat(state_delta(flipped, self.global_state))

    def flat(self, state):
        return flatten_state(state, self.spec)

    @property
    def global_flat(self) -> torch.Tensor:
        return self.flat(self.global_state)


@pytest.fixture(scope="session")
def digits_round() -> DigitsRound:
    return DigitsRound()
