"""The orchestrator end to end on anvil: signed retrieval from real nodes, failures, feedback, cache refresh."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from eth_account import Account

from backend.chain.source_registry import deploy_source_registry
from backend.db import make_engine
from rag.canaries import Canary
from rag.errors import RagError, SourceUnavailable
from rag.feedback import FeedbackQueue
from rag.generators import ExtractiveGenerator
from rag.index import HybridIndex
from rag.node import SourceNode, create_node_app
from rag.orchestrator import Orchestrator, OrchestratorConfig
from rag.pollution import pollute
from rag.reader import ExtractiveReader
from rag.scenarios import with_note
from rag.serve import start_background_server
from rag.signals import GOLD_WEIGHT, MISS_WEIGHT, TAMPER_WEIGHT
from rag.signing import SigningDomain
from rag.sources import SourceDirectory

pytestmark = pytest.mark.chain

QUESTION = "Who was the Norse leader?"


class Network:
    """Four sources over copies of the small corpus (the fourth fully polluted), in-process."""

    def __init__(self, chain_client, dev_accounts, embedder, corpus, tmp_path):
        self.registry = deploy_source_registry(chain_client, dev_accounts[0], min_bond=10**15,
                                               evaluator=dev_accounts[1].address)  # fmt: skip
        self.domain = SigningDomain(chain_client.chain_id, self.registry.address)
        self.embedder = embedder
        # Three copies of the corpus (distinct commitments: the registry refuses a corpus twice) and a polluted one.
        polluted = pollute(corpus, 1.0, seed=0, source_index=3)[0]
        self.copies = [corpus, with_note(corpus, 2), with_note(corpus, 3), polluted]
        self.operators, self.apps = {}, {}
        for i, copy in enumerate(self.copies):
            operator = dev_accounts[2 + i]
            sid = self.registry.register(operator, f"http://127.0.0.1:{sid_hint(i)}", copy.commitment, 10**15)
            self.operators[sid] = operator
            self.apps[sid] = self.app(sid, operator)
        self.directory = SourceDirectory(self.registry)
        self.engine = make_engine(f"sqlite:///{tmp_path / 'feedback.db'}")
        self.queue = FeedbackQueue(self.engine, self.registry, dev_accounts[1], max_queries=2,
                                   on_applied=self.directory.on_applied)  # fmt: skip

    def app(self, sid, signer):
        copy = self.copies[sid - 1]
        return create_node_app(SourceNode(copy, HybridIndex(copy, self.embedder), signer, sid, self.domain))

    def orchestrator(self, transports=None, ledger_path=None, save_ledger_every=20, **config):
        transports = (
            transports
            if transports is not None
            else {s: httpx.ASGITransport(a) for s, a in self.apps.items()}
        )
        config = OrchestratorConfig(
            **{"sources_per_query": 4, "k": 2, "contexts": 3, "timeout": 30.0, **config}
        )
        return Orchestrator(self.directory, ExtractiveGenerator(ExtractiveReader(self.embedder)), self.embedder,
                            queue=self.queue, config=config, transports=transports, ledger_path=ledger_path,
                            save_ledger_every=save_ledger_every)  # fmt: skip


def sid_hint(i):
    return i + 1  # a closed low loopback port: no name to resolve, a refused connection when not in-process


@pytest.fixture
def network(chain_client, dev_accounts, embedder, small_corpus, tmp_path):
    net = Network(chain_client, dev_accounts, embedder, small_corpus, tmp_path)
    yield net
    net.engine.dispose()


def rollo(network) -> Canary:
    """The question's known answer, with its reference passage (a canary)."""
    return Canary("rollo", QUESTION, ("Rollo",), network.copies[0].document("Normans#0").text)


