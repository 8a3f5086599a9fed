"""Canonical encodings that make a round's result checkable: model bytes, fixed-point scores, report JSON and
the result digest a verifier recomputes."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from fractions import Fraction
from typing import Any

import numpy as np
import torch
from safetensors.torch import save

from aggregator.errors import AggregatorError

__all__ = [
    "SCORE_UNIT",
    "canonical_json",
    "fixed_point_scores",
    "model_bytes",
    "result_digest",
    "sha256_hex",
    "tensor_sha256",
]

SCORE_UNIT = 10**18  # 1.0 in the fixed-point scores posted on chain (fits uint64: 1e18 < 2^64)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tensor_sha256(tensor: torch.Tensor) -> str:
    """sha256 of a tensor's raw little-endian bytes, contiguous, as stored."""
    return sha256_hex(tensor.detach().cpu().contiguous().numpy().tobytes())


def model_bytes(state: Mapping[str, torch.Tensor]) -> bytes:
    """The safetensors encoding of a state dict, names sorted and no metadata, so equal weights give equal bytes."""
    return save({k: state[k].detach().cpu().contiguous() for k in sorted(state)})


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, torch.Tensor):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        return _plain(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        raise AggregatorError(f"non-finite number {value!r} cannot go into a canonical report")
    return value


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no whitespace, ASCII, no NaN/Inf; floats as Python's shortest round-trip repr."""
    return json.dumps(
        _plain(value), sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode()


def fixed_point_scores(scores: Mapping[str, float], unit: int = SCORE_UNIT) -> dict[str, int]:
    """Non-negative integers summing exactly to `unit`, by largest remainder on the exact rational value of
    each float; ties go to the lexicographically smaller address. Zero scores stay zero."""
    if not scores:
        raise AggregatorError("no scores to convert")
    exact = {}
    for trainer, value in scores.items():
        if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
            raise AggregatorError(f"score of {trainer} must be finite and non-negative, got {value!r}")
        exact[trainer] = Fraction(value)
    total = sum(exact.values())
    if total <= 0:
        raise AggregatorError("scores sum to zero")
    quotas = {t: v * unit / total for t, v in exact.items()}
    fixed = {t: math.floor(q) for t, q in quotas.items()}
    left = unit - sum(fixed.values())
    # Every leftover unit goes to a distinct positive remainder, so zero scores can never receive one.
    by_remainder = sorted(quotas, key=lambda t: (-(quotas[t] - fixed[t]), t))
    for trainer in by_remainder[:left]:
        fixed[trainer] += 1
    return dict(sorted(fixed.items()))


def result_digest(
    model_sha256: str, scores_fixed: Mapping[str, int], flagged: list[str], report_sha256: str
) -> str:
    """sha256 over the canonical JSON of what a verifier must reproduce."""
    payload = {
        "flagged": sorted(flagged),
        "model_sha256": model_sha256,
        "report_sha256": report_sha256,
        "scores_fixed": [[t, str(v)] for t, v in sorted(scores_fixed.items())],
    }
    return sha256_hex(canonical_json(payload))
