"""Everything the routes use, built once per app: database, identity, access, quotas, audit, and the parts the
API composes (chain, content store, marketplace, models, RAG).

Tests and embedders pass the parts they built (`build_services(settings, api, chain=..., relayer=...)`); the
rest is built from settings. A part that cannot be built (a node that is down, a package not installed yet) is
kept as the reason it is missing: routes that need it answer 503 with that reason, the others keep working.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eth_account.signers.local import LocalAccount
from sqlalchemy import Engine, event
from sqlalchemy.orm import Session, sessionmaker

from backend.api.core.access import AccessCache
from backend.api.core.audit import AuditLog
from backend.api.core.config import ApiSettings
from backend.api.core.errors import ServiceUnavailable
from backend.api.core.observe import ApiMetrics
from backend.api.core.quotas import QuotaBook
from backend.api.core.siwe_login import SiweVerifier
from backend.api.core.tokens import RevocationList, TokenService
from backend.chain.access_registry import AccessRegistry
from backend.chain.client import ChainClient
from backend.db import create_all, make_engine
from backend.errors import TrustmarketError
from backend.settings import Settings
from rag.errors import RagError

__all__ = ["ApiServices", "Lazy", "Missing", "build_services"]

log = logging.getLogger("trustmarket.api")


class Lazy:
    """A part built on first use (loading a model or reading the chain at start-up would slow every start)."""

    _UNBUILT = object()

    def __init__(self, build: Callable[[], Any]):
        self._build = build
        self._value: Any = self._UNBUILT
        self._lock = threading.Lock()

    def build(self) -> Any:
        """The part, built once even if several requests ask at the same moment."""
        with self._lock:
            if self._value is self._UNBUILT:
                self._value = self._build()
            return self._value


@dataclass(frozen=True)
class Missing:
    """Stands in for a part that could not be built, and says why."""

    part: str
    reason: str

    def fail(self) -> ServiceUnavailable:
        return ServiceUnavailable(
            f"{self.part} is unavailable: {self.reason}", kind=f"{self.part}-unavailable"
        )


@dataclass
class ApiServices:
    settings: Settings
    api: ApiSettings
    engine: Engine
    sessions: sessionmaker[Session]
    tokens: TokenService
    revocations: RevocationList
    siwe: SiweVerifier
    access: AccessCache
    quotas: QuotaBook
    audit: AuditLog
    metrics: ApiMetrics
    chain: ChainClient | Missing
    relayer: LocalAccount | Missing
    # Composed parts, by name: "store", "market", "models", "rag" (a value or a Missing).
    parts: dict[str, Any] = field(default_factory=dict)
    clock: Callable[[], float] = time.time
    monotonic: Callable[[], float] = time.monotonic
    _memo: dict[str, tuple[float, Any]] = field(default_factory=dict)

    def memo(self, key: str, thunk: Callable[[], Any], ttl_s: float | None = None) -> Any:
        """`thunk()` remembered for `ttl_s` (default: the tier cache TTL): public reads must not hit the node."""
        ttl = self.api.tier_cache_ttl_s if ttl_s is None else ttl_s
        now = self.monotonic()
        hit = self._memo.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        value = thunk()
        self._memo[key] = (now + ttl, value)
        return value

    def forget(self, key: str) -> None:
        self._memo.pop(key, None)

    def require_chain(self) -> ChainClient:
        if isinstance(self.chain, Missing):
            raise self.chain.fail()
        return self.chain

    def registry(self) -> AccessRegistry:
        return AccessRegistry(self.require_chain())

    def require_relayer(self) -> LocalAccount:
        if isinstance(self.relayer, Missing):
            raise self.relayer.fail()
        return self.relayer

    def require(self, part: str) -> Any:
        """The part, building it now if it is lazy; 503 (with the reason) if it cannot be had."""
        value = self.parts.get(part)
        if isinstance(value, Lazy):
            try:
                value = value.build()
            except (
                TrustmarketError,
                RagError,
            ) as exc:  # perhaps passing (a node restarting): try again later
                raise Missing(part, str(exc)).fail() from None
            except ImportError as exc:  # will not pass: remember
                value = Missing(part, f"not installed: {exc}")
            self.parts[part] = value
        if value is None:
            raise Missing(part, "not configured").fail()
        if isinstance(value, Missing):
            raise value.fail()
        return value

    def chain_id(self) -> int:
        """The chain SIWE messages must name: the configured id, else the node's."""
        if self.settings.chain_id is not None:
            return self.settings.chain_id
        return self.require_chain().chain_id

    def close(self) -> None:
        self.audit.close()
        self.quotas.release()
        self.engine.dispose()


def _sqlite_normal_sync(dbapi_connection, _record) -> None:
    # In WAL mode, NORMAL skips the fsync per commit (a power cut may lose the last commits, never corrupt):
    # usage counters and audit rows are written often, and a lost second of them is an acceptable price.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _build_chain(settings: Settings) -> ChainClient | Missing:
    try:
        return ChainClient.from_settings(settings)
    except TrustmarketError as exc:
        return Missing("chain", str(exc))