def test_query_answers_cites_and_learns(network):
    orchestrator = network.orchestrator()
    result = orchestrator.query(QUESTION)
    assert {o.source_id for o in result.sources} == {1, 2, 3, 4}
    assert all(o.status == "ok" and len(o.documents) == 8 for o in result.sources)
    assert all(o.signature.startswith("0x") and len(o.nonce) == 66 for o in result.sources)
    assert result.citations and result.citations[0][0] in {1, 2, 3, 4}
    assert result.epoch == network.registry.current_epoch()
    # Everyone is new: without a known answer, agreement among strangers is no evidence either way.
    assert all((d.positive, d.negative) == (0, 0) for d in result.deltas.values())
    assert result.to_json()["sources"][0]["reliability"] == pytest.approx(0.2)
    # A known answer judges each source on its own: the polluted copy names another leader.
    refreshes = network.directory.refreshes
    gold = orchestrator.query(QUESTION, gold=Canary("user", QUESTION, ("Rollo",), ""))
    assert (gold.deltas[4].positive, gold.deltas[4].negative) == (0.0, MISS_WEIGHT)
    assert all(gold.deltas[sid].positive >= GOLD_WEIGHT for sid in (1, 2, 3))
    assert network.registry.batches() == 0  # one query with evidence is queued (the first gave none)
    where = "In what country is Normandy located?"
    orchestrator.query(where, gold=Canary("user", where, ("France",), ""))
    assert network.registry.batches() == 1  # two queries with evidence: the queue flushed one batch
    assert network.directory.refreshes == refreshes + 1
    means = {sid: s.posterior.mean for sid, s in network.directory.sources.items()}
    assert min(means[1], means[2], means[3]) > 0.2 > means[4]
    # The witnesses have records now: without gold, agreement with trusted peers is rewarded, the liar penalized.
    third = orchestrator.query(QUESTION)
    assert third.deltas[4].negative > 0 and all(third.deltas[s].positive > 0 for s in (1, 2, 3))
    assert "Rollo" in third.answer


def test_a_tampered_canary_passage_costs_more_than_a_miss(network):
    orchestrator = network.orchestrator()
    result = orchestrator.query(QUESTION, gold=rollo(network))
    # The polluted copy served the reference passage with the leader replaced: tampered, not a mere miss.
    assert result.deltas[4].negative == TAMPER_WEIGHT and result.deltas[1].positive >= GOLD_WEIGHT
    # Without the reference passage the same wrong answer is only a miss.
    known = orchestrator.query(QUESTION, gold=Canary("user", QUESTION, ("Rollo",), ""))
    assert known.deltas[4].negative == MISS_WEIGHT


def test_copies_become_one_witness_and_every_source_is_asked_the_whole_budget(network, tmp_path):
    """After a few queries the ledger finds that sources 1..3 always agree: one group, asked as one witness; the
    ledger survives a restart of the service."""
    path = tmp_path / "rag" / "ledger.json"
    orchestrator = network.orchestrator(k=2, ledger_path=path, save_ledger_every=5)
    for i, question in enumerate([q.question for q in network.copies[0].questions[:8]]):
        result = orchestrator.query(question)
        assert path.exists() == (i >= 4)  # saved every 5 queries
    assert result.groups[1] == result.groups[2] == result.groups[3] != result.groups[4]
    # Overlapping corpora return the same top documents: each source asked is asked for the query's 4 x 2.
    assert all(len(o.documents) == 8 for o in result.sources if o.status == "ok")
    orchestrator.close()
    restarted = network.orchestrator(k=2, ledger_path=path)
    assert restarted.ledger.to_json() == orchestrator.ledger.to_json()
    assert restarted.ledger.groups([1, 2, 3, 4]) == {1: 1, 2: 1, 3: 1, 4: 4}
    restarted.close()
    path.write_text("{not json")
    with pytest.raises(RagError, match="not an agreement ledger"):
        network.orchestrator(ledger_path=path)


class Dead(httpx.AsyncBaseTransport):
    async def handle_async_request(self, request):
        raise httpx.ConnectError("connection refused", request=request)


class Slow(httpx.AsyncBaseTransport):
    def __init__(self, inner):
        self.inner = inner

    async def handle_async_request(self, request):
        await asyncio.sleep(5)
        return await self.inner.handle_async_request(request)


