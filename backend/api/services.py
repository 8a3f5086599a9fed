"""Everything the routes use, built once per app: database, identity, access, quotas, audit, and the parts the
API composes (chain, content store, marketplace, models, RAG).

Each part is a typed `Part[T]` (routes take it through `backend.api.deps`: `ChainDep`, `StoreDep`, `MarketDep`,
`RagDep`, ...). Tests and embedders pass the parts they built (`build_services(settings, api, chain=...,
relayer=..., rag=...)`); the rest is built from settings. A part that cannot be built (a node that is down, a
package not installed yet) is kept as the reason it is missing: routes that need it answer 503 with that
reason, the others keep working.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from eth_account.signers.local import LocalAccount
from sqlalchemy import Engine, event
from sqlalchemy.orm import Session, sessionmaker

from backend.api.core.access import AccessCache
from backend.api.core.audit import AuditLog
from backend.api.core.bulkhead import Bulkhead
from backend.api.core.config import ApiSettings
from backend.api.core.errors import ServiceUnavailable
from backend.api.core.observe import ApiMetrics
from backend.api.core.quotas import QuotaBook
from backend.api.core.siwe_login import SiweVerifier
from backend.api.core.tokens import RevocationList, TokenService
from backend.chain.access_registry import AccessRegistry
from backend.chain.client import ChainClient
from backend.chain.reads import BlockCachedClient
from backend.db import create_all, make_engine
from backend.errors import TrustmarketError
from backend.settings import Settings
from rag.errors import RagError
from rag.orchestrator import Orchestrator, OrchestratorConfig, background_executor

if TYPE_CHECKING:
    from backend.api.inference import ModelCache
    from backend.chain.training_market import TrainingMarket
    from backend.storage import ContentStore
    from rag.feedback import FeedbackQueue

__all__ = ["ApiServices", "Missing", "Part", "build_services"]

log = logging.getLogger("trustmarket.api")


T = TypeVar("T")


@dataclass(frozen=True)
class Missing:
    """Stands in for a part that could not be built, and says why."""

    part: str
    reason: str

    def fail(self) -> ServiceUnavailable:
        return ServiceUnavailable(
            f"{self.part} is unavailable: {self.reason}", kind=f"{self.part}-unavailable"
        )


class Part(Generic[T]):
    """One part the routes use: built already, built on first use, or missing (and why).

    A lazy part is built once even if several requests ask at the same moment (loading a model or reading the
    chain at start-up would slow every start). A build that fails with a platform or dRAG error may pass (a node
    restarting): the request gets 503 and the next one tries again. A missing package will not pass: remembered.
    """

    def __init__(self, name: str, value: T | Missing | None = None, *, build: Callable[[], T] | None = None):
        self.name = name
        self._value: T | Missing | None = value
        self._build = build
        self._lock = threading.Lock()

    @classmethod
    def missing(cls, name: str, reason: str) -> Part[T]:
        return cls(name, Missing(name, reason))

    @property
    def ready(self) -> bool:
        """True when `get` would not build anything (and so does no I/O)."""
        return self._build is None or self._value is not None

    def peek(self) -> T | Missing | None:
        """What is there now, without building: the part, why it is missing, or None (not built yet)."""
        if self._value is None and self._build is None:
            return Missing(self.name, "not configured")
        return self._value

    def get(self) -> T:
        """The part, building it now if it is lazy; `ServiceUnavailable` (503, with the reason) if it is missing."""
        value = self._value
        if value is None and self._build is not None:
            with self._lock:
                if self._value is None:
                    try:
                        self._value = self._build()
                        keep_out_of_collections()
                    except (TrustmarketError, RagError) as exc:  # may pass: try again on the next request
                        raise Missing(self.name, str(exc)).fail() from None
                    except ImportError as exc:  # will not pass: remember
                        self._value = Missing(self.name, f"not installed: {exc}")
                value = self._value
        if value is None:
            raise Missing(self.name, "not configured").fail()
        if isinstance(value, Missing):
            raise value.fail()
        return value

    def set(self, value: T | Missing) -> None:
        """Replace the part (tests put a `Missing` here to take a part down)."""
        with self._lock:
            self._value, self._build = value, None


def keep_out_of_collections() -> None:
    """Move everything alive now (the app, a part just built: a model, its libraries' module state) out of the
    garbage collector's sight: they live as long as the server, and a full collection under load otherwise
    walks them all (~300 ms with the dRAG stack loaded, a pause every route waits out). Requests' own objects
    are collected as before."""
    gc.collect()
    gc.freeze()


@dataclass
class ApiServices:
    """The app's state, one per app: identity and access, and the typed parts the routes compose."""

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
    chain: Part[ChainClient]
    relayer: Part[LocalAccount]
    store: Part[ContentStore]
    models: Part[ModelCache]
    market: Part[TrainingMarket]
    feedback: Part[FeedbackQueue]
    rag: Part[Orchestrator]
    bulkheads: dict[str, Bulkhead]
    predict_pool: Executor
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

    def registry(self) -> AccessRegistry:
        return AccessRegistry(self.chain.get())

    def chain_id(self) -> int:
        """The chain SIWE messages must name: the configured id, else the node's."""
        if self.settings.chain_id is not None:
            return self.settings.chain_id
        return self.chain.get().chain_id

    def close(self) -> None:
        self.audit.close()
        self.quotas.release()
        rag = self.rag.peek()
        if isinstance(rag, Orchestrator):
            rag.close()
        self.predict_pool.shutdown(wait=False, cancel_futures=True)
        self.engine.dispose()


def _sqlite_normal_sync(dbapi_connection, _record) -> None:
    # In WAL mode, NORMAL skips the fsync per commit (a power cut may lose the last commits, never corrupt):
    # usage counters and audit rows are written often, and a lost second of them is an acceptable price.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _build_chain(
    settings: Settings, api: ApiSettings, given: ChainClient | Missing | None
) -> Part[ChainClient]:
    """The chain, its reads pinned to one block per request and cached by block (`backend.chain.reads`)."""
    if given is None:
        try:
            given = ChainClient.from_settings(settings)
        except TrustmarketError as exc:
            return Part.missing("chain", str(exc))
    if isinstance(given, Missing):
        return Part("chain", given)
    return Part("chain", BlockCachedClient(given, head_ttl_s=api.chain_head_ttl_s))


