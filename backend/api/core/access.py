"""Who the caller is and what they may do: tiers read from the AccessRegistry contract, cached for a short TTL.

The cache is the only thing between a revocation on chain and the API noticing it, so its TTL is the promise:
a grant revoked (or expired) on chain stops working here within `tier_cache_ttl_s`. Writes made through this
service (grants, terms acceptance) invalidate the wallet's entry at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache

from backend.api.core.config import ACCOUNT_SCOPES, REVIEW_SCOPES, ApiSettings, TierPolicy
from backend.chain.access_registry import AccessGrant

__all__ = ["AccessCache", "Caller", "scopes_of"]


class AccessCache:
    """`lookup(address)` results kept for `ttl_s` seconds of `clock` (thread-safe; one lookup per miss)."""

    def __init__(
        self,
        lookup: Callable[[str], AccessGrant],
        ttl_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_entries: int = 100_000,
    ):
        self._lookup = lookup
        self.ttl_s = ttl_s
        self._clock = clock
        self._max_entries = max_entries
        self._entries: dict[str, tuple[float, AccessGrant]] = {}
        self._lock = threading.Lock()

    def peek(self, address: str) -> AccessGrant | None:
        """The cached grant if it is still fresh, else None (no I/O: safe on the event loop)."""
        hit = self._entries.get(address.lower())
        return hit[1] if hit is not None and hit[0] > self._clock() else None

    def get(self, address: str) -> AccessGrant:
        """The grant, from the cache or (on a miss) from the chain; may block on the node."""
        cached = self.peek(address)
        if cached is not None:
            return cached
        key = address.lower()
        now = self._clock()
        grant = self._lookup(address)  # outside the lock: a slow node must not stall other wallets
        with self._lock:
            if len(self._entries) >= self._max_entries:
                self._entries = {k: v for k, v in self._entries.items() if v[0] > now}
                if len(self._entries) >= self._max_entries:
                    self._entries.clear()
            self._entries[key] = (now + self.ttl_s, grant)
        return grant

    def invalidate(self, address: str) -> None:
        with self._lock:
            self._entries.pop(address.lower(), None)


@dataclass(frozen=True)
class Caller:
    """An authenticated wallet with its effective grant, as a route sees it."""

    wallet: str
    grant: AccessGrant
    policy: TierPolicy
    scopes: frozenset[str]
    jti: str
    token_expires_at: int
    cost: int = 0  # units this request was charged
    audit: dict = field(default_factory=dict, compare=False, repr=False)  # the request's audit entry

    @property
    def tier(self) -> int:
        return self.grant.tier


def scopes_of(grant: AccessGrant, api: ApiSettings) -> frozenset[str]:
    """Account scopes for everyone, the tier's scopes, and review scopes for on-chain grantors."""
    return _scopes(api.policy(grant.tier).scopes, grant.grantor)


@lru_cache(maxsize=256)
def _scopes(tier_scopes: frozenset[str], grantor: bool) -> frozenset[str]:
    return ACCOUNT_SCOPES | tier_scopes | (REVIEW_SCOPES if grantor else frozenset())