class Replaying(httpx.AsyncBaseTransport):
    """Answers every request with the first answer it ever got (a replay of an old signed response)."""

    def __init__(self, inner):
        self.inner, self.saved = inner, None

    async def handle_async_request(self, request):
        response = await self.inner.handle_async_request(request)
        body = await response.aread()
        self.saved = self.saved or body
        return httpx.Response(200, content=self.saved, headers={"content-type": "application/json"})


def test_dead_slow_and_lying_sources_are_skipped_and_penalized(network, dev_accounts):
    transports = {
        1: httpx.ASGITransport(network.apps[1]),
        2: Dead(),
        3: Slow(httpx.ASGITransport(network.apps[3])),
    }
    result = network.orchestrator(transports, timeout=0.5).query(QUESTION)
    status = {o.source_id: (o.status, o.detail) for o in result.sources}
    assert status[1] == ("ok", "")
    assert status[2][0] == "unavailable" and "unreachable" in status[2][1]
    assert status[3][0] == "unavailable" and "no answer within 0.5s" in status[3][1]
    assert (result.deltas[2].negative, result.deltas[3].negative) == (1.0, 1.0)
    assert result.citations[0][0] == 1 and "Rollo" in result.answer


def test_misattributed_and_replayed_answers_are_refused(network):
    impostor = Account.from_key(b"\x07" * 32)  # signs as source 2 without being its operator
    replay = Replaying(httpx.ASGITransport(network.apps[3]))
    transports = {1: httpx.ASGITransport(network.apps[1]), 2: httpx.ASGITransport(network.app(2, impostor)),
                  3: replay, 4: httpx.ASGITransport(network.apps[4])}  # fmt: skip
    orchestrator = network.orchestrator(transports)
    first = orchestrator.query(QUESTION)
    assert {o.source_id: o.status for o in first.sources} == {1: "ok", 2: "invalid", 3: "ok", 4: "ok"}
    assert "not by its operator" in next(o.detail for o in first.sources if o.source_id == 2)
    second = orchestrator.query("In what country is Normandy located?")
    replayed = next(o for o in second.sources if o.source_id == 3)
    assert replayed.status == "invalid" and "another query" in replayed.detail
    assert second.deltas[3].negative == 1.0


def test_no_source_answering_is_an_error(network):
    with pytest.raises(SourceUnavailable, match="no source answered"):
        network.orchestrator(dict.fromkeys(range(1, 5), Dead())).query(QUESTION)
    with pytest.raises(RagError, match="empty question"):
        network.orchestrator().query("  ")


def test_real_http_nodes_on_loopback(network):
    servers = [start_background_server(app) for app in network.apps.values()]
    try:
        for (sid, operator), server in zip(network.operators.items(), servers, strict=True):
            network.registry.update_endpoint(operator, sid, server.url)
        result = network.orchestrator(transports={}).query(QUESTION)
        assert all(o.status == "ok" for o in result.sources)
        assert "Rollo" in result.answer
    finally:
        for server in servers:
            server.stop()
    # Once the servers are gone, the same sources are unreachable: skipped, never blocking.
    with pytest.raises(SourceUnavailable):
        network.orchestrator(transports={}, timeout=2.0).query(QUESTION)


def test_config_validation():
    for bad in [{"sources_per_query": 0}, {"k": 0}, {"timeout": 0}, {"dense_weight": -1},
                {"dense_weight": 0, "lexical_weight": 0, "reliability_weight": 0}]:  # fmt: skip
        with pytest.raises(RagError):
            OrchestratorConfig(**bad)


def test_chat_generator_end_to_end(network):
    """A short answer from an OpenAI-compatible endpoint is mapped to its cited sentence for the feedback."""
    from fastapi import FastAPI

    from rag.generators import ChatGenerator

    llm = FastAPI()

    @llm.post("/v1/chat/completions")
    def complete(body: dict) -> dict:
        return {"choices": [{"message": {"role": "assistant", "content": "Rollo [1]"}}]}

    server = start_background_server(llm)
    try:
        orchestrator = network.orchestrator()
        orchestrator.generator = ChatGenerator(server.url + "/v1", "tiny")
        result = orchestrator.query(QUESTION)
    finally:
        server.stop()
    assert (result.answer, result.short) == ("Rollo", True)
    assert result.citations and result.citations[0][0] in {1, 2, 3, 4}
    assert all((d.positive, d.negative) == (0, 0) for d in result.deltas.values())  # strangers: no evidence