def _build_store(settings: Settings) -> Part[ContentStore]:
    try:
        from backend.storage import open_store

        return Part("store", open_store(settings))
    except ImportError as exc:  # the storage package is optional to the API's frame
        return Part.missing("store", f"storage is not installed: {exc}")
    except TrustmarketError as exc:
        return Part.missing("store", str(exc))


def _build_relayer(api: ApiSettings, chain: Part[ChainClient]) -> Part[LocalAccount]:
    from backend.chain.keys import dev_account, load_keystore

    try:
        if api.relayer_keystore:
            password = api.relayer_password.get_secret_value() if api.relayer_password else ""
            return Part("relayer", load_keystore(Path(api.relayer_keystore), password))
        if api.relayer_dev_account is not None:
            client = chain.peek()
            if not isinstance(client, ChainClient):
                reason = client.reason if isinstance(client, Missing) else "not configured"
                return Part.missing("relayer", f"needs the chain to check it is local: {reason}")
            return Part("relayer", dev_account(api.relayer_dev_account, client.chain_id))
    except TrustmarketError as exc:
        return Part.missing("relayer", str(exc))
    return Part.missing("relayer", "no relayer key configured (TRUSTMARKET_API_RELAYER_KEYSTORE)")


def _feedback_queue(
    settings: Settings, chain: Part[ChainClient], relayer: Part[LocalAccount], engine: Engine
) -> FeedbackQueue:
    """The durable feedback queue; batches are sent (on a timer) only if the relayer is an evaluator."""
    from backend.chain.source_registry import SourceRegistry
    from rag.service import build_feedback_queue

    client = chain.get()
    account = relayer.peek()
    evaluator = None
    if isinstance(account, LocalAccount) and SourceRegistry(client).is_evaluator(account.address):
        evaluator = account
    return build_feedback_queue(settings, client, evaluator, engine=engine)


def build_services(
    settings: Settings,
    api: ApiSettings | None = None,
    *,
    chain: ChainClient | Missing | None = None,
    relayer: LocalAccount | Missing | None = None,
    store: ContentStore | Missing | None = None,
    rag: Orchestrator | Missing | None = None,
    clock: Callable[[], float] = time.time,
    monotonic: Callable[[], float] = time.monotonic,
) -> ApiServices:
    """Build the services; what is not passed is built from `settings` (the market and dRAG on first use)."""
    from backend.api.inference import ModelCache

    api = api or ApiSettings()
    engine = make_engine(settings.resolved_database_url)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_normal_sync)
    import backend.api.core.tables  # noqa: F401 - declares the API's tables on Base

    create_all(engine)
    sessions = sessionmaker(engine, expire_on_commit=False)
    chain_part = _build_chain(settings, api, chain)
    relayer_part = Part("relayer", relayer) if relayer is not None else _build_relayer(api, chain_part)
    store_part = Part("store", store) if store is not None else _build_store(settings)
    feedback = Part("feedback", build=lambda: _feedback_queue(settings, chain_part, relayer_part, engine))

    def orchestrator() -> Orchestrator:
        from rag.service import build_orchestrator

        return build_orchestrator(
            settings, chain_part.get(), queue=feedback.get(), inline_flush=False,
            config=OrchestratorConfig(timeout=api.rag_source_timeout_s),
            compute_in_process=api.rag_compute == "process", compute_processes=api.rag_compute_processes,
        )  # fmt: skip

    def market() -> TrainingMarket:
        from backend.chain.training_market import TrainingMarket

        return TrainingMarket(chain_part.get())

    def lookup(address: str):
        return AccessRegistry(chain_part.get()).access_of(address)

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
        chain=chain_part,
        relayer=relayer_part,
        store=store_part,
        models=Part("models", ModelCache()),
        market=Part("market", build=market),
        feedback=feedback,
        rag=Part("rag", rag) if rag is not None else Part("rag", build=orchestrator),
        bulkheads={
            "rag": Bulkhead("dRAG query", api.rag_concurrency, api.rag_queue),
            "predict": Bulkhead("model query", api.predict_concurrency, api.predict_queue),
        },
        predict_pool=background_executor("predict", api.predict_threads),
        clock=clock,
        monotonic=monotonic,
    )
