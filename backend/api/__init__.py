"""The REST API: structured access (SIWE sessions, on-chain tiers, scopes, quotas, audit) over trustmarket.

The names below load on first use (PEP 562): `backend.api.core.config` (the settings) and `backend.api.serving`
stay cheap to import, so `trustmarket api serve`'s supervisor reads its settings without the app's imports
(torch, web3, the models) that each worker holds.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from backend.api.app import create_app
    from backend.api.core.config import ApiSettings, TierPolicy
    from backend.api.services import ApiServices, build_services

__all__ = ["ApiServices", "ApiSettings", "TierPolicy", "build_services", "create_app"]

_HOMES = {
    "create_app": "backend.api.app",
    "ApiSettings": "backend.api.core.config",
    "TierPolicy": "backend.api.core.config",
    "ApiServices": "backend.api.services",
    "build_services": "backend.api.services",
}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOMES[name]), name)
    globals()[name] = value
    return value