def test_answer_survives_a_chain_outage_at_flush_time(network, monkeypatch, caplog):
    from backend.chain.errors import ChainUnavailable

    def down(*args):
        raise ChainUnavailable("cannot reach the chain")

    monkeypatch.setattr(network.registry, "apply_feedback", down)
    orchestrator = network.orchestrator()
    orchestrator.query(QUESTION, gold=rollo(network))  # known answers, so both queries leave evidence to send
    where = "In what country is Normandy located?"
    result = orchestrator.query(where, gold=Canary("user", where, ("France",), ""))
    assert result.answer and "updates stay queued" in caplog.text
    monkeypatch.undo()
    assert network.queue.flush().batch == 1  # nothing was lost: both queries' deltas land in the next batch
    assert network.queue.stats()["pending_updates"] == 0


def test_slow_node_over_http_times_out(network):
    from fastapi import FastAPI

    stalled = FastAPI()

    @stalled.post("/retrieve")
    async def retrieve() -> dict:
        await asyncio.sleep(8)
        return {}

    servers = [start_background_server(network.apps[1]), start_background_server(stalled)]
    try:
        network.registry.update_endpoint(network.operators[1], 1, servers[0].url)
        network.registry.update_endpoint(network.operators[2], 2, servers[1].url)
        # 3 s: long enough for the healthy node to answer on a loaded machine, well short of the stalled one's 8 s.
        result = network.orchestrator(transports={}, sources_per_query=4, timeout=3.0).query(QUESTION)
    finally:
        for server in servers:
            server.stop()
    status = {o.source_id: (o.status, o.detail) for o in result.sources}
    assert status[1][0] == "ok" and status[2] == ("unavailable", "source 2: no answer within 3.0s")
    assert status[3][0] == status[4][0] == "unavailable"  # nothing listens at their loopback placeholders


class Recording(httpx.AsyncBaseTransport):
    """A source 0.3 s away that notes when each request started and ended (per question)."""

    def __init__(self, inner, intervals):
        self.inner, self.intervals = inner, intervals

    async def handle_async_request(self, request):
        import json
        import time

        started = time.monotonic()
        await asyncio.sleep(0.3)
        response = await self.inner.handle_async_request(request)
        await response.aread()
        self.intervals.append((json.loads(request.content)["query"], started, time.monotonic()))
        return response


def test_two_queries_wait_on_their_sources_at_the_same_time(network):
    """Two concurrent queries on one orchestrator overlap on the sources (no process-wide lock, one loop)."""
    intervals: list[tuple[str, float, float]] = []
    transports = {sid: Recording(httpx.ASGITransport(app), intervals) for sid, app in network.apps.items()}
    orchestrator = network.orchestrator(transports, sources_per_query=2)
    questions = (QUESTION, "In what country is Normandy located?")

    async def both():
        return await asyncio.gather(*(orchestrator.aquery(q) for q in questions))

    try:
        results = asyncio.run(both())
    finally:
        orchestrator.close()
    assert [r.question for r in results] == list(questions)
    first = [(s, e) for q, s, e in intervals if q == questions[0]]
    second = [(s, e) for q, s, e in intervals if q == questions[1]]
    assert len(first) == len(second) == 2
    # Every request of one query was in flight while every request of the other was: the waits overlapped.
    assert max(s for s, _ in first + second) < min(e for _, e in first + second)


