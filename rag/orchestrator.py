"""The dRAG query service: sample sources by reliability, retrieve in parallel, rerank, generate, learn.

One query: read the cached on-chain posteriors, choose `sources_per_query` sources without replacement by
Bayes-UCB, ask them in parallel (each bounded by `timeout`: a slow or dead source is skipped and penalized, never
waited for), verify every answer's signature and proofs, rerank all documents by
`w_dense * cosine + w_lexical * coverage + w_reliability * posterior mean` (scores recomputed here, so a node
cannot inflate its own), generate from the best `contexts`, measure each source's contribution by
leave-one-context-out, and queue the feedback deltas (see `rag.signals`) for the next on-chain batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Mapping, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import httpx

from backend.errors import TrustmarketError
from rag.errors import RagError, SignatureError, SourceUnavailable
from rag.feedback import FeedbackQueue
from rag.generators import Generation, Generator
from rag.index import Embedder
from rag.metrics import token_f1
from rag.node import RetrievedDocument
from rag.reader import Context
from rag.reliability import sample_sources
from rag.signals import Deltas, feedback_deltas
from rag.signing import new_nonce
from rag.sources import SourceDirectory, fetch_answer, http_client, verify_retrieval
from rag.text import contains_phrase, content_tokens, split_sentences

__all__ = [
    "BACKGROUND_NICENESS",
    "Orchestrator",
    "OrchestratorConfig",
    "QueryResult",
    "SourceOutcome",
    "background_executor",
    "compute_process",
    "judge_query",
    "rerank",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OrchestratorConfig:
    sources_per_query: int = 4
    k: int = 3  # documents asked from each source
    contexts: int = 5  # documents handed to the generator
    timeout: float = 10.0
    dense_weight: float = 0.4
    lexical_weight: float = 0.3
    reliability_weight: float = 0.3
    measure_contribution: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if self.sources_per_query < 1 or self.k < 1 or self.contexts < 1 or not self.timeout > 0:
            raise RagError("sources_per_query, k and contexts must be >= 1 and timeout > 0")
        weights = (self.dense_weight, self.lexical_weight, self.reliability_weight)
        if any(not 0 <= w < float("inf") for w in weights) or sum(weights) <= 0:
            raise RagError("rerank weights must be finite, non-negative and not all zero")


@dataclass
class SourceOutcome:
    source_id: int
    status: str  # ok | unavailable | invalid
    reliability: float
    detail: str = ""
    documents: list[RetrievedDocument] = field(default_factory=list)
    contribution: float = 0.0


@dataclass
class QueryResult:
    query_id: str
    question: str
    answer: str
    short: bool
    citations: list[tuple[int, str]]  # (source id, doc id) of the contexts the answer cites
    sources: list[SourceOutcome]
    epoch: int
    deltas: dict[int, Deltas]

    def to_json(self) -> dict:
        return {
            "query_id": self.query_id, "question": self.question, "answer": self.answer, "epoch": self.epoch,
            "citations": [{"source_id": s, "doc_id": d} for s, d in self.citations],
            "sources": [{"id": o.source_id, "status": o.status, "detail": o.detail, "reliability": o.reliability,
                         "contribution": o.contribution, "documents": [d.doc_id for d in o.documents]}
                        for o in self.sources],
        }  # fmt: skip


class Orchestrator:
    """One dRAG service: `await aquery(...)` on the caller's event loop, or `query(...)` from synchronous code.

    Queries run concurrently: waiting on sources holds no thread and no lock. The CPU-bound part of a query
    (embedding, reranking, reading, the leave-one-out contributions) runs on `compute`, a small executor of its
    own (one thread by default: the embedder serializes torch calls anyway), so a flood of queries queues there
    instead of blocking the event loop that serves everything else. Directory refreshes and queue writes are
    blocking I/O and go to the loop's default executor.

    With `inline_flush` (scripts, the CLI, the experiment) a query also sends the feedback batch when it is due;
    a server leaves it off and flushes on a timer (`rag.feedback.FlushTimer`), so no request waits on a
    transaction.
    """

    def __init__(
        self,
        directory: SourceDirectory,
        generator: Generator,
        embedder: Embedder,
        *,
        queue: FeedbackQueue | None = None,
        config: OrchestratorConfig | None = None,
        transports: Mapping[int, httpx.AsyncBaseTransport] | None = None,
        inline_flush: bool = True,
        compute: Executor | None = None,
    ):
        self.directory = directory
        self.generator = generator
        self.embedder = embedder
        self.queue = queue
        self.config = config or OrchestratorConfig()
        self.transports = dict(transports or {})
        self.inline_flush = inline_flush
        self._rng = random.Random(self.config.seed)
        self.rounds = 0
        self._own_compute = compute is None
        # Normal priority: this work is Python holding the GIL, and a thread the OS deprioritizes while it holds
        # the GIL stalls every other thread of the process (priority inversion). Torch work (the embedder's
        # thread) releases the GIL and is the part that competes for cores.
        self.compute: Executor = compute or ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="rag-compute"
        )
        self._in_process = isinstance(self.compute, ProcessPoolExecutor)
        self._refresh_lock = threading.Lock()
        self._loop: _LoopThread | None = None
        self._loop_lock = threading.Lock()

    def query(
        self,
        question: str,
        *,
        judge: Callable[[str], bool] | None = None,
        rating: float | None = None,
        query_id: str | None = None,
    ) -> QueryResult:
        """`aquery` from synchronous code, on one event loop that the orchestrator keeps for its lifetime."""
        with self._loop_lock:
            if self._loop is None:
                self._loop = _LoopThread()
        return self._loop.run(self.aquery(question, judge=judge, rating=rating, query_id=query_id))

    async def aquery(
        self,
        question: str,
        *,
        judge: Callable[[str], bool] | None = None,
        rating: float | None = None,
        query_id: str | None = None,
    ) -> QueryResult:
        """Answer `question`; `judge` (a gold check of a sentence) and `rating` feed back when known."""
        if not question.strip():
            raise RagError("empty question")
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self._refresh)
        active = self.directory.active()
        if not active:
            raise RagError("no active source is registered")
        self.rounds += 1
        posteriors = {sid: s.posterior for sid, s in active.items()}
        chosen = sample_sources(posteriors, self.config.sources_per_query, self.rounds, self._rng)
        epoch = self.directory.epoch
        outcomes = await self._gather([active[sid] for sid in chosen], question, epoch)
        answered = [o for o in outcomes if o.status == "ok" and o.documents]
        if not answered:
            raise SourceUnavailable("no source answered: " + "; ".join(o.detail for o in outcomes))
        if self._in_process:
            if judge is not None:
                raise RagError(
                    "a gold judge cannot cross to the compute process; run this orchestrator on threads"
                )
            work = partial(_judge_in_process, question, outcomes, answered, rating)
        else:
            work = partial(
                judge_query,
                self.embedder,
                self.generator,
                self.config,
                question,
                outcomes,
                answered,
                judge,
                rating,
            )
        generation, contexts, deltas, contributions = await loop.run_in_executor(self.compute, work)
        for outcome in answered:
            outcome.contribution = contributions.get(outcome.source_id, 0.0)
        query_id = query_id or uuid.uuid4().hex
        if self.queue is not None:
            await loop.run_in_executor(None, self._feed_back, query_id, deltas)
        citations = [(contexts[i].source_id, contexts[i].doc_id) for i in generation.cited]
        return QueryResult(
            query_id, question, generation.text, generation.short, citations, outcomes, epoch, deltas
        )

    def close(self) -> None:
        """Stop the threads this orchestrator started (its loop and, unless it was given one, its executor)."""
        with self._loop_lock:
            loop, self._loop = self._loop, None
        if loop is not None:
            loop.stop()
        if self._own_compute or self._in_process:
            self.compute.shutdown(wait=False, cancel_futures=True)

    def _refresh(self) -> None:
        # One refresh at a time: queries arriving meanwhile read the directory as it is (it is a cache anyway).
        if self._refresh_lock.acquire(blocking=not self.directory.sources):
            try:
                self.directory.maybe_refresh()
            finally:
                self._refresh_lock.release()

    def _feed_back(self, query_id: str, deltas: Mapping[int, Deltas]) -> None:
        assert self.queue is not None
        self.queue.enqueue(query_id, deltas)
        if not self.inline_flush:
            return
        try:
            self.queue.maybe_flush()
        except (TrustmarketError, RagError) as exc:
            # The deltas are stored; a chain hiccup must not cost the user the answer already computed.
            log.warning("feedback flush failed, updates stay queued: %s", exc)

    async def _gather(self, sources, question: str, epoch: int) -> list[SourceOutcome]:
        loop = asyncio.get_running_loop()
        shared = http_client()  # one connection pool per query (tests route some sources to transports)
        own = {
            s.source_id: http_client(self.transports[s.source_id])
            for s in sources
            if s.source_id in self.transports
        }

        async def one(source) -> SourceOutcome:
            outcome = SourceOutcome(source.source_id, "ok", source.posterior.mean)
            nonce = new_nonce()
            try:
                payload = await fetch_answer(
                    source, question, nonce, epoch, self.config.k, timeout=self.config.timeout,
                    client=own.get(source.source_id, shared),
                )  # fmt: skip
                # Hashes, Merkle proofs and the signature recovery are CPU work: off the event loop.
                outcome.documents = await loop.run_in_executor(
                    self.compute, verify_retrieval, source, self.directory.domain, payload, question, nonce,
                    epoch, self.config.k,
                )  # fmt: skip
            except SourceUnavailable as exc:
                outcome.status, outcome.detail = "unavailable", str(exc)
            except SignatureError as exc:
                outcome.status, outcome.detail = "invalid", str(exc)
            return outcome

        try:
            return list(await asyncio.gather(*(one(s) for s in sources)))
        finally:
            await asyncio.gather(shared.aclose(), *(c.aclose() for c in own.values()))


def judge_query(
    embedder: Embedder,
    generator: Generator,
    config: OrchestratorConfig,
    question: str,
    outcomes: Sequence[SourceOutcome],
    answered: Sequence[SourceOutcome],
    judge: Callable[[str], bool] | None,
    rating: float | None,
) -> tuple[Generation, list[Context], dict[int, Deltas], dict[int, float]]:
    """The CPU-bound part of a query: rerank, generate, measure each source's contribution (leave one out) and
    compute the feedback. Returns the generation, its contexts, the deltas and the contributions by source."""
    weights = {o.source_id: o.reliability for o in outcomes}
    query_vector = embedder.encode([question])[0]
    contexts = rerank(embedder, config, question, query_vector, answered, weights)
    generation = generator.generate(question, contexts)
    claim = _claim(generation, contexts)
    contributions = {o.source_id: 0.0 for o in answered}
    if config.measure_contribution:
        for outcome in answered:
            rest = [o for o in answered if o is not outcome]
            if not rest:
                contributions[outcome.source_id] = 1.0
                continue
            reduced = rerank(embedder, config, question, query_vector, rest, weights)
            contributions[outcome.source_id] = 1.0 - token_f1(
                claim, _claim(generator.generate(question, reduced), reduced)
            )
    deltas = feedback_deltas(
        claim, {o.source_id: [d.text for d in o.documents] for o in answered}, weights, contributions,
        failed=[o.source_id for o in outcomes if o.status != "ok"], judge=judge, rating=rating,
    )  # fmt: skip
    return generation, contexts, deltas, contributions


def rerank(
    embedder: Embedder,
    config: OrchestratorConfig,
    question: str,
    query_vector,
    answered: Sequence[SourceOutcome],
    weights: Mapping[int, float],
) -> list[Context]:
    """Rerank every returned document; identical documents count once, at their best score."""
    asked = set(content_tokens(question))
    best: dict[str, tuple[float, Context]] = {}
    docs = [(o.source_id, d) for o in answered for d in o.documents]
    vectors = embedder.encode([f"{d.title}. {d.text}" if d.title else d.text for _, d in docs])
    for (sid, doc), vector in zip(docs, vectors, strict=True):
        coverage = len(asked & set(content_tokens(doc.text))) / len(asked) if asked else 0.0
        score = (config.dense_weight * float(vector @ query_vector) + config.lexical_weight * coverage
                 + config.reliability_weight * weights[sid])  # fmt: skip
        context = Context(doc.text, max(score, 1e-6), sid, doc.doc_id, doc.title)
        if doc.hash not in best or score > best[doc.hash][0]:
            best[doc.hash] = (score, context)
    ranked = sorted(best.values(), key=lambda pair: (-pair[0], pair[1].source_id, pair[1].doc_id))
    return [context for _, context in ranked[: config.contexts]]


# -- a compute process of its own (a server: its Python never holds the serving threads' GIL) ---------------------

_PROCESS: tuple[Embedder, Generator, OrchestratorConfig] | None = None


def compute_process(cache_dir: str | None, config: OrchestratorConfig) -> ProcessPoolExecutor:
    """One process for the CPU part of queries, with the extractive reader and the shared embedding cache. It
    starts fresh (spawn: the server's threads are not forked) and runs at a lower OS priority than the server."""
    import multiprocessing

    return ProcessPoolExecutor(
        max_workers=1, mp_context=multiprocessing.get_context("spawn"), initializer=_start_process,
        initargs=(cache_dir, config),
    )  # fmt: skip


def _start_process(cache_dir: str | None, config: OrchestratorConfig) -> None:
    global _PROCESS
    from rag.generators import ExtractiveGenerator
    from rag.reader import ExtractiveReader

    with contextlib.suppress(OSError):
        os.nice(BACKGROUND_NICENESS)
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), name="parent-watch", daemon=True).start()
    embedder = Embedder(cache_dir=Path(cache_dir) if cache_dir else None)
    _PROCESS = (embedder, ExtractiveGenerator(ExtractiveReader(embedder)), config)


