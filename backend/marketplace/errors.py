"""Errors of the marketplace services (owner, trainer, round runner, verifier)."""

from __future__ import annotations

from backend.errors import TrustmarketError

__all__ = ["MarketplaceError", "RoundNotReady"]


class MarketplaceError(TrustmarketError):
    """A marketplace action cannot go ahead (unknown project, round closed, bad manifest, ...)."""


class RoundNotReady(MarketplaceError):
    """The round cannot be aggregated yet (still open, or already finalized)."""
