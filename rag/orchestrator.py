"""The dRAG query service: sample sources by reliability, retrieve in parallel, rerank, generate, learn.

One query: read the cached on-chain posteriors, choose `sources_per_query` sources by Thompson sampling, one per
group of copies while groups remain and with a slot for an under-observed source (`rag.sampling`), ask them in
parallel (each bounded by `timeout`: a slow or dead source is skipped and penalized, never waited for), verify
every answer's signature and proofs, drop the versions of a passage that better-backed versions contradict
(`rag.evidence.stale_versions`, weighing witnesses by `rag.reliability.vote_weight`), rerank the rest by
`w_dense * cosine + w_lexical * coverage + w_reliability * posterior mean` (scores recomputed here, so a node
cannot inflate its own), generate from the best `contexts`, measure each source's contribution by
leave-one-context-out, and queue the feedback deltas (see `rag.signals`) for the next on-chain batch. With a gold
check (a canary, or a user's known answer) each source's own answer is read from its documents alone and judged.
Which sources behave as copies is learned as queries go (`rag.independence.AgreementLedger`).
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
from collections.abc import Coroutine, Mapping, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import httpx

from backend.errors import TrustmarketError
from rag.canaries import Canary, answer_correct, tampered
from rag.errors import RagError, SignatureError, SourceUnavailable
from rag.evidence import Version, stale_versions
from rag.feedback import FeedbackQueue
from rag.generators import Generation, Generator
from rag.independence import AgreementLedger, Groups
from rag.index import Embedder
from rag.metrics import token_f1
from rag.node import RetrievedDocument
from rag.reader import Context
from rag.reliability import vote_weight
from rag.sampling import sample_sources
from rag.signals import Deltas, claim_variants, feedback_deltas
from rag.signing import new_nonce
from rag.sources import SourceDirectory, fetch_answer, http_client, verify_response
from rag.text import contains_phrase, content_tokens, split_sentences

__all__ = [
    "BACKGROUND_NICENESS",
    "Judgement",
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
    k: int = 3  # the query's document budget is sources_per_query x k, asked of each source (at most 50)
    contexts: int = 5  # documents handed to the generator
    timeout: float = 10.0
    dense_weight: float = 0.4
    lexical_weight: float = 0.3
    reliability_weight: float = 0.3
    measure_contribution: bool = True
    floor_slots: int = 1  # slots per query kept for sources with little evidence (see rag.sampling)
    floor_evidence: float = 10.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.sources_per_query < 1 or self.k < 1 or self.contexts < 1 or not self.timeout > 0:
            raise RagError("sources_per_query, k and contexts must be >= 1 and timeout > 0")
        if self.floor_slots < 0 or not 0 <= self.floor_evidence < float("inf"):
            raise RagError("floor_slots and floor_evidence must be non-negative")
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
    signature: str = ""  # the node's EIP-712 signature over (query hash, documents, epoch): evidence
    nonce: str = ""


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
    groups: Groups = field(default_factory=dict)  # the witnesses the feedback counted (source -> group)

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
        ledger: AgreementLedger | None = None,
        ledger_path: Path | None = None,
        save_ledger_every: int = 20,
    ):
        self.directory = directory
        self.generator = generator
        self.embedder = embedder
        self.queue = queue
        self.config = config or OrchestratorConfig()
        self.transports = dict(transports or {})
        self.inline_flush = inline_flush
        self._rng = random.Random(self.config.seed)
        # Who copies whom is learned from what the sources claim; it lives here, in the serving process, and is
        # read and written on the event loop only (the compute side returns the claims it saw). With `ledger_path`
        # it survives restarts: loaded here, saved every `save_ledger_every` queries and on close().
        self.ledger_path, self.save_ledger_every = ledger_path, max(1, save_ledger_every)
        if ledger is None:
            ledger = AgreementLedger.load(ledger_path) if ledger_path is not None else AgreementLedger()
        self.ledger = ledger
        self._ledger_synced = ledger.to_json()  # what the file held at our last sync (other workers share it)
        self._since_sync = 0
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
        # One keep-alive pool for node calls per event loop (its connections belong to the loop that opened them):
        # a pool per query paid a TCP connect per source and query, on the loop the cheap routes share.
        self._per_loop: _PerLoop | None = None

    def query(
        self,
        question: str,
        *,
        gold: Canary | None = None,
        rating: float | None = None,
        query_id: str | None = None,
    ) -> QueryResult:
        """`aquery` from synchronous code, on one event loop that the orchestrator keeps for its lifetime."""
        with self._loop_lock:
            if self._loop is None:
                self._loop = _LoopThread()
        return self._loop.run(self.aquery(question, gold=gold, rating=rating, query_id=query_id))

    async def aquery(
        self,
        question: str,
        *,
        gold: Canary | None = None,
        rating: float | None = None,
        query_id: str | None = None,
    ) -> QueryResult:
        """Answer `question`. Feedback from `gold` (known answers: a canary, or a user's; with a reference passage,
        a source serving a tampered copy of it is shown wrong) and `rating` (a user's, in [0, 1]) when given."""
        if not question.strip():
            raise RagError("empty question")
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self._refresh)
        active = self.directory.active()
        if not active:
            raise RagError("no active source is registered")
        self.rounds += 1
        posteriors = {sid: s.posterior for sid, s in active.items()}
        groups = self.ledger.groups(active, {sid: s.operator for sid, s in active.items()})
        chosen = sample_sources(posteriors, self.config.sources_per_query, self._rng, groups=groups,
                                floor_slots=self.config.floor_slots, floor_evidence=self.config.floor_evidence)  # fmt: skip
        epoch = self.directory.epoch
        # Every source is asked for the query's whole budget of documents (at most the node's limit of 50): sources
        # whose corpora overlap (copies, mirrors, versions of one collection) return largely the same top
        # documents, so a share each would leave the reader a handful of distinct passages; the reranker keeps the
        # best of the union, and each extra holder of a passage is one more witness for choosing its version.
        k = min(50, self.config.sources_per_query * self.config.k)
        outcomes = await self._gather([active[sid] for sid in chosen], question, epoch, k)
        answered = [o for o in outcomes if o.status == "ok" and o.documents]
        if not answered:
            raise SourceUnavailable("no source answered: " + "; ".join(o.detail for o in outcomes))
        votes = {sid: vote_weight(active[sid].posterior) for sid in chosen}
        asked = {sid: groups.get(sid, sid) for sid in chosen}
        if self._in_process:
            work = partial(_judge_in_process, question, outcomes, answered, votes, asked, gold, rating)
        else:
            work = partial(judge_query, self.embedder, self.generator, self.config, question, outcomes, answered,
                           votes, asked, gold, rating)  # fmt: skip
        judgement: Judgement = await loop.run_in_executor(self.compute, work)
        # Back on the loop: the ledger learns from the claims; the outcomes (copies in a process) get credited.
        self.ledger.observe(judgement.variants)
        self._since_sync += 1
        if self.ledger_path is not None and self._since_sync >= self.save_ledger_every:
            self._since_sync = 0
            # The snapshot is taken here, on the loop that changes the ledger; the file is merged off it, and
            # what the ledger observed meanwhile is kept on top of the merged file.
            snapshot = self.ledger.to_json()
            merged = await loop.run_in_executor(
                None, AgreementLedger.sync, self.ledger_path, snapshot, self._ledger_synced
            )
            self.ledger, self._ledger_synced = self.ledger.absorb(merged, snapshot), merged
        for outcome in answered:
            outcome.contribution = judgement.contributions.get(outcome.source_id, 0.0)
        query_id = query_id or uuid.uuid4().hex
        if self.queue is not None:
            await loop.run_in_executor(None, self._feed_back, query_id, judgement.deltas)
        contexts, generation = judgement.contexts, judgement.generation
        citations = [(contexts[i].source_id, contexts[i].doc_id) for i in generation.cited]
        return QueryResult(query_id, question, generation.text, generation.short, citations, outcomes, epoch,
                           judgement.deltas, asked)  # fmt: skip

    def close(self) -> None:
        """Stop the threads this orchestrator started (its loop and, unless it was given one, its executor)."""
        with self._loop_lock:
            loop, self._loop = self._loop, None
        if loop is not None:
            if self._per_loop is not None and self._per_loop.loop is loop._loop:
                with contextlib.suppress(Exception):
                    loop.run(self.aclose())
            loop.stop()
        if self.ledger_path is not None:
            AgreementLedger.sync(self.ledger_path, self.ledger.to_json(), self._ledger_synced)
        if self._own_compute or self._in_process:
            self.compute.shutdown(wait=False, cancel_futures=True)

    async def aclose(self) -> None:
        """Close the node connections opened on the running loop (`close` does it for `query`'s own loop)."""
        held, self._per_loop = self._per_loop, None
        if held is not None and held.loop is asyncio.get_running_loop():
            await held.pool.aclose()

    def _here(self) -> _PerLoop:
        loop = asyncio.get_running_loop()
        if self._per_loop is None or self._per_loop.loop is not loop:
            # A pool left on another loop is that loop's to close.
            self._per_loop = _PerLoop(loop, http_client())
        return self._per_loop

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

    async def _gather(self, sources, question: str, epoch: int, k: int) -> list[SourceOutcome]:
        loop = asyncio.get_running_loop()
        shared = self._here().pool
        own = {  # tests route some sources to in-process transports
            s.source_id: http_client(self.transports[s.source_id])
            for s in sources
            if s.source_id in self.transports
        }

        async def one(source) -> SourceOutcome:
            outcome = SourceOutcome(source.source_id, "ok", source.posterior.mean)
            nonce = new_nonce()
            try:
                payload = await fetch_answer(
                    source, question, nonce, epoch, k, timeout=self.config.timeout,
                    client=own.get(source.source_id, shared),
                )  # fmt: skip
                # Hashes, Merkle proofs and the signature recovery are CPU work: off the event loop.
                response = await loop.run_in_executor(
                    self.compute, verify_response, source, self.directory.domain, payload, question, nonce,
                    epoch, k,
                )  # fmt: skip
                outcome.documents = list(response.documents)
                outcome.signature, outcome.nonce = response.signature, "0x" + nonce.hex()
            except SourceUnavailable as exc:
                outcome.status, outcome.detail = "unavailable", str(exc)
            except SignatureError as exc:
                outcome.status, outcome.detail = "invalid", str(exc)
            return outcome

        try:
            return list(await asyncio.gather(*(one(s) for s in sources)))
        finally:
            await asyncio.gather(*(c.aclose() for c in own.values()))


