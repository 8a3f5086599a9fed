"""The aggregator's exceptions.

They subclass `ValueError` (the CLI turns any `ValueError` into one line and exit code 2) and never import the
platform layer: the algorithm modules stay importable with numeric libraries only.
"""

from __future__ import annotations

__all__ = ["AggregatorError", "InsufficientUpdates", "InvalidUpdate"]


class AggregatorError(ValueError):
    """Base class: a bad parameter, an unknown rule or model name, or input the aggregator cannot use."""


class InsufficientUpdates(AggregatorError):
    """Fewer usable updates than the rule needs (e.g. Krum needs n >= 2f + 3); nothing may be posted."""

    def __init__(self, message: str, *, have: int, need: int) -> None:
        super().__init__(message)
        self.have = have
        self.need = need


class InvalidUpdate(AggregatorError):
    """An update with the wrong shape or dtype, or with NaN/Inf values; `rows` names the offending rows."""

    def __init__(self, message: str, *, rows: tuple[int, ...] = ()) -> None:
        super().__init__(message)
        self.rows = rows
