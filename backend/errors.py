"""The root of the platform layer's exceptions.

Every package raises its own subclass; the CLI turns any of them into one line and exit code 2, the API into a
problem+json answer.
"""

from __future__ import annotations


class TrustmarketError(Exception):
    """Base class for errors a user can act on (bad input, a node that is down, a reverted transaction)."""


class ConfigError(TrustmarketError):
    """A setting is missing or wrong."""