@dataclass(frozen=True)
class _PerLoop:
    loop: asyncio.AbstractEventLoop
    pool: httpx.AsyncClient


@dataclass(frozen=True)
class Judgement:
    """What the CPU-bound part of a query found (plain data: it may come back from the compute process)."""

    generation: Generation
    contexts: list[Context]
    deltas: dict[int, Deltas]
    contributions: dict[int, float]  # by source, leave-one-context-out
    variants: dict[int, str | None]  # the claim each answering source stated (what the ledger learns from)


def judge_query(
    embedder: Embedder,
    generator: Generator,
    config: OrchestratorConfig,
    question: str,
    outcomes: Sequence[SourceOutcome],
    signed: Sequence[SourceOutcome],
    votes: Mapping[int, float],
    groups: Groups,
    gold: Canary | None,
    rating: float | None,
) -> Judgement:
    """The CPU-bound part of a query: drop the versions of a passage that better-backed versions contradict,
    rerank, generate, measure each source's contribution (leave one out) and compute the feedback, on everything
    each source signed (losing versions included). `votes` are the asked sources' vote weights, `groups` who
    counts as one witness; with `gold`, each source is also judged on the answer its own documents give."""
    weights = {o.source_id: o.reliability for o in outcomes}
    query_vector = embedder.encode([question])[0]
    answered = _resolve(list(signed), votes, groups)

    def answer(subset: Sequence[SourceOutcome]) -> tuple[Generation, list[Context], str]:
        contexts = rerank(embedder, config, question, query_vector, subset, weights)
        generation = generator.generate(question, contexts)
        return generation, contexts, _claim(generation, contexts)

    generation, contexts, claim = answer(answered)
    contributions: dict[int, float] = {}
    if config.measure_contribution:
        for outcome in answered:
            rest = [o for o in answered if o is not outcome]
            contributions[outcome.source_id] = 1.0 - token_f1(claim, answer(rest)[2]) if rest else 1.0
    variants = claim_variants(claim, {o.source_id: [d.text for d in o.documents] for o in signed})
    judge = own_answers = None
    tampering: set[int] = set()
    if gold is not None:
        judge = partial(answer_correct, canary=gold)
        # Ground truth judges each source alone: the answer its own documents give.
        own_answers = {o.source_id: answer([o])[2] for o in signed}
        if gold.passage:
            tampering = {o.source_id for o in signed if any(tampered(d.text, gold) for d in o.documents)}
    deltas = feedback_deltas(
        claim, variants, votes, contributions, groups=groups,
        failed=[o.source_id for o in outcomes if o.status != "ok"], judge=judge, own_answers=own_answers,
        tampered=tampering, rating=rating,
    )  # fmt: skip
    return Judgement(generation, contexts, deltas, contributions, variants)


