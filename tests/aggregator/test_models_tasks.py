"""Model sources, tasks, the evaluator and the training recipe, on small in-memory data."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from aggregator.errors import AggregatorError, InvalidUpdate
from aggregator.evaluation import Evaluator, builtin_evaluator
from aggregator.examples import Examples
from aggregator.models import (
    BuiltModel,
    ModelContext,
    ModelError,
    ModelSource,
    build,
    flatten_state,
    parse_lora,
    parse_model,
    state_delta,
)
from aggregator.tasks import get_task
from aggregator.training import Recipe, train


def blobs(n=120, features=6, classes=3, seed=0):
    """Separable Gaussian blobs: a task any of the models learns in a few steps."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, classes, (n,), generator=g)
    centers = 3 * torch.randn(classes, features, generator=g)
    return Examples(y, features=centers[y] + torch.randn(n, features, generator=g))


def test_model_names_parse_into_sources():
    assert parse_model("digits_mlp") == ("builtin", "digits_mlp")
    assert parse_model("builtin:cnn") == ("builtin", "cnn")
    assert parse_model("hf:/models/minilm") == ("hf", "/models/minilm")
    assert parse_model("plugin:tabular") == ("plugin", "tabular")
    for bad in ("", "hf:", "resnet:18", "  "):
        with pytest.raises(ModelError):
            parse_model(bad)
    with pytest.raises(ModelError, match="unknown model 'resnet18'"):
        build(ModelSource("builtin", "resnet18"), ModelContext("classification", 10, (64,)))
    with pytest.raises(ModelError, match="--lora applies to hf"):
        ModelSource("builtin", "mlp", lora=parse_lora("rank=4"))


@pytest.mark.parametrize(
    ("name", "shape", "outputs"),
    [
        ("mlp", (32,), 12),
        ("linear", (5,), 1),
        ("cnn", (1, 8, 8), 10),
        ("cnn", (6, 6), 4),
        ("digits_cnn", (64,), 10),
    ],
)
def test_builtin_models_size_themselves_from_the_data(name, shape, outputs):
    task = "regression" if outputs == 1 else "classification"
    model = build(ModelSource("builtin", name), ModelContext(task, outputs, shape), seed=3)
    x = torch.rand(2, *shape)
    assert model.outputs(((x,), {})).shape == (2, outputs)
    again = build(ModelSource("builtin", name), ModelContext(task, outputs, shape), seed=3)
    assert torch.equal(flatten_state(model.initial_state()), flatten_state(again.initial_state()))


def test_builtin_models_refuse_data_they_cannot_take():
    with pytest.raises(ModelError, match="use builtin:mlp"):
        build(ModelSource("builtin", "digits_mlp"), ModelContext("classification", 12, (64,)))
    with pytest.raises(ModelError, match="image-shaped"):
        build(ModelSource("builtin", "cnn"), ModelContext("classification", 3, (30,)))
    with pytest.raises(ModelError, match="takes no option"):
        build(ModelSource("builtin", "mlp", options={"hiden": 8}), ModelContext("classification", 3, (4,)))
    with pytest.raises(ModelError, match="text project"):
        build(ModelSource("builtin", "mlp"), ModelContext("text-classification", 3, None))


def test_lora_settings_parse_with_targets_and_the_ffa_flag():
    spec = parse_lora("rank=8,alpha=16,targets=query,value,ffa")
    assert (spec.rank, spec.scale_alpha, spec.targets, spec.ffa) == (8, 16.0, ("query", "value"), True)
    assert parse_lora("rank=4,targets=q+k").targets == ("q", "k") and parse_lora("rank=4").scale_alpha == 8.0
    for bad in ("alpha=2", "rank=0", "rank=x", "rank=4,colour=red", "rank=4,dropout=1.5", "rank=4,wat"):
        with pytest.raises(ModelError):
            parse_lora(bad)


class WithBatchNorm(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))

    def forward(self, x):
        return self.net(x)


def test_float_buffers_travel_and_integer_buffers_stay():
    """The stated rule: trainable parameters and float buffers (BatchNorm running statistics) travel and are
    averaged; integer buffers (num_batches_tracked) and frozen weights stay as built."""
    torch.manual_seed(0)
    module = WithBatchNorm()
    module.net[0].weight.requires_grad_(False)  # frozen: stays
    model = BuiltModel(module, uri="test:bn")
    assert "net.1.running_mean" in model.spec and "net.1.running_var" in model.spec
    assert "net.1.num_batches_tracked" not in model.spec and "net.0.weight" not in model.spec
    assert set(model.frozen_state()) == {"net.0.weight", "net.1.num_batches_tracked"}
    start = model.initial_state()
    frozen_before = model.module.net[0].weight.detach().clone()
    local = train(model, "classification", start, blobs(), Recipe(lr=0.1, epochs=1, batch_size=32))
    delta = state_delta(local, start)
    assert float(delta["net.1.running_mean"].abs().sum()) > 0  # training moved the statistics: they travel
    assert torch.equal(model.module.net[0].weight, frozen_before)
    assert int(model.module.net[1].num_batches_tracked) > 0  # counted locally, never sent
    # Evaluating a flat vector uses its running statistics (eval mode), not the module's own.
    ev = Evaluator(model, "classification", blobs(seed=1))
    moved = flatten_state(local, model.spec)
    assert ev.evaluate(moved) != ev.evaluate(flatten_state(start, model.spec))


