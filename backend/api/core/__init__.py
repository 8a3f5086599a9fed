"""The API's machinery: settings and tiers, problem+json errors, identity, access, quotas, audit, metrics.

Import from the modules themselves (`backend.api.core.config`, ...): this package re-exports nothing, so the
settings load without the rest of the machinery.
"""