def _resolve(
    answered: list[SourceOutcome], votes: Mapping[int, float], groups: Groups
) -> list[SourceOutcome]:
    """The outcomes without the versions of a passage that better-backed versions contradict (copies: the
    outcomes themselves keep every signed document, for the feedback and as evidence)."""
    versions = [Version(o.source_id, d.hash, d.text) for o in answered for d in o.documents]
    stale = stale_versions(versions, votes, groups)
    if not stale:
        return answered
    kept = [replace(o, documents=[d for d in o.documents if d.hash not in stale]) for o in answered]
    return [o for o in kept if o.documents]


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


def compute_process(
    cache_dir: str | None, config: OrchestratorConfig, processes: int = 1
) -> ProcessPoolExecutor:
    """`processes` processes for the CPU part of queries, each with the extractive reader and the shared embedding
    cache. They start fresh (spawn: the server's threads are not forked) and run only on CPU the server leaves
    idle; with more than one, queries that arrive together are judged side by side instead of in a queue."""
    import multiprocessing

    if processes < 1:
        raise RagError(f"compute processes must be >= 1, got {processes}")
    executor = ProcessPoolExecutor(
        max_workers=processes, mp_context=multiprocessing.get_context("spawn"), initializer=_start_process,
        initargs=(cache_dir, config),
    )  # fmt: skip
    # All of them now, each loading its model in the background: the pool spawns a process only when none is
    # idle, so the second would otherwise start (and load the model, ~1.5 s) inside some later query.
    for _ in range(processes):
        executor.submit(os.getpid)
    return executor