def _exit_with_parent(parent: int) -> None:
    # A server killed without its shutdown (SIGKILL, a crash) must not leave its compute process behind.
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(0)


def _judge_in_process(question, outcomes, answered, rating):
    assert _PROCESS is not None, "the compute process was not started by compute_process()"
    embedder, generator, config = _PROCESS
    by_id = {o.source_id: o for o in outcomes}  # pickled separately: match `answered` to `outcomes` again
    return judge_query(
        embedder, generator, config, question, outcomes, [by_id[o.source_id] for o in answered], None, rating
    )


def _claim(generation: Generation, contexts: Sequence[Context]) -> str:
    """The statement an answer makes: the sentence itself, or for a short answer the cited sentence holding it."""
    if not generation.short:
        return generation.text
    for i in generation.cited or range(len(contexts)):
        for sentence in split_sentences(contexts[i].text):
            if contains_phrase(sentence, generation.text):
                return sentence
    return generation.text


_T = TypeVar("_T")

# How much lower than the serving threads CPU-bound work runs (Linux nice levels, per thread).
BACKGROUND_NICENESS = 10


def background_executor(name: str, threads: int) -> ThreadPoolExecutor:
    """A pool for CPU-bound work whose threads run at a lower OS priority than the event loop's: when the CPU
    is short, the scheduler serves the cheap requests first and the heavy ones take what is left."""
    return ThreadPoolExecutor(max_workers=threads, thread_name_prefix=name, initializer=_lower_priority)


def _lower_priority() -> None:
    # Linux applies PRIO_PROCESS to a single thread when given its native id; elsewhere (or if not permitted)
    # the work runs at normal priority.
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), BACKGROUND_NICENESS)


class _LoopThread:
    """An event loop on a daemon thread, for synchronous callers: one loop for many queries."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="rag-loop", daemon=True)
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, _T]) -> _T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
