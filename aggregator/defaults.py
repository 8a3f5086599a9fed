"""What a project gets when its owner picks nothing: the rule, its parameters and the defenses before it.

`trustmarket project create` with no `--rule`, `--rule-param` or `--defense` writes these into the manifest
(and `RoundInputs` defaults to them), so every round of such a project runs them. They are measured against the
attack suite in `bench/attacks.py` (docs/benchmarks.md):

- `near_copies`: copies and jittered copies of one update count once (and nobody is flagged for being copied);
- `forged_updates`: an update computed from the others' coordinate-wise mean, spread and signs (ALIE, IPM,
  min-max, min-sum, sign flipping) is left out: it carries no data;
- `shared_deviation`: groups that deviate from the consensus together (a shared backdoor or crafted direction)
  are left out;
- `norm_clip`: no update counts for more than the median norm (boosted model replacement loses its boost);
- `trimmed_mean` with `beta=0.25`: per coordinate the largest and smallest quarter is dropped, so a quarter of
  the trainers agreeing on a direction nobody else takes (a backdoor's weights) does not move it.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "DEFAULT_DEFENSES",
    "DEFAULT_RULE",
    "DEFAULT_RULE_PARAMS",
    "default_defenses",
    "default_rule_params",
]

DEFAULT_RULE = "trimmed_mean"
DEFAULT_RULE_PARAMS: dict[str, Any] = {"beta": 0.25}
DEFAULT_DEFENSES: tuple[dict[str, Any], ...] = (
    {"name": "near_copies"},
    {"name": "forged_updates"},
    {"name": "shared_deviation"},
    {"name": "norm_clip"},
)


def default_rule_params() -> dict[str, Any]:
    return dict(DEFAULT_RULE_PARAMS)


def default_defenses() -> list[dict[str, Any]]:
    return [dict(d) for d in DEFAULT_DEFENSES]