def _start_process(cache_dir: str | None, config: OrchestratorConfig) -> None:
    global _PROCESS
    from rag.generators import ExtractiveGenerator
    from rag.reader import ExtractiveReader

    _yield_to_serving()
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), name="parent-watch", daemon=True).start()
    embedder = Embedder(cache_dir=Path(cache_dir) if cache_dir else None)
    _PROCESS = (embedder, ExtractiveGenerator(ExtractiveReader(embedder)), config)


def _yield_to_serving() -> None:
    """Run this process only on CPU the server's processes leave idle (Linux's SCHED_IDLE; the threads it starts
    later inherit it): a request for a cheap route that wakes while a query's reading holds the core gets the
    core at once, rather than after the scheduler's slice. Elsewhere, or if refused, a lower nice level."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):
        with contextlib.suppress(OSError):
            os.nice(BACKGROUND_NICENESS)


def _exit_with_parent(parent: int) -> None:
    # A server killed without its shutdown (SIGKILL, a crash) must not leave its compute process behind.
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(0)


def _judge_in_process(question, outcomes, answered, votes, groups, gold, rating) -> Judgement:
    assert _PROCESS is not None, "the compute process was not started by compute_process()"
    embedder, generator, config = _PROCESS
    by_id = {o.source_id: o for o in outcomes}  # pickled separately: match `answered` to `outcomes` again
    signed = [by_id[o.source_id] for o in answered]
    return judge_query(embedder, generator, config, question, outcomes, signed, votes, groups, gold, rating)


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
