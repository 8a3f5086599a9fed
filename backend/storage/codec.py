"""Model weights and updates as safetensors bytes, checked against an expected spec when loaded.

safetensors (https://github.com/huggingface/safetensors) is a JSON header plus raw little-endian tensor data: it
cannot run code when loaded, unlike pickle. Everything another party sends goes through `decode_state`, which
refuses anything but a safetensors file whose tensors have exactly the expected names, shapes and dtypes and
hold only finite numbers, with a `CodecError` that names the offending tensor.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from backend.storage.errors import CodecError

#: Metadata keys every update and global model carries (values are strings, as safetensors requires).
META_PROJECT = "project"
META_ROUND = "round"
META_BASE_MODEL = "base_model_cid"
# The trainer an update is from (its address, lower case): the round runner refuses one revealed by anyone else.
META_TRAINER = "trainer"

_DTYPES: dict[str, torch.dtype] = {
    name: dtype
    for name, dtype in vars(torch).items()
    if isinstance(dtype, torch.dtype) and name == str(dtype).removeprefix("torch.")
}


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


@dataclass(frozen=True)
class TensorSpec:
    """The shape and dtype one tensor must have."""

    shape: tuple[int, ...]
    dtype: str

    def __post_init__(self) -> None:
        if self.dtype not in _DTYPES:
            raise CodecError(f"unknown dtype {self.dtype!r}")
        if any(not isinstance(dim, int) or isinstance(dim, bool) or dim < 0 for dim in self.shape):
            raise CodecError(f"bad shape {self.shape!r}: dimensions are non-negative integers")


class ModelSpec(Mapping[str, TensorSpec]):
    """Ordered mapping tensor name -> (shape, dtype): what a project's model (and every update) must look like."""

    def __init__(self, tensors: Mapping[str, tuple[tuple[int, ...], str] | TensorSpec]) -> None:
        self._tensors: dict[str, TensorSpec] = {}
        for name, spec in tensors.items():
            if not isinstance(name, str) or not name:
                raise CodecError(f"tensor names are non-empty strings, not {name!r}")
            if not isinstance(spec, TensorSpec):
                try:
                    shape, dtype = spec
                    spec = TensorSpec(tuple(shape), dtype)
                except (TypeError, ValueError) as exc:
                    raise CodecError(f"tensor {name!r}: spec must be (shape, dtype), not {spec!r}") from exc
            self._tensors[name] = spec

    @classmethod
    def from_state_dict(cls, tensors: Mapping[str, torch.Tensor]) -> ModelSpec:
        """The spec a state dict has (e.g. the initial model a project is created with)."""
        _check_tensor_types(tensors)
        return cls({name: (tuple(t.shape), _dtype_name(t.dtype)) for name, t in tensors.items()})

    def to_json(self) -> str:
        return json.dumps(
            {
                "tensors": [
                    {"name": n, "shape": list(s.shape), "dtype": s.dtype} for n, s in self._tensors.items()
                ]
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> ModelSpec:
        try:
            entries = json.loads(text)["tensors"]
            return cls({entry["name"]: (tuple(entry["shape"]), entry["dtype"]) for entry in entries})
        except (ValueError, KeyError, TypeError) as exc:
            raise CodecError(f"not a model spec: {exc}") from exc

    def __getitem__(self, name: str) -> TensorSpec:
        return self._tensors[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._tensors)

    def __len__(self) -> int:
        return len(self._tensors)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ModelSpec):
            return NotImplemented
        return list(self._tensors.items()) == list(other._tensors.items())

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"ModelSpec({len(self)} tensors)"

    def check(self, tensors: Mapping[str, torch.Tensor]) -> None:
        """Raise `CodecError` unless `tensors` has exactly these names, shapes and dtypes."""
        self.check_layout({name: (tuple(t.shape), _dtype_name(t.dtype)) for name, t in tensors.items()})

    def check_layout(self, layout: Mapping[str, tuple[tuple[int, ...], str]]) -> None:
        """`check` on a file's header alone (`{name: (shape, dtype name)}`), before reading any value."""
        missing = [name for name in self._tensors if name not in layout]
        unexpected = [name for name in layout if name not in self._tensors]
        if missing or unexpected:
            parts = []
            if missing:
                parts.append(f"missing tensor(s) {', '.join(missing)}")
            if unexpected:
                parts.append(f"unexpected tensor(s) {', '.join(unexpected)}")
            raise CodecError("; ".join(parts))
        for name, spec in self._tensors.items():
            shape, dtype = layout[name]
            if dtype != spec.dtype:
                raise CodecError(f"tensor {name!r} has dtype {dtype}, expected {spec.dtype}")
            if tuple(shape) != spec.shape:
                raise CodecError(f"tensor {name!r} has shape {tuple(shape)}, expected {spec.shape}")


def _check_tensor_types(tensors: Mapping[str, torch.Tensor]) -> None:
    if not isinstance(tensors, Mapping) or not tensors:
        raise CodecError("a state needs at least one tensor")
    for name, tensor in tensors.items():
        if not isinstance(name, str) or not name:
            raise CodecError(f"tensor names are non-empty strings, not {name!r}")
        if not isinstance(tensor, torch.Tensor):
            raise CodecError(f"tensor {name!r} is a {type(tensor).__name__}, not a torch.Tensor")
        if tensor.layout != torch.strided:
            raise CodecError(f"tensor {name!r} is {tensor.layout}: only dense tensors can be stored")


def _check_finite(tensors: Mapping[str, torch.Tensor]) -> None:
    for name, tensor in tensors.items():
        if (tensor.is_floating_point() or tensor.is_complex()) and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise CodecError(f"tensor {name!r} has {bad} non-finite value(s) (NaN or Inf)")


def state_metadata(project: int | str, round_: int, base_model_cid: str, **extra: str) -> dict[str, str]:
    """The metadata an update or global model carries: project, round and the CID of the model it starts from."""
    return {META_PROJECT: str(project), META_ROUND: str(round_), META_BASE_MODEL: base_model_cid, **extra}


def encode_state(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> bytes:
    """safetensors bytes of `tensors` with `metadata`; refuses non-tensors, sparse and non-finite tensors."""
    _check_tensor_types(tensors)
    if not isinstance(metadata, Mapping) or any(
        not isinstance(k, str) or not isinstance(v, str) for k, v in metadata.items()
    ):
        raise CodecError("metadata must map strings to strings")
    _check_finite(tensors)
    prepared: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for name, tensor in tensors.items():
        tensor = tensor.detach().cpu().contiguous()
        # safetensors refuses tensors that share memory (tied weights): give each its own copy.
        if tensor.numel() and tensor.untyped_storage().data_ptr() in seen:
            tensor = tensor.clone()
        if tensor.numel():
            seen.add(tensor.untyped_storage().data_ptr())
        prepared[name] = tensor
    try:
        return st_save(prepared, metadata=dict(metadata))
    except (SafetensorError, RuntimeError, ValueError) as exc:
        raise CodecError(f"cannot encode the state: {exc}") from exc


def decode_state(
    data: bytes, spec: ModelSpec | None = None
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata from safetensors bytes, checked against `spec` (if given) and for finiteness."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise CodecError(f"expected safetensors bytes, not {type(data).__name__}")
    data = bytes(data)
    try:
        tensors = st_load(data)
        header_len = int.from_bytes(data[:8], "little")
        header = json.loads(data[8 : 8 + header_len])
    except (SafetensorError, ValueError, OverflowError) as exc:
        raise CodecError(f"not a safetensors file: {exc}") from exc
    metadata = header.get("__metadata__") or {}
    if spec is not None:
        spec.check(tensors)
    _check_finite(tensors)
    return tensors, dict(metadata)


__all__ = [
    "META_BASE_MODEL",
    "META_PROJECT",
    "META_ROUND",
    "META_TRAINER",
    "ModelSpec",
    "TensorSpec",
    "decode_state",
    "encode_state",
    "state_metadata",
]
