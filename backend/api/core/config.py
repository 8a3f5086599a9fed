"""The API's settings (`TRUSTMARKET_API_*`), its scopes and the tier table that maps tiers to scopes and quotas.

Tiers are the small integers the AccessRegistry contract stores; what each tier may do lives here, so an operator
can reshape the offer without a contract upgrade. A tier's scopes need the current terms accepted; account scopes
(anyone signed in) and review scopes (on-chain grantors) do not.
"""

from __future__ import annotations

import secrets
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from backend.errors import ConfigError

__all__ = [
    "ACCOUNT_SCOPES",
    "ALL_SCOPES",
    "DEFAULT_COSTS",
    "DEFAULT_TIERS",
    "REVIEW_SCOPES",
    "TIER_SCOPES",
    "ApiSettings",
    "TierPolicy",
]

# Anyone signed in, whatever their tier: see themselves, sign out, accept terms, apply for access.
ACCOUNT_SCOPES: frozenset[str] = frozenset({"account:read", "auth:logout", "terms:accept", "access:apply"})
# Granted by tiers, and only once the current terms are accepted.
TIER_SCOPES: frozenset[str] = frozenset(
    {"projects:read", "models:predict", "rag:query", "rag:sources", "updates:upload", "updates:relay"}
)
# Wallets holding GRANTOR_ROLE on chain review applications and decide tiers.
REVIEW_SCOPES: frozenset[str] = frozenset({"access:review"})
ALL_SCOPES: frozenset[str] = ACCOUNT_SCOPES | TIER_SCOPES | REVIEW_SCOPES

# Daily units each endpoint costs (looked up by the name a route gives `require_scope(..., cost=...)`).
DEFAULT_COSTS: dict[str, int] = {
    "free": 0,
    "default": 1,
    "read": 1,
    "apply": 5,
    "upload": 20,
    "relay": 10,
    "predict": 5,
    "rag_query": 10,
}


class TierPolicy(BaseModel):
    """What one tier may do and how much of it."""

    name: str
    scopes: frozenset[str] = frozenset()
    requests_per_minute: int = Field(ge=1)
    daily_units: int = Field(ge=0)
    max_predict_rows: int = Field(default=0, ge=0)
    max_upload_bytes: int = Field(default=0, ge=0)
    max_query_chars: int = Field(default=0, ge=0)
    max_text_chars: int = Field(default=0, ge=0, description="Characters per text a text model reads.")

    @field_validator("scopes")
    @classmethod
    def _known_scopes(cls, scopes: frozenset[str]) -> frozenset[str]:
        unknown = scopes - TIER_SCOPES
        if unknown:
            raise ValueError(f"unknown tier scopes {sorted(unknown)}; known: {sorted(TIER_SCOPES)}")
        return scopes


_READER = frozenset({"projects:read", "models:predict", "rag:query", "rag:sources"})
_TRAINER = _READER | {"updates:upload", "updates:relay"}

DEFAULT_TIERS: dict[int, TierPolicy] = {
    0: TierPolicy(name="none", requests_per_minute=10, daily_units=100),
    1: TierPolicy(
        name="explorer",
        scopes=_READER,
        requests_per_minute=60,
        daily_units=2_000,
        max_predict_rows=32,
        max_query_chars=500,
        max_text_chars=2_000,
    ),
    2: TierPolicy(
        name="trainer",
        scopes=_TRAINER,
        requests_per_minute=300,
        daily_units=20_000,
        max_predict_rows=256,
        max_upload_bytes=16 * 2**20,
        max_query_chars=2_000,
        max_text_chars=8_000,
    ),
    3: TierPolicy(
        name="partner",
        scopes=_TRAINER,
        requests_per_minute=1_200,
        daily_units=200_000,
        max_predict_rows=4_096,
        max_upload_bytes=64 * 2**20,
        max_query_chars=8_000,
        max_text_chars=32_000,
    ),
}


