"""The REST API: structured access (SIWE sessions, on-chain tiers, scopes, quotas, audit) over trustmarket."""

from backend.api.app import create_app
from backend.api.core.config import ApiSettings, TierPolicy
from backend.api.services import ApiServices, build_services

__all__ = ["ApiServices", "ApiSettings", "TierPolicy", "build_services", "create_app"]
