"""One typed settings object, read from `TRUSTMARKET_*` environment variables (and a `.env` file).

The defaults run everything locally: anvil on 127.0.0.1:8545, the content store in `.trustmarket/store`, SQLite
in `.trustmarket/trustmarket.db`. Below the environment come the values a home remembers
(`<home>/settings.json`, written by `trustmarket chain up` and `chain attach`), so that every later command of that
person goes to the chain they chose without repeating it.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

REMEMBERED_FILE = "settings.json"


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
    deployments_dir: Path | None = Field(
        default=None, description="Folder of deployments/<network>.json (default: <home>/deployments)."
    )
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

    # Aggregation compute
    engine: Literal["local", "ray"] = Field(
        default="local", description="Where a round's passes run: this process, or a Ray cluster."
    )
    ray_address: str | None = Field(
        default=None,
        description="The Ray cluster for engine=ray ('auto', 'ray://host:10001'); unset starts one on this machine.",
    )
    spool_path: Path | None = Field(
        default=None,
        description="Folder the runner fetches update files into for a round (every Ray node must see it).",
    )

    @property
    def resolved_store_path(self) -> Path:
        return self.store_path or self.home / "store"

    @property
    def resolved_spool_path(self) -> Path:
        return self.spool_path or self.home / "spool"

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'trustmarket.db'}"

    @property
    def deployments_file(self) -> Path:
        # `ethereum:local:foundry` -> deployments/local.json
        parts = self.network.split(":")
        folder = self.deployments_dir or self.home / "deployments"
        return folder / f"{parts[1] if len(parts) > 1 else parts[0]}.json"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (
            init_settings,
            env_settings,
            dotenv_settings,
            _Remembered(settings_cls, init_settings),
            file_secret_settings,
        )


def default_home() -> Path:
    return (
        Path(os.environ["TRUSTMARKET_HOME"])
        if os.environ.get("TRUSTMARKET_HOME")
        else project_root() / ".trustmarket"
    )


def remember(home: Path, **values: str) -> Path:
    """Record settings in `<home>/settings.json` (what `chain up` / `chain attach` chose); returns the file."""
    path = Path(home) / REMEMBERED_FILE
    known = _read_remembered(path)
    known.update(values)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(known, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)
    return path


def _read_remembered(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path} is not a settings file ({exc}); fix or delete it") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} is not a settings file (expected a JSON object); fix or delete it")
    return data


class _Remembered(PydanticBaseSettingsSource):
    """The values `<home>/settings.json` holds, for fields no environment variable sets."""

    def __init__(self, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource) -> None:
        super().__init__(settings_cls)
        self._init = init_settings

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ reads the file once

    def __call__(self) -> dict[str, Any]:
        home = self._init().get("home") or default_home()
        fields = self.settings_cls.model_fields
        return {k: v for k, v in _read_remembered(Path(home) / REMEMBERED_FILE).items() if k in fields}


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (tests build their own `Settings(...)` instead)."""
    return Settings()
