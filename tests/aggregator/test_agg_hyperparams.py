"""Server optimizer steps, the schedule, and the state that travels with the round report."""

from __future__ import annotations

import pytest
import torch

from aggregator.errors import AggregatorError
from aggregator.hyperparams import HyperParams


def test_sgd_step_and_schedule():
    hp = HyperParams(server_lr=0.5, client_lr=0.1, client_lr_decay=0.5, client_lr_min=0.03)
    new, same = hp.apply(torch.ones(3), torch.tensor([2.0, 0.0, -2.0]))
    assert torch.equal(new, torch.tensor([2.0, 1.0, 0.0])) and same is hp
    better = hp.advance(loss_before=1.0, loss_after=0.5)
    assert better.server_lr == 0.5 and better.client_lr == 0.05 and better.round == 1
    worse = better.advance(loss_before=0.5, loss_after=0.9)
    assert worse.server_lr == 0.25 and worse.client_lr == 0.03 and worse.round == 2
    assert HyperParams(server_lr=0.06).advance(1.0, float("nan")).server_lr == 0.05


def test_fedadam_moments_and_report_round_trip():
    hp = HyperParams(optimizer="fedadam", server_lr=0.1)
    new, stepped = hp.apply(torch.zeros(4), torch.tensor([1.0, -1.0, 0.0, 2.0]))
    # First step: m = 0.1 delta, v = 0.01 delta^2, so the step is lr * sign(delta) (up to tau).
    assert torch.allclose(new, torch.tensor([0.1, -0.1, 0.0, 0.1]), atol=2e-3)
    assert set(stepped.state_tensors()) == {"m", "v"} and hp.state_tensors() == {}
    report = stepped.to_report()
    assert report["state_sha256"] is not None and "m" not in report
    again = HyperParams.from_report(report, stepped.state_tensors())
    assert torch.equal(again.m, stepped.m) and again.to_report() == report
    tampered = {"m": stepped.m + 1.0, "v": stepped.v}
    with pytest.raises(AggregatorError, match="hash"):
        HyperParams.from_report(report, tampered)
    with pytest.raises(AggregatorError, match="unknown"):
        HyperParams.from_report({**report, "momentum": 0.9})
    with pytest.raises(AggregatorError):
        stepped.apply(torch.zeros(5), torch.zeros(5))


@pytest.mark.parametrize(
    "bad",
    [
        {"optimizer": "adagrad"},
        {"server_lr": 0.0},
        {"client_lr": float("nan")},
        {"backoff": 1.5},
        {"beta2": 0.0},
        {"round": -1},
        {"m": torch.zeros(2)},
    ],
)
def test_bad_hyper_parameters_are_refused(bad):
    with pytest.raises(AggregatorError):
        HyperParams(**bad)


def test_mismatched_shapes_are_refused():
    with pytest.raises(AggregatorError):
        HyperParams().apply(torch.zeros(3), torch.zeros(4))