def test_node_connections_are_kept_alive_between_queries(network):
    """One keep-alive pool per loop: sequential queries reach a node over the connection the first one opened."""
    peers: list[tuple[str, int]] = []
    app = network.apps[1]

    async def noting_peers(scope, receive, send):
        if scope["type"] == "http":
            peers.append(tuple(scope["client"]))
        await app(scope, receive, send)

    server = start_background_server(noting_peers)
    try:
        network.registry.update_endpoint(network.operators[1], 1, server.url)
        orchestrator = network.orchestrator(transports={}, sources_per_query=4, timeout=5.0)
        try:
            for _ in range(3):
                orchestrator.query(QUESTION)
        finally:
            orchestrator.close()
    finally:
        server.stop()
    assert len(peers) == 3 and len(set(peers)) == 1


def _policy_after_yielding(_: object) -> int:
    import os

    from rag.orchestrator import _yield_to_serving

    _yield_to_serving()
    return os.sched_getscheduler(0)


@pytest.mark.skipif(not hasattr(__import__("os"), "SCHED_IDLE"), reason="SCHED_IDLE is Linux's")
def test_the_compute_process_runs_only_on_idle_cpu():
    """The compute process's policy: SCHED_IDLE, so a cheap request waking on a busy core preempts it at once."""
    import multiprocessing
    import os

    with multiprocessing.get_context("spawn").Pool(1) as pool:
        policy = pool.apply(_policy_after_yielding, (None,))
    assert policy == os.SCHED_IDLE
    assert os.sched_getscheduler(0) != os.SCHED_IDLE  # this process was left as it was


def test_every_compute_process_starts_with_the_pool(embedder):
    """A pool of two starts both at once: the second must not load its model inside some later query."""
    import multiprocessing

    from rag.orchestrator import compute_process

    before = set(multiprocessing.active_children())
    pool = compute_process(str(embedder._cache_dir), OrchestratorConfig(), processes=2)
    try:
        assert len(set(multiprocessing.active_children()) - before) == 2
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    with pytest.raises(RagError, match="compute processes"):
        compute_process(None, OrchestratorConfig(), processes=0)


@pytest.mark.slow
def test_compute_in_a_process_of_its_own_answers_the_same(network, embedder):
    """The server's mode: the CPU part of a query in a spawned process (sharing the embedding cache)."""
    from rag.orchestrator import compute_process

    threads = network.orchestrator()
    on_threads = threads.query(QUESTION)
    canary_on_threads = threads.query(QUESTION, gold=rollo(network))  # queued: no batch yet (one query)
    config = OrchestratorConfig(sources_per_query=4, k=2, contexts=3, timeout=30.0)
    orchestrator = network.orchestrator()
    orchestrator.compute = compute_process(str(embedder._cache_dir), config)
    orchestrator._in_process = True
    try:
        in_process = orchestrator.query(QUESTION)
        # A canary crosses as data; the tamper check and the judging run there, the same as on threads.
        canary_in_process = orchestrator.query(QUESTION, gold=rollo(network))
    finally:
        orchestrator.compute.shutdown()
    assert in_process.answer == on_threads.answer and in_process.citations == on_threads.citations
    assert {o.source_id: o.contribution for o in in_process.sources} == {
        o.source_id: o.contribution for o in on_threads.sources
    }
    assert canary_in_process.deltas == canary_on_threads.deltas
    assert canary_in_process.deltas[4].negative == TAMPER_WEIGHT
    # The claims came back to the parent: its ledger saw the four sources state them, twice.
    assert orchestrator.ledger.agreement(1, 2) == threads.ledger.agreement(1, 2)
    assert orchestrator.ledger.agreement(1, 2)[1] > 0


def test_two_workers_on_one_home_add_their_ledgers_up(network, tmp_path):
    """Two orchestrators (two API workers) save to one ledger file: the file holds both's queries, not the last's."""
    from rag.independence import AgreementLedger

    path = tmp_path / "rag" / "ledger.json"
    first = network.orchestrator(ledger_path=path, save_ledger_every=1)
    second = network.orchestrator(ledger_path=path, save_ledger_every=1)
    try:
        first.query(QUESTION)
        second.query(QUESTION)
        second.query("In what country is Normandy located?")
    finally:
        first.close()
        second.close()
    assert AgreementLedger.load(path).queries == 3
    assert (
        first.ledger.queries == 1 and second.ledger.queries == 3
    )  # the second adopted the first's on its sync
