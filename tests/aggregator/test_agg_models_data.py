"""Model zoo, digits splits, local training and the attack behaviours."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aggregator.data import dirichlet_partition, load_digits_data, non_iid_splits
from aggregator.errors import AggregatorError, InvalidUpdate
from aggregator.models import (
    MODELS,
    build_model,
    evaluate,
    flatten_state,
    initial_state,
    model_spec,
    state_delta,
    unflatten_state,
)
from aggregator.training import (
    free_rider,
    gaussian_noise,
    label_flip,
    scale,
    sign_flip,
    sybil_copies,
    train_local,
)

MLP = "digits_mlp"
TRAIN = {"epochs": 3, "lr": 0.05, "batch_size": 16}


@pytest.fixture(scope="module")
def data():
    return load_digits_data(0)


def flat_delta(local, base):
    return flatten_state(state_delta(local, base), model_spec(MLP))


def test_zoo_and_spec():
    assert {"digits_linear", "digits_mlp", "digits_cnn", "mlp", "linear", "cnn"} <= set(MODELS)
    spec = model_spec(MLP)
    assert list(spec) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert spec["0.weight"] == ((64, 64), "float32") and spec["2.bias"] == ((10,), "float32")
    with pytest.raises(AggregatorError, match="unknown model"):
        model_spec("resnet-9000")
    with pytest.raises(AggregatorError):
        build_model("nope")


def test_initial_weights_depend_only_on_the_seed():
    torch.manual_seed(123)
    a = initial_state(MLP, 7)
    torch.manual_seed(456)
    b = initial_state(MLP, 7)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(initial_state(MLP, 8)["0.weight"], a["0.weight"])


def test_flatten_and_unflatten_round_trip():
    state = initial_state(MLP)
    flat = flatten_state(state, model_spec(MLP))
    assert flat.shape == (64 * 64 + 64 + 64 * 10 + 10,) and flat.dtype == torch.float32
    back = unflatten_state(flat, state)
    assert all(torch.equal(back[k], state[k]) for k in state)
    with pytest.raises(InvalidUpdate):
        unflatten_state(flat[:-1], state)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda s: s.pop("2.bias"),
        lambda s: s.update({"extra": torch.zeros(1)}),
        lambda s: s.update({"0.bias": torch.zeros(65)}),
        lambda s: s.update({"0.bias": torch.zeros(64, dtype=torch.float64)}),
        lambda s: s.update({"0.bias": torch.zeros(64, dtype=torch.int32)}),
        lambda s: s.update({"0.bias": [0.0] * 64}),
    ],
    ids=["missing", "extra", "shape", "float64", "int", "list"],
)
def test_flatten_against_the_spec_refuses_mismatches(mutate):
    state = initial_state(MLP)
    mutate(state)
    with pytest.raises(InvalidUpdate):
        flatten_state(state, model_spec(MLP))


def test_evaluate_and_its_refusals(data):
    result = evaluate(MLP, initial_state(MLP), data.test.X, data.test.y)
    assert 0.0 <= result.accuracy <= 1.0 and result.loss > 0
    with pytest.raises(AggregatorError):
        evaluate(MLP, initial_state(MLP), data.test.X[:5], data.test.y[:6])
    with pytest.raises(AggregatorError):
        evaluate(MLP, initial_state(MLP), data.test.X[:0], data.test.y[:0])


def test_splits_are_fixed_stratified_and_disjoint(data):
    assert (len(data.train), len(data.validation), len(data.test)) == (1257, 180, 360)
    again = load_digits_data(0)
    assert torch.equal(again.test.X, data.test.X) and torch.equal(again.validation.y, data.validation.y)
    assert data.train.X.dtype == torch.float32 and data.train.y.dtype == torch.int64
    assert float(data.train.X.max()) <= 1.0
    assert torch.bincount(data.test.y).min() >= 30  # stratified: every class present
    rows = {tuple(r.tolist()) for r in data.test.X}
    assert not rows & {tuple(r.tolist()) for r in data.validation.X[:50]}
    with pytest.raises(AggregatorError):
        load_digits_data(0, test_fraction=0.6, validation_fraction=0.5)


def test_dirichlet_shards_partition_the_data_with_label_skew(data):
    shards = non_iid_splits(data.train, 8, alpha=0.3, seed=1)
    assert sum(len(s) for s in shards) == len(data.train) and min(len(s) for s in shards) >= 10
    parts = dirichlet_partition(data.train.y.numpy(), 8, 0.3, 1)
    assert len(np.unique(np.concatenate(parts))) == len(data.train)
    mixes = torch.stack([torch.bincount(s.y, minlength=10).double() / len(s) for s in shards])
    assert float(mixes.max(dim=1).values.mean()) > 0.25  # far from the uniform 0.1
    again = dirichlet_partition(data.train.y.numpy(), 8, 0.3, 1)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again, strict=True))
    for k, alpha in [(0, 1.0), (3, 0.0), (3, float("nan")), (200, 1.0)]:
        with pytest.raises(AggregatorError):
            dirichlet_partition(data.train.y.numpy(), k, alpha, 0)


def test_local_training_is_deterministic_and_learns(data):
    g = initial_state(MLP)
    X, y = data.train.X[:500], data.train.y[:500]
    a = train_local(MLP, g, X, y, seed=3, **TRAIN)
    b = train_local(MLP, g, X, y, seed=3, **TRAIN)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert evaluate(MLP, a, data.test.X, data.test.y).accuracy > 0.7
    c = train_local(MLP, g, X, y, seed=4, **TRAIN)
    assert not torch.equal(a["0.weight"], c["0.weight"])
    for bad in ({"epochs": 0}, {"lr": 0.0}, {"batch_size": 0}):
        with pytest.raises(AggregatorError):
            train_local(MLP, g, data.train.X, data.train.y, seed=0, **{**TRAIN, **bad})
    with pytest.raises(AggregatorError):
        train_local(MLP, g, data.train.X, data.train.y[:5], seed=0, **TRAIN)


def test_attack_updates(data):
    g = initial_state(MLP)
    local = train_local(MLP, g, data.train.X[:200], data.train.y[:200], seed=0, **TRAIN)
    honest = flat_delta(local, g)
    assert torch.allclose(flat_delta(sign_flip(g, local), g), -honest, atol=1e-6)
    assert torch.allclose(flat_delta(scale(g, local), g), 10 * honest, atol=1e-5)
    assert float(flat_delta(free_rider(g), g).abs().max()) == 0.0
    assert torch.equal(flat_delta(free_rider(g, "zeros"), g), -flatten_state(g, model_spec(MLP)))
    with pytest.raises(AggregatorError):
        free_rider(g, "half")
    noisy = flat_delta(gaussian_noise(MLP, g, std=0.1, seed=1), g)
    assert 0.08 < float(noisy.std()) < 0.12
    assert torch.equal(noisy, flat_delta(gaussian_noise(MLP, g, std=0.1, seed=1), g))
    flipped = flat_delta(label_flip(MLP, g, data.train.X[:200], data.train.y[:200], seed=0, **TRAIN), g)
    assert float(torch.nn.functional.cosine_similarity(flipped, honest, dim=0)) < 0.5
    copies = sybil_copies(local, 3)
    assert len(copies) == 3 and all(torch.equal(c["0.weight"], local["0.weight"]) for c in copies)
    copies[0]["0.weight"].zero_()
    assert not torch.equal(copies[1]["0.weight"], copies[0]["0.weight"])
    with pytest.raises(AggregatorError):
        sybil_copies(local, 0)
