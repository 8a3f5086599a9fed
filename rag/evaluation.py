"""The reliability experiment of Reliable-dRAG on any SQuAD-format corpus, end to end on a local chain.

Six sources hold copies of the corpus with 0, 20, 40, 60, 80 and 100% of their paragraphs polluted
(`rag.pollution`, seeded). Each runs the real node code (in process through an ASGI transport, or as uvicorn
servers on loopback ports with `http=True`), registers on a freshly deployed SourceRegistry with a bond and its
corpus commitment, and answers signed retrievals. A seeded stream of the corpus's questions goes to the
orchestrator (feedback from grounding and contribution only, no gold) and to a centralized baseline (every
source's documents in one index, no reliability) with the same reader. With `clean=True` the same queries run
again with no pollution at all, to show that weighting costs nothing when every source is honest.
"""

from __future__ import annotations

import random
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from backend.chain.anvil import start_anvil
from backend.chain.artifacts import Artifacts
from backend.chain.client import ChainClient
from backend.chain.keys import dev_account
from backend.chain.source_registry import FeedbackEntry, deploy_source_registry, encode_feedback
from backend.db import make_engine
from rag.corpus import DEFAULT_CORPUS, Corpus, Document, load_corpus
from rag.errors import RagError
from rag.feedback import FeedbackQueue
from rag.generators import ExtractiveGenerator
from rag.index import Embedder, HybridIndex
from rag.metrics import METRIC_SENTENCE, sentence_correct, spearman
from rag.node import SourceNode, create_node_app
from rag.orchestrator import Orchestrator, OrchestratorConfig
from rag.pollution import Pollution, pollute
from rag.reader import Context, ExtractiveReader
from rag.signing import SigningDomain
from rag.sources import SourceDirectory

__all__ = ["DEFAULT_POLLUTION", "EvalConfig", "run_evaluation"]

DEFAULT_POLLUTION = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


@dataclass(frozen=True)
class EvalConfig:
    corpus: Path = DEFAULT_CORPUS
    queries: int = 300
    pollution: tuple[float, ...] = DEFAULT_POLLUTION
    seed: int = 0
    clean: bool = True  # also run the all-clean setting
    batch_queries: int = 10
    # In-process nodes share the CPU with the orchestrator: a generous timeout keeps a busy machine from
    # reading as dead sources (the timeout path is tested on its own).
    orchestrator: OrchestratorConfig = field(default_factory=lambda: OrchestratorConfig(timeout=60.0))
    cache_dir: Path | None = None  # embedding cache between runs
    http: bool = False  # real uvicorn servers on loopback instead of in-process ASGI


