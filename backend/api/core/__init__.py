"""The API's machinery: settings and tiers, problem+json errors, identity, access, quotas, audit, metrics."""

from backend.api.core.access import AccessCache, Caller
from backend.api.core.config import ApiSettings, TierPolicy
from backend.api.core.errors import ApiError

__all__ = ["AccessCache", "ApiError", "ApiSettings", "Caller", "TierPolicy"]