def test_regression_task_reports_r2_and_mse():
    task = get_task("regression")
    truth = torch.tensor([1.0, 2.0, 3.0, 4.0])
    perfect = task.measure(truth[:, None], truth)
    assert perfect["r2"] == 1.0 and perfect["mse"] == 0.0 == perfect["loss"]
    mean = task.measure(torch.full((4, 1), 2.5), truth)
    assert mean["r2"] == pytest.approx(0.0) and mean["mse"] == pytest.approx(1.25)
    assert task.describe() == {"name": "regression", "loss": "mse", "metric": "r2"}
    with pytest.raises(AggregatorError, match="unknown task"):
        get_task("ranking")


def test_regression_trains_and_improves_r2():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(200, 5, generator=g)
    y = X @ torch.tensor([1.0, -2.0, 0.5, 0.0, 3.0]) + 0.1 * torch.randn(200, generator=g)
    data = Examples(y, features=X)
    model = build(ModelSource("builtin", "linear"), ModelContext("regression", 1, (5,)))
    ev = Evaluator(model, "regression", data)
    start = model.initial_state()
    before = ev.evaluate_state(start)
    local = train(
        model, "regression", start, data, Recipe(optimizer="adam", lr=0.05, epochs=30, batch_size=32)
    )
    after = ev.evaluate_state(local)
    assert after["r2"] > 0.95 > before["r2"] and after["mse"] < before["mse"]


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw"])
def test_every_recipe_optimizer_trains_and_is_reproducible(optimizer):
    data = blobs()
    recipe = Recipe(optimizer=optimizer, lr=0.01 if optimizer != "sgd" else 0.1, max_steps=12, batch_size=16)
    losses: list[float] = []
    model = build(ModelSource("builtin", "mlp"), ModelContext("classification", 3, (6,)))
    start = model.initial_state()
    a = train(model, "classification", start, data, recipe, on_step=lambda s, t, loss: losses.append(loss))
    b = train(model, "classification", start, data, recipe)
    assert len(losses) == 12 and all(torch.equal(a[k], b[k]) for k in a)
    ev = Evaluator(model, "classification", data)
    assert ev.evaluate_state(a)["loss"] < ev.evaluate_state(start)["loss"]


def test_recipe_settings_are_checked():
    for bad in (
        {"optimizer": "lion"},
        {"lr": 0.0},
        {"lr": float("nan")},
        {"epochs": 0},
        {"batch_size": 0},
        {"max_steps": 0},
        {"weight_decay": -1.0},
        {"momentum": 1.0},
    ):
        with pytest.raises(AggregatorError):
            Recipe(**bad)
    with pytest.raises(AggregatorError, match="unknown recipe"):
        Recipe.from_dict({"lr": 0.1, "epoch": 3})
    assert Recipe(max_steps=7).steps(1000) == 7 and Recipe(epochs=2, batch_size=10).steps(95) == 20


def test_training_that_diverges_is_a_clear_error():
    model = build(ModelSource("builtin", "linear"), ModelContext("regression", 1, (6,)))
    data = Examples(torch.full((64,), 1e30), features=torch.full((64, 6), 1e30))
    with pytest.raises(AggregatorError, match="diverged"):
        train(model, "regression", model.initial_state(), data, Recipe(lr=1.0, epochs=3))


def test_the_evaluator_refuses_what_cannot_be_scored():
    model = build(ModelSource("builtin", "mlp"), ModelContext("classification", 3, (6,)))
    with pytest.raises(ModelError, match="cannot run on this data"):
        Evaluator(model, "classification", blobs(features=5))  # 5 features for a 6-input model
    with pytest.raises(ModelError, match="labels need 5 classes"):
        Evaluator(model, "classification", blobs(classes=5))
    with pytest.raises(ModelError, match="needs an hf: text model"):
        Evaluator(model, "text-classification", blobs())
    with pytest.raises(AggregatorError, match="real-valued targets"):
        Evaluator(model, "regression", blobs())
    ev = Evaluator(model, "classification", blobs())
    with pytest.raises(InvalidUpdate, match="wrong size"):
        ev.evaluate(torch.zeros(ev.dim + 1))
    assert ev.describe() == {"model": "builtin:mlp", "task": ev.task.describe(), "examples": 120}


def test_builtin_evaluator_matches_the_named_helpers():
    data = blobs(features=64, classes=10)
    ev = builtin_evaluator("digits_mlp", data.features, data.targets)
    model = build(ModelSource("builtin", "digits_mlp"), ModelContext("classification", 10, (64,)))
    flat = flatten_state(model.initial_state(), model.spec)
    a, b = ev.evaluate(flat), ev.evaluate(flat)
    assert a == b and set(a) == {"accuracy", "loss"}