def run_evaluation(
    config: EvalConfig,
    *,
    artifacts_path: Path,
    chain_url: str | None = None,
    embedder: Embedder | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict:
    """Run the experiment on a fresh anvil (or `chain_url`) and return the report (see docs/rag.md)."""
    if config.queries < 1:
        raise RagError("queries must be at least 1")
    if len(config.pollution) < 2:
        raise RagError("the experiment needs at least two sources")
    corpus = load_corpus(config.corpus)
    if not corpus.questions:
        raise RagError(f"{config.corpus} has no questions to ask")
    questions = list(corpus.questions)
    random.Random(config.seed).shuffle(questions)
    stream = [questions[i % len(questions)] for i in range(config.queries)]
    embedder = embedder or Embedder(cache_dir=config.cache_dir)
    artifacts = Artifacts.load(artifacts_path)
    node = start_anvil(chain_url, attach=chain_url is not None) if chain_url else start_anvil(attach=False)
    try:
        client = ChainClient(node.url, artifacts)
        report = _setting(config, corpus, stream, config.pollution, client, embedder, progress, "polluted")
        if config.clean:
            clean = _setting(config, corpus, stream, tuple(0.0 for _ in config.pollution), client, embedder,
                             progress, "clean")  # fmt: skip
            report["clean"] = {key: clean[key] for key in ("decentralized", "centralized", "sources")}
    finally:
        node.stop()
    return report


def _setting(
    config, corpus: Corpus, stream, fractions: Sequence[float], client, embedder, progress, label
) -> dict:
    chain_id = client.chain_id
    admin, evaluator = dev_account(0, chain_id), dev_account(1, chain_id)
    registry = deploy_source_registry(client, admin, min_bond=10**15, evaluator=evaluator.address)
    domain = SigningDomain(chain_id, registry.address)
    copies: list[tuple[Corpus, Pollution]] = [
        pollute(corpus, f, config.seed, i) for i, f in enumerate(fractions)
    ]
    planted: dict[str, set[str]] = {}
    for _, record in copies:
        for qid, words in record.planted.items():
            planted.setdefault(qid, set()).update(words)
    apps, operators, source_ids = {}, {}, []
    for i, (copy, _) in enumerate(copies):
        operator = dev_account(2 + i, chain_id)
        sid = registry.register(operator, f"http://127.0.0.1:{9001 + i}", copy.commitment, 10**15)
        apps[sid] = create_node_app(SourceNode(copy, HybridIndex(copy, embedder), operator, sid, domain))
        operators[sid] = operator
        source_ids.append(sid)
    reader = ExtractiveReader(embedder)
    generator = ExtractiveGenerator(reader)
    central = _Centralized(copies, embedder, reader, config.orchestrator)
    with tempfile.TemporaryDirectory() as tmp, _Serving(apps, operators, registry, config.http) as transports:
        directory = SourceDirectory(registry)
        engine = make_engine(f"sqlite:///{Path(tmp) / 'feedback.db'}")
        queue = FeedbackQueue(engine, registry, evaluator, max_queries=config.batch_queries, max_age=1e9,
                              on_applied=directory.on_applied)  # fmt: skip
        orchestrator = Orchestrator(directory, generator, embedder, queue=queue, config=config.orchestrator,
                                    transports=transports)  # fmt: skip
        right = {"decentralized": 0, "centralized": 0}
        for n, q in enumerate(stream, 1):
            wrong = planted.get(q.id, set())
            result = orchestrator.query(q.question, query_id=f"{label}-{n}")
            right["decentralized"] += sentence_correct(result.answer, q.answers, wrong)
            right["centralized"] += sentence_correct(central.answer(q.question), q.answers, wrong)
            if progress is not None:
                progress(label, n, len(stream))
        queue.flush()
        engine.dispose()
    reliabilities = registry.reliabilities()
    sources = [{"id": sid, "pollution": f, "reliability": reliabilities[sid].mean,
                "observations": reliabilities[sid].observations, "polluted_documents": len(rec.polluted)}
               for sid, f, (_, rec) in zip(source_ids, fractions, copies, strict=True)]  # fmt: skip
    gas = [b.gas_used for b in queue.applied if b.gas_used]
    report = {
        "metric": METRIC_SENTENCE,
        "queries": len(stream),
        "setting": label,
        "decentralized": {"accuracy": right["decentralized"] / len(stream)},
        "centralized": {"accuracy": right["centralized"] / len(stream)},
        "sources": sources,
        "gas": {
            "batches": len(gas),
            "per_batch": sum(gas) / len(gas) if gas else None,
            "marginal_per_source": _marginal_gas(client, registry, evaluator, source_ids),
        },
        "seed": config.seed,
    }
    if len(set(fractions)) > 1:
        report["spearman"] = spearman([s["reliability"] for s in sources], [-s["pollution"] for s in sources])
    return report


def _marginal_gas(client, registry, evaluator, source_ids) -> float:
    """Extra gas per extra source in one batch, from gas estimates of 1- and n-entry batches at the final state."""
    epoch = registry.epoch() + 1
    contract = client.contract("SourceRegistry", registry.address)

    def estimate(ids) -> int:
        data = encode_feedback([FeedbackEntry(sid, 1000 + sid, 500 + sid) for sid in ids])
        return contract.functions.applyFeedback(epoch, data).estimate_gas({"from": evaluator.address})

    return (estimate(source_ids) - estimate(source_ids[:1])) / (len(source_ids) - 1)


class _Centralized:
    """Every source's documents in one hybrid index, the same reader, no reliability."""

    def __init__(self, copies, embedder: Embedder, reader: ExtractiveReader, config: OrchestratorConfig):
        documents = [
            Document(f"{i}/{d.doc_id}", d.title, d.text)
            for i, (c, _) in enumerate(copies)
            for d in c.documents
        ]
        self.corpus = Corpus(tuple(documents))
        self.index = HybridIndex(self.corpus, embedder)
        self.reader = reader
        self.pool = config.sources_per_query * config.k
        self.contexts = config.contexts

    def answer(self, question: str) -> str:
        seen, contexts = set(), []
        for hit in self.index.search(question, self.pool):
            doc = self.corpus.documents[hit.position]
            if doc.text in seen:
                continue  # identical copies count once, as in the orchestrator
            seen.add(doc.text)
            contexts.append(Context(doc.text, max(hit.score, 1e-6), 0, doc.doc_id, doc.title))
        return self.reader.read(question, contexts[: self.contexts]).text


class _Serving:
    """The nodes' transports: in-process ASGI, or uvicorn on free loopback ports with endpoints updated on chain."""

    def __init__(self, apps, operators, registry, http: bool):
        self.apps, self.operators, self.registry, self.http = apps, operators, registry, http
        self._servers: list = []

    def __enter__(self) -> dict[int, httpx.AsyncBaseTransport]:
        if not self.http:
            return {sid: httpx.ASGITransport(app=app) for sid, app in self.apps.items()}
        from rag.serve import start_background_server

        for sid, app in self.apps.items():
            server = start_background_server(app, "127.0.0.1", 0)
            self._servers.append(server)
            self.registry.update_endpoint(self.operators[sid], sid, server.url)
        return {}

    def __exit__(self, *exc) -> None:
        for server in self._servers:
            server.stop()
