"""The safetensors model codec: round trips with metadata, and a clear refusal of anything off-spec."""

from __future__ import annotations

import json
import pickle
import struct

import pytest
import torch

from backend.storage import CodecError
from backend.storage.codec import (
    META_BASE_MODEL,
    META_PROJECT,
    META_ROUND,
    ModelSpec,
    TensorSpec,
    decode_state,
    encode_state,
    state_metadata,
)


def model_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return {
        "layer.weight": torch.randn(4, 3),
        "layer.bias": torch.zeros(4, dtype=torch.float64),
        "embed": torch.randn(10, 2, dtype=torch.bfloat16),
        "steps": torch.tensor([7], dtype=torch.int64),
        "mask": torch.tensor([True, False]),
    }


def test_round_trip_keeps_tensors_and_metadata() -> None:
    state = model_state()
    meta = state_metadata(3, 2, "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH", trainer="0xabc")
    tensors, metadata = decode_state(encode_state(state, meta), ModelSpec.from_state_dict(state))
    assert metadata == {
        META_PROJECT: "3",
        META_ROUND: "2",
        META_BASE_MODEL: meta[META_BASE_MODEL],
        "trainer": "0xabc",
    }
    assert tensors.keys() == state.keys()
    for name, tensor in state.items():
        assert tensors[name].dtype == tensor.dtype and torch.equal(tensors[name], tensor)


def test_encoding_is_deterministic() -> None:
    state = model_state()
    assert encode_state(state, {"a": "1"}) == encode_state(dict(reversed(state.items())), {"a": "1"})


def test_tied_and_strided_tensors_are_stored() -> None:
    shared = torch.randn(3, 3)
    state = {"a": shared, "b": shared, "t": shared.t()}
    tensors, _ = decode_state(encode_state(state, {}))
    assert torch.equal(tensors["a"], shared) and torch.equal(tensors["t"], shared.t())


def test_spec_json_round_trip_keeps_order() -> None:
    spec = ModelSpec.from_state_dict(model_state())
    again = ModelSpec.from_json(spec.to_json())
    assert again == spec and list(again) == list(model_state())
    assert again["layer.weight"] == TensorSpec((4, 3), "float32")


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda s: s.pop("layer.bias"), "missing tensor.*layer.bias"),
        (lambda s: s.update(extra=torch.zeros(1)), "unexpected tensor.*extra"),
        (
            lambda s: s.update({"layer.weight": torch.randn(3, 4)}),
            r"'layer.weight' has shape \(3, 4\), expected \(4, 3\)",
        ),
        (
            lambda s: s.update({"layer.bias": torch.zeros(4)}),
            "'layer.bias' has dtype float32, expected float64",
        ),
    ],
    ids=["missing", "unexpected", "shape", "dtype"],
)
def test_decode_refuses_off_spec_states(mutate, message) -> None:
    spec = ModelSpec.from_state_dict(model_state())
    state = model_state()
    mutate(state)
    with pytest.raises(CodecError, match=message):
        decode_state(encode_state(state, {}), spec)


def _with_value(name: str, value: float) -> bytes:
    """safetensors bytes holding a non-finite value, written by hand (encode_state refuses to write them)."""
    header = json.dumps({name: {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}).encode()
    return struct.pack("<Q", len(header)) + header + struct.pack("<2f", 1.0, value)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_decode_refuses_non_finite_values_naming_the_tensor(value) -> None:
    with pytest.raises(CodecError, match=r"tensor 'w' has 1 non-finite value"):
        decode_state(_with_value("w", value))


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_encode_refuses_non_finite_values(value) -> None:
    with pytest.raises(CodecError, match="'bad' has 1 non-finite"):
        encode_state({"ok": torch.ones(2), "bad": torch.tensor([0.0, value])}, {})


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"garbage that is not safetensors",
        pickle.dumps({"w": [1.0, 2.0]}),
        struct.pack("<Q", 2**40) + b"{}",
        struct.pack("<Q", 2) + b"{",
    ],
    ids=["empty", "garbage", "pickle", "huge-header", "bad-json"],
)
def test_decode_refuses_non_safetensors_bytes(data) -> None:
    with pytest.raises(CodecError, match="not a safetensors file"):
        decode_state(data)


def test_decode_refuses_truncated_bytes() -> None:
    data = encode_state(model_state(), {})
    with pytest.raises(CodecError, match="not a safetensors file"):
        decode_state(data[:-5])


def test_decode_refuses_non_bytes() -> None:
    with pytest.raises(CodecError, match="expected safetensors bytes"):
        decode_state("text")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("state", "metadata", "message"),
    [
        ({}, {}, "at least one tensor"),
        ({"w": [1.0]}, {}, "'w' is a list, not a torch.Tensor"),
        ({"w": torch.eye(2).to_sparse()}, {}, "only dense tensors"),
        ({"w": torch.ones(1)}, {"round": 3}, "metadata must map strings to strings"),
        ({"": torch.ones(1)}, {}, "non-empty strings"),
    ],
)
def test_encode_refuses_bad_input(state, metadata, message) -> None:
    with pytest.raises(CodecError, match=message):
        encode_state(state, metadata)


@pytest.mark.parametrize(
    ("tensors", "message"),
    [
        ({"w": ((2,), "float99")}, "unknown dtype"),
        ({"w": ((-1,), "float32")}, "bad shape"),
        ({"w": "float32"}, "spec must be"),
    ],
)
def test_spec_refuses_bad_entries(tensors, message) -> None:
    with pytest.raises(CodecError, match=message):
        ModelSpec(tensors)


@pytest.mark.parametrize("text", ["not json", "{}", '{"tensors": [{"name": "w"}]}'])
def test_spec_from_json_refuses_garbage(text) -> None:
    with pytest.raises(CodecError, match="not a model spec"):
        ModelSpec.from_json(text)
