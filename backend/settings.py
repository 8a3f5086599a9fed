"""One typed settings object, read from `TRUSTMARKET_*` environment variables (and a `.env` file).

The defaults run everything locally: anvil on 127.0.0.1:8545, the content store in `.trustmarket/store`, SQLite
in `.trustmarket/trustmarket.db`.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


def project_root() -> Path:
    """The folder holding ape-config.yaml: the working directory if it has one, else this checkout."""
    cwd = Path.cwd()
    if (cwd / "ape-config.yaml").is_file():
        return cwd
    return Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    """Everything configurable, with defaults that run locally."""

    model_config = SettingsConfigDict(env_prefix="TRUSTMARKET_", env_file=".env", extra="ignore")

    home: Path = Field(
        default_factory=lambda: project_root() / ".trustmarket",
        description="Folder for local state: store, database, keystores, queues.",
    )

    # Chain
    chain_url: str = "http://127.0.0.1:8545"
    chain_id: int | None = Field(
        default=None, description="Expected chain id; None accepts what the node says."
    )
    network: str = "ethereum:local:foundry"
    deployments_dir: Path = Field(default_factory=lambda: project_root() / "deployments")
    artifacts_path: Path = Field(default_factory=lambda: project_root() / ".build" / "__local__.json")
    tx_timeout: float = 60.0

    # Content store
    store: str = Field(
        default="local",
        description="`local` (a folder: TRUSTMARKET_STORE_PATH), a folder path, an IPFS gateway URL "
        "(http://host:port), a Kubo RPC URL (http://host:5001/api/v0), or `kubo` (TRUSTMARKET_KUBO_URL).",
    )
    store_path: Path | None = None
    kubo_url: str = "http://127.0.0.1:5001"
    store_upload_url: str | None = Field(
        default=None,
        description="Where a gateway store writes: the gateway itself (default), a Kubo RPC URL (.../api/v0) "
        "or the REST API's .../v1/uploads.",
    )
    store_token: SecretStr | None = Field(
        default=None, description="Bearer token for writes (a gateway's write token, or an API access token)."
    )

    # Off-chain state
    database_url: str | None = None

    @property
    def resolved_store_path(self) -> Path:
        return self.store_path or self.home / "store"

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'trustmarket.db'}"

    @property
    def deployments_file(self) -> Path:
        # `ethereum:local:foundry` -> deployments/local.json
        parts = self.network.split(":")
        return self.deployments_dir / f"{parts[1] if len(parts) > 1 else parts[0]}.json"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (tests build their own `Settings(...)` instead)."""
    return Settings()
