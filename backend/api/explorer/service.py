"""The explorer's parts, built once per app from the API's services: the market's ledger, the sources' ledger,
the committee (when the market has one) and the background verifier.

Parts are built on first use and rebuilt after a failure, so an explorer started before the chain answers
starts working when it does. `ExplorerSettings` (`TRUSTMARKET_EXPLORER_*`) holds what only the explorer reads.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from backend.api.explorer.ledger import Head, Ledger
from backend.api.explorer.sources import SourcesLedger
from backend.api.explorer.verification import Verifications
from backend.api.services import ApiServices
from backend.chain.errors import NotDeployed
from backend.chain.reads import pinned_reads
from backend.chain.source_registry import SourceRegistry
from backend.chain.training_market import TrainingMarket
from backend.chain.verifier_committee import VerifierCommittee
from backend.storage import ContentStore

__all__ = [
    "STATIC_DIR",
    "TEMPLATES_DIR",
    "VENDOR_FILES",
    "Explorer",
    "ExplorerParts",
    "ExplorerSettings",
    "build_parts",
]

HERE = Path(__file__).resolve().parent
TEMPLATES_DIR = HERE / "templates"
STATIC_DIR = HERE / "static"
# Copied from node_modules by `make install` (gitignored): the chart library, pinned in package.json.
VENDOR_FILES = ("vendor/uPlot.iife.min.js", "vendor/uPlot.min.css")


class ExplorerSettings(BaseSettings):
    """What the explorer adds to the API's settings; `TRUSTMARKET_EXPLORER_*` variables."""

    model_config = SettingsConfigDict(env_prefix="TRUSTMARKET_EXPLORER_", env_file=".env", extra="ignore")

    verify: bool = Field(default=True, description="Recompute every finalized round in a background thread.")
    stream_poll_s: float = Field(
        default=1.0, gt=0, description="How often a live page's stream looks for blocks."
    )
    stream_max_s: float = Field(
        default=300.0, gt=0, description="A live stream ends after this; browsers reconnect by themselves."
    )


@dataclass
class ExplorerParts:
    ledger: Ledger
    sources: SourcesLedger | None
    verifications: Verifications


def build_parts(market: TrainingMarket, store: ContentStore, settings: ExplorerSettings) -> ExplorerParts:
    """The ledgers over `market` (its committee, if it has one) and the deployment's SourceRegistry (if any)."""
    client = market.client
    address = market.committee_address()
    committee = VerifierCommittee(client, address) if address else None
    # The API's client pins each request's reads to one head (TRUSTMARKET_API_CHAIN_HEAD_TTL_S shares it).
    ledger = Ledger(market, store, committee=committee)
    sources = None
    try:
        registry = SourceRegistry(client)
        registry.address  # noqa: B018 - raises NotDeployed when the deployment has no registry
        first = client.deployments.first_block if client.deployments else 0
        sources = SourcesLedger(registry, first, ledger.block_time, ledger.head)
        ledger.follow(sources.events)
    except NotDeployed:
        pass
    return ExplorerParts(ledger, sources, Verifications(market, store, enabled=settings.verify))


class Explorer:
    """Holds the parts; `parts()` builds them (or raises the API's 503 with the reason)."""

    def __init__(self, services: ApiServices, settings: ExplorerSettings | None = None):
        self.services = services
        self.settings = settings or ExplorerSettings()
        self._parts: ExplorerParts | None = None
        self._lock = threading.Lock()
        self._stream_head: tuple[float, Head] | None = None
        self._stream_lock = threading.Lock()

    @property
    def charts_available(self) -> bool:
        return all((STATIC_DIR / f).is_file() for f in VENDOR_FILES)

    def parts(self) -> ExplorerParts:
        with self._lock:
            if self._parts is None:
                self._parts = self._build()
            return self._parts

    def stream_head(self) -> Head:
        """The newest block for the live streams, asked of the node at most once per `stream_poll_s` however
        many pages are open (each stream outlives its request's pinned block, so it asks in a pin of its own)."""
        with self._stream_lock:
            now = time.monotonic()
            if self._stream_head is None or now >= self._stream_head[0]:
                with pinned_reads():
                    head = self.parts().ledger.head()
                self._stream_head = (now + self.settings.stream_poll_s, head)
            return self._stream_head[1]

    def _build(self) -> ExplorerParts:
        return build_parts(self.services.market.get(), self.services.store.get(), self.settings)

    def close(self) -> None:
        if self._parts is not None:
            self._parts.verifications.close()
