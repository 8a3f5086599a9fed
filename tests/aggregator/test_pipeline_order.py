"""A global model whose state dict lists its tensors in another order than the spec (as a decoded safetensors
file does: sorted names) must come out of a round with every tensor in its place."""

from __future__ import annotations

import torch

from aggregator.evaluation import builtin_evaluator
from aggregator.models import evaluate, initial_state, model_spec
from aggregator.pipeline import RoundInputs, run_round


def test_round_keeps_tensor_names_when_the_state_is_not_in_spec_order():
    spec = model_spec("digits_mlp")
    state = initial_state("digits_mlp", seed=0)
    shuffled = {k: state[k] for k in sorted(state, reverse=True)}
    assert list(shuffled) != list(spec)
    generator = torch.Generator().manual_seed(0)
    updates = {
        f"0x{i:040x}": {k: 0.01 * torch.randn(v.shape, generator=generator) for k, v in state.items()}
        for i in range(1, 6)
    }
    X = torch.rand(40, 64, generator=generator)
    y = torch.randint(0, 10, (40,), generator=generator)
    outcome = run_round(
        RoundInputs(
            evaluator=builtin_evaluator("digits_mlp", X, y),
            global_state=shuffled,
            updates=updates,
            rule="fedavg",
        )
    )
    for name, (shape, _) in spec.items():
        assert tuple(outcome.global_state[name].shape) == shape
    # The reported validation accuracy is that of the model the round returns.
    assert evaluate("digits_mlp", outcome.global_state, X, y).accuracy == outcome.metrics["accuracy_after"]