class ApiSettings(BaseSettings):
    """Everything the API adds to `backend.settings.Settings`; `TRUSTMARKET_API_*` variables."""

    model_config = SettingsConfigDict(env_prefix="TRUSTMARKET_API_", env_file=".env", extra="ignore")

    environment: Literal["development", "production"] = "development"
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)

    # Sign-In with Ethereum (EIP-4361)
    siwe_domain: str = Field(default="localhost:8000", description="The domain SIWE messages must name.")
    siwe_uri: str | None = Field(default=None, description="If set, the URI SIWE messages must carry.")
    siwe_statement: str = "Sign in to trustmarket."
    nonce_ttl_s: float = Field(default=300.0, gt=0)

    # Session tokens (JWT, HS256)
    jwt_secret: SecretStr | None = Field(
        default=None, description="At least 32 bytes; required in production."
    )
    jwt_ttl_s: int = Field(default=900, ge=1, description="Short-lived: revocation is by jti, until expiry.")
    jwt_issuer: str = "trustmarket"
    jwt_audience: str = "trustmarket-api"
    revocation_sync_s: float = Field(
        default=1.0, ge=0, description="Other workers honour a logout within this."
    )

    # Access
    tier_cache_ttl_s: float = Field(
        default=30.0, ge=0, description="A revocation on chain applies within this."
    )
    tiers: dict[int, TierPolicy] = Field(default_factory=lambda: dict(DEFAULT_TIERS))
    costs: dict[str, int] = Field(default_factory=lambda: dict(DEFAULT_COSTS))
    grant_days_default: int = Field(default=90, ge=1, le=3650)

    # Serving
    torch_threads: int = Field(
        default=1, ge=1, le=256, description="Intra-op threads for model queries in `trustmarket api serve`."
    )
    predict_threads: int = Field(
        default=2, ge=1, le=256, description="Threads that run model queries (CPU work, off the event loop)."
    )
    # Per-route bulkheads (per worker): requests in progress, and how many more may wait; beyond: 503 busy.
    # 16: enough to keep sources 200 ms away busy at the compute's pace; a larger crowd of node calls only
    # grows the connection pool, whose bookkeeping (httpcore scans it per request) runs on the serving loop.
    rag_concurrency: int = Field(default=16, ge=1, description="dRAG queries in progress per worker.")
    rag_queue: int = Field(default=64, ge=0, description="dRAG queries waiting for a slot per worker.")
    predict_concurrency: int = Field(default=8, ge=1, description="Model queries in progress per worker.")
    predict_queue: int = Field(default=64, ge=0, description="Model queries waiting for a slot per worker.")
    rag_compute: Literal["process", "thread"] = Field(
        default="process",
        description="Where the CPU part of dRAG queries runs: processes of its own, or a thread.",
    )
    rag_compute_processes: int = Field(
        default=2, ge=1, le=64,
        description="Processes for the CPU part of dRAG queries per worker (they run only on otherwise idle CPU).",
    )  # fmt: skip
    rag_source_timeout_s: float = Field(
        default=10.0, gt=0, description="How long a source may take to answer."
    )
    feedback_flush_s: float = Field(
        default=5.0, gt=0, description="How often a worker checks whether a feedback batch is due."
    )
    chain_head_ttl_s: float = Field(
        default=0.0,
        ge=0,
        description="Reuse the chain head this long across requests (0: ask once per request).",
    )
    shutdown_grace_s: float = Field(
        default=30.0, gt=0, description="On SIGTERM, in-flight requests get this long to finish."
    )
    worker_start_s: int = Field(
        default=120,
        gt=0,
        description="On SIGHUP, a replacement worker gets this long to answer (it imports torch and the model "
        "stack) before the restart is abandoned and the old worker kept.",
    )

    # Requests
    max_body_bytes: int = Field(default=80 * 2**20, ge=1024, description="Above this: 413 before reading.")
    audit_flush_s: float = Field(default=0.2, gt=0)

    # The account that relays signed messages (terms, gasless submissions) and executes grantors' decisions.
    relayer_keystore: str | None = None
    relayer_password: SecretStr | None = None
    relayer_dev_account: int | None = Field(default=None, description="anvil dev account index (local only).")

    @model_validator(mode="after")
    def _tiers_complete(self) -> ApiSettings:
        if 0 not in self.tiers:
            raise ValueError("tiers must define tier 0 (signed in, no grant)")
        if "default" not in self.costs:
            raise ValueError("costs must define 'default'")
        if any(cost < 0 for cost in self.costs.values()):
            raise ValueError("costs must be >= 0")
        return self

    def signing_secret(self) -> bytes:
        """The JWT key: the configured one, or (development only) a random one per process."""
        if self.jwt_secret is not None:
            secret = self.jwt_secret.get_secret_value().encode()
            if len(secret) < 32:
                raise ConfigError("TRUSTMARKET_API_JWT_SECRET must be at least 32 bytes")
            return secret
        if self.environment != "development":
            raise ConfigError("TRUSTMARKET_API_JWT_SECRET is required outside development")
        # Sessions then end with the process, which is what a developer expects.
        return secrets.token_bytes(32)

    def policy(self, tier: int) -> TierPolicy:
        """The policy of `tier`, falling back to the highest defined tier below it."""
        known = [t for t in self.tiers if t <= tier]
        return self.tiers[max(known)] if known else self.tiers[0]

    def cost(self, name: str) -> int:
        return self.costs.get(name, self.costs["default"])
