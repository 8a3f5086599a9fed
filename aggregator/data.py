"""The digits data set (scikit-learn `load_digits`) as the marketplace's demo task.

A fixed stratified test split, the owner's validation split (used to value contributions), and non-IID
training shards for `k` trainers drawn with a Dirichlet prior over labels (Hsu, Qi, Brown 2019, "Measuring the
Effects of Non-Identical Data Distribution for Federated Visual Classification").
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from aggregator.errors import AggregatorError

__all__ = [
    "DigitsData",
    "Split",
    "dirichlet_partition",
    "load_digits_data",
    "non_iid_splits",
    "sampled_shards",
]

NUM_CLASSES = 10


@dataclass(frozen=True)
class Split:
    """Features `[m, 64]` float32 in [0, 1] and labels `[m]` int64."""

    X: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return int(self.y.shape[0])


@dataclass(frozen=True)
class DigitsData:
    train: Split
    validation: Split
    test: Split


@cache
def _raw() -> tuple[np.ndarray, np.ndarray]:
    bunch = load_digits()
    return (bunch.data / 16.0).astype(np.float32), bunch.target.astype(np.int64)


def _split(X: np.ndarray, y: np.ndarray) -> Split:
    return Split(torch.from_numpy(np.ascontiguousarray(X)), torch.from_numpy(np.ascontiguousarray(y)))


def load_digits_data(
    seed: int = 0, test_fraction: float = 0.2, validation_fraction: float = 0.1
) -> DigitsData:
    """Stratified train / validation / test splits of the 1797 digits; the same seed gives the same split."""
    if not (
        0 < test_fraction < 1 and 0 < validation_fraction < 1 and test_fraction + validation_fraction < 1
    ):
        raise AggregatorError("test and validation fractions must be in (0, 1) and leave training data")
    X, y = _raw()
    X_rest, X_test, y_rest, y_test = train_test_split(
        X, y, test_size=test_fraction, stratify=y, random_state=seed
    )
    X_train, X_val, y_train, y_val = train_test_split(
        X_rest,
        y_rest,
        test_size=validation_fraction / (1 - test_fraction),
        stratify=y_rest,
        random_state=seed,
    )
    return DigitsData(_split(X_train, y_train), _split(X_val, y_val), _split(X_test, y_test))


def dirichlet_partition(
    labels: np.ndarray, k: int, alpha: float, seed: int, min_size: int = 10
) -> list[np.ndarray]:
    """Indices for `k` shards: each class is spread over shards by proportions ~ Dirichlet(alpha).

    Small `alpha` gives skewed label mixes. Draws are repeated (same generator) until every shard has at
    least `min_size` samples, so the result depends only on the arguments.
    """
    if k < 1 or alpha <= 0 or not np.isfinite(alpha):
        raise AggregatorError(f"need k >= 1 and a positive finite alpha, got k={k}, alpha={alpha}")
    if k * min_size > len(labels):
        raise AggregatorError(f"{len(labels)} samples cannot give {k} shards of at least {min_size}")
    rng = np.random.default_rng(seed)
    for _ in range(1000):
        shards: list[list[int]] = [[] for _ in range(k)]
        for c in np.unique(labels):
            members = rng.permutation(np.flatnonzero(labels == c))
            cuts = (np.cumsum(rng.dirichlet(np.full(k, alpha))) * len(members)).astype(int)[:-1]
            for shard, part in zip(shards, np.split(members, cuts), strict=True):
                shard.extend(part.tolist())
        if min(len(s) for s in shards) >= min_size:
            return [np.sort(np.asarray(s, dtype=np.int64)) for s in shards]
    raise AggregatorError(f"could not draw {k} shards of at least {min_size} samples with alpha={alpha}")


def non_iid_splits(
    split: Split, k: int, alpha: float = 0.5, seed: int = 0, min_size: int = 10
) -> list[Split]:
    """`split` divided into `k` label-skewed shards (see `dirichlet_partition`)."""
    parts = dirichlet_partition(split.y.numpy(), k, alpha, seed, min_size)
    return [Split(split.X[torch.from_numpy(p)], split.y[torch.from_numpy(p)]) for p in parts]


def sampled_shards(split: Split, k: int, samples: int, alpha: float = 0.5, seed: int = 0) -> list[Split]:
    """`k` shards of `samples` examples each, for federations larger than the data: every shard draws its own
    label mix ~ Dirichlet(`alpha`) and then examples of each label without replacement within the shard
    (with replacement once a label runs out), so shards overlap across trainers as in large-scale FL
    simulations. Depends only on the arguments."""
    if k < 1 or samples < 1 or alpha <= 0 or not np.isfinite(alpha):
        raise AggregatorError(
            f"need k >= 1, samples >= 1 and a positive finite alpha; got {k}, {samples}, {alpha}"
        )
    labels = split.y.numpy()
    classes = np.unique(labels)
    members = [np.flatnonzero(labels == c) for c in classes]
    rng = np.random.default_rng(seed)
    shards = []
    for _ in range(k):
        counts = rng.multinomial(samples, rng.dirichlet(np.full(len(classes), alpha)))
        picked = [
            rng.choice(group, size=count, replace=count > len(group))
            for group, count in zip(members, counts, strict=True)
            if count
        ]
        index = torch.from_numpy(np.sort(np.concatenate(picked)))
        shards.append(Split(split.X[index], split.y[index]))
    return shards