def _build_store(settings: Settings) -> Any:
    try:
        from backend.storage import open_store

        return open_store(settings)
    except ImportError as exc:  # the storage package is optional to the API's frame
        return Missing("store", f"storage is not installed: {exc}")
    except TrustmarketError as exc:
        return Missing("store", str(exc))


def _build_market(chain: ChainClient | Missing) -> Any:
    from backend.chain.training_market import TrainingMarket

    if isinstance(chain, Missing):
        raise chain.fail()
    return TrainingMarket(chain)


def _build_rag(
    settings: Settings, chain: ChainClient | Missing, relayer: LocalAccount | Missing, engine: Engine
):
    """The dRAG orchestrator as `trustmarket rag query` builds it; feedback is queued when the relayer may apply it."""
    from backend.chain.source_registry import SourceRegistry
    from rag.feedback import FeedbackQueue
    from rag.generators import ExtractiveGenerator
    from rag.index import Embedder
    from rag.orchestrator import Orchestrator
    from rag.reader import ExtractiveReader
    from rag.sources import SourceDirectory

    if isinstance(chain, Missing):
        raise chain.fail()
    registry = SourceRegistry(chain)
    directory = SourceDirectory(registry)
    embedder = Embedder(cache_dir=settings.home / "cache" / "embeddings")
    queue = None
    if not isinstance(relayer, Missing) and registry.is_evaluator(relayer.address):
        queue = FeedbackQueue(engine, registry, relayer, on_applied=directory.on_applied)
    return Orchestrator(directory, ExtractiveGenerator(ExtractiveReader(embedder)), embedder, queue=queue)


def _build_relayer(api: ApiSettings, chain: ChainClient | Missing) -> LocalAccount | Missing:
    from backend.chain.keys import dev_account, load_keystore

    try:
        if api.relayer_keystore:
            password = api.relayer_password.get_secret_value() if api.relayer_password else ""
            return load_keystore(Path(api.relayer_keystore), password)
        if api.relayer_dev_account is not None:
            if isinstance(chain, Missing):
                return Missing("relayer", f"needs the chain to check it is local: {chain.reason}")
            return dev_account(api.relayer_dev_account, chain.chain_id)
    except TrustmarketError as exc:
        return Missing("relayer", str(exc))
    return Missing("relayer", "no relayer key configured (TRUSTMARKET_API_RELAYER_KEYSTORE)")


def build_services(
    settings: Settings,
    api: ApiSettings | None = None,
    *,
    chain: ChainClient | Missing | None = None,
    relayer: LocalAccount | Missing | None = None,
    parts: dict[str, Any] | None = None,
    clock: Callable[[], float] = time.time,
    monotonic: Callable[[], float] = time.monotonic,
) -> ApiServices:
    """Build the services; what is not passed is built from `settings` (parts lazily, see `routes`)."""
    api = api or ApiSettings()
    engine = make_engine(settings.resolved_database_url)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_normal_sync)
    import backend.api.core.tables  # noqa: F401 - declares the API's tables on Base

    create_all(engine)
    sessions = sessionmaker(engine, expire_on_commit=False)
    chain = chain if chain is not None else _build_chain(settings)
    relayer = relayer if relayer is not None else _build_relayer(api, chain)
    parts = dict(parts or {})
    if "store" not in parts:
        parts["store"] = _build_store(settings)
    if "models" not in parts:
        from backend.api.inference import ModelCache

        parts["models"] = ModelCache()
    if "market" not in parts:
        parts["market"] = Lazy(lambda: _build_market(chain))
    if "rag" not in parts:
        parts["rag"] = Lazy(lambda: _build_rag(settings, chain, relayer, engine))

    def lookup(address: str):
        if isinstance(chain, Missing):
            raise chain.fail()
        return AccessRegistry(chain).access_of(address)

    quotas = QuotaBook(engine, clock=clock)
    tokens = TokenService(
        api.signing_secret(), ttl_s=api.jwt_ttl_s, issuer=api.jwt_issuer, audience=api.jwt_audience
    )
    revocations = RevocationList(engine, sync_s=api.revocation_sync_s)

    def housekeeping() -> None:
        quotas.prune()
        revocations.prune()

    return ApiServices(
        settings=settings,
        api=api,
        engine=engine,
        sessions=sessions,
        tokens=tokens,
        revocations=revocations,
        siwe=SiweVerifier(
            sessions,
            domain=api.siwe_domain,
            uri=api.siwe_uri,
            statement=api.siwe_statement,
            nonce_ttl_s=api.nonce_ttl_s,
        ),
        access=AccessCache(lookup, api.tier_cache_ttl_s, clock=monotonic),
        quotas=quotas,
        audit=AuditLog(sessions, flush_interval_s=api.audit_flush_s, maintenance=housekeeping),
        metrics=ApiMetrics(),
        chain=chain,
        relayer=relayer,
        parts=parts,
        clock=clock,
        monotonic=monotonic,
    )
