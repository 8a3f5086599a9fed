"""The reliability experiment of Reliable-dRAG, and the attacks on it, end to end on a local chain.

A scenario (`rag.scenarios`) says which copy of the corpus each source holds and who runs it: six sources
polluted independently 0..100% (`independent`, the default), colluders serving one polluted copy, one operator
with seven copies, a sleeper, a targeted attack. Each source runs the real node code (in process through an ASGI
transport, or as uvicorn servers on loopback ports with `http=True`), registers on a freshly deployed
SourceRegistry with the bond its operator must lock and its corpus commitment, and answers signed retrievals.

The seeded stream of the corpus's questions is cut into epochs of `batch_queries` questions (the chain's clock
is moved to the next epoch after each, so budgets and canaries work as they would hour by hour). The evaluator
holds gold answers for a share of the questions (`canary_pool`) and mixes `canary_fraction` of canaries into
each epoch, committed on chain before the epoch and revealed after it, slashing sources that served a tampered
copy of a canary's passage (`rag.auditor`). The users' questions go to the orchestrator (feedback without gold)
and to a centralized baseline (every source's documents in one index, no reliability) with the same reader; only
they are scored. With `clean=True` the same scenario runs again with no pollution at all (the clean upper bound).
"""

from __future__ import annotations

import random
import statistics
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from backend.chain.anvil import start_anvil
from backend.chain.artifacts import Artifacts
from backend.chain.client import ChainClient
from backend.chain.keys import dev_account
from backend.chain.source_registry import (
    FeedbackEntry,
    SourceRegistry,
    deploy_source_registry,
    encode_feedback,
)
from backend.db import make_engine
from rag.auditor import CanaryAuditor
from rag.canaries import Canary, CanarySchedule, canary_pool
from rag.corpus import DEFAULT_CORPUS, Corpus, Document, Question, load_corpus
from rag.errors import RagError
from rag.feedback import FeedbackQueue
from rag.generators import ExtractiveGenerator
from rag.index import Embedder, Hit, HybridIndex
from rag.metrics import METRIC_SENTENCE, sentence_correct, spearman
from rag.node import SourceNode, create_node_app
from rag.orchestrator import Orchestrator, OrchestratorConfig
from rag.reader import Context, ExtractiveReader
from rag.scenarios import SCENARIOS, Scenario, SourceCopy, SourceSpec, build_copies, independent
from rag.signing import SigningDomain
from rag.sources import SourceDirectory
from rag.text import normalize_answer, split_sentences

__all__ = ["DEFAULT_POLLUTION", "EPOCH_SECONDS", "EvalConfig", "run_evaluation"]

DEFAULT_POLLUTION = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
EPOCH_SECONDS = 3600  # the registry's epoch; the experiment moves the chain clock one epoch per batch


@dataclass(frozen=True)
class EvalConfig:
    corpus: Path = DEFAULT_CORPUS
    queries: int = 300
    scenario: str | Scenario = "independent"  # a name in `SCENARIOS`, or one of your own (`load_scenario`)
    pollution: tuple[float, ...] | None = (
        None  # independent sources at these fractions (overrides `scenario`)
    )
    seed: int = 0
    clean: bool = True  # also run the scenario with no pollution (the clean upper bound)
    batch_queries: int = 10  # users' queries per epoch (one feedback batch each)
    canary_fraction: float = 0.1  # canaries mixed in, per user query
    canary_share: float = 0.5  # share of the corpus's questions the evaluator knows the answers to
    turn_at: int | None = None  # when a sleeper turns (overrides the scenario's)
    # Epochs of canaries only before users' questions: newcomers' votes weigh nothing, so without a record
    # the first users' answers are decided by headcount among strangers.
    probation_epochs: int = 1
    # In-process nodes share the CPU with the orchestrator: a generous timeout keeps a busy machine from
    # reading as dead sources (the timeout path is tested on its own).
    orchestrator: OrchestratorConfig = field(default_factory=lambda: OrchestratorConfig(timeout=60.0))
    cache_dir: Path | None = None  # embedding cache between runs
    http: bool = False  # real uvicorn servers on loopback instead of in-process ASGI

    def resolved_scenario(self) -> Scenario:
        if self.pollution is not None:
            return independent(self.pollution)
        if isinstance(self.scenario, Scenario):
            scenario = self.scenario
        elif self.scenario in SCENARIOS:
            scenario = SCENARIOS[self.scenario]
        else:
            raise RagError(f"unknown scenario {self.scenario!r}; known: {', '.join(SCENARIOS)}")
        if self.turn_at is not None:
            specs = tuple(SourceSpec(s.pollution, s.stream, s.operator, self.turn_at if s.turn_at else None,
                                     s.targeted, s.attacker) for s in scenario.sources)  # fmt: skip
            scenario = Scenario(scenario.name, scenario.description, specs, scenario.target_fraction)
        return scenario


def run_evaluation(
    config: EvalConfig,
    *,
    artifacts_path: Path,
    chain_url: str | None = None,
    embedder: Embedder | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict:
    """Run the experiment on a fresh anvil (or `chain_url`, which must be anvil) and return the report."""
    if config.queries < 1:
        raise RagError("queries must be at least 1")
    if config.batch_queries < 1 or not 0.0 <= config.canary_fraction <= 1.0:
        raise RagError("batch_queries must be >= 1 and canary_fraction lie in [0, 1]")
    if config.probation_epochs < 0:
        raise RagError("probation_epochs must not be negative")
    if config.pollution is not None and len(config.pollution) < 2:
        raise RagError("the experiment needs at least two sources")
    scenario = config.resolved_scenario()
    corpus = load_corpus(config.corpus)
    if not corpus.questions:
        raise RagError(f"{config.corpus} has no questions to ask")
    questions = list(corpus.questions)
    random.Random(config.seed).shuffle(questions)
    stream = [questions[i % len(questions)] for i in range(config.queries)]
    embedder = embedder or Embedder(cache_dir=config.cache_dir)
    artifacts = Artifacts.load(artifacts_path)
    copies = build_copies(corpus, scenario, config.seed)
    accounts = 2 + len({c.operator for c in copies})  # the admin, the evaluator, one wallet per operator
    node = (
        start_anvil(chain_url, attach=True)
        if chain_url
        else start_anvil(attach=False, accounts=max(20, accounts))
    )
    try:
        client = ChainClient(node.url, artifacts)
        report = _Setting(config, corpus, stream, copies, client, embedder, progress, "polluted").run()
        report["scenario"] = {"name": scenario.name, "description": scenario.description}
        if config.clean:
            clean_specs = tuple(
                SourceSpec(0.0, s.stream, s.operator, None, False, s.attacker) for s in scenario.sources
            )
            clean_copies = build_copies(corpus, Scenario(scenario.name, "clean", clean_specs), config.seed)
            clean = _Setting(config, corpus, stream, clean_copies, client, embedder, progress, "clean").run()
            report["clean"] = {key: clean[key] for key in ("decentralized", "centralized", "sources")}
    finally:
        node.stop()
    return report


class _Setting:
    """One run of a scenario: a fresh registry, the nodes, the orchestrator, the baseline and the auditor."""

    def __init__(self, config: EvalConfig, corpus: Corpus, stream: Sequence[Question], copies: list[SourceCopy],
                 client: ChainClient, embedder: Embedder, progress, label: str):  # fmt: skip
        self.config, self.corpus, self.stream, self.copies = config, corpus, stream, copies
        self.client, self.embedder, self.progress, self.label = client, embedder, progress, label
        chain_id = client.chain_id
        self.admin, self.evaluator = dev_account(0, chain_id), dev_account(1, chain_id)
        self.registry = deploy_source_registry(client, self.admin, min_bond=10**15, epoch_length=EPOCH_SECONDS,
                                               evaluator=self.evaluator.address)  # fmt: skip
        self.planted: dict[str, set[str]] = {}
        for copy in copies:
            for qid, words in copy.pollution.planted.items():
                self.planted.setdefault(qid, set()).update(words)
        self.clean_sentences = frozenset(
            normalize_answer(s) for d in corpus.documents for s in split_sentences(d.text)
        )
        self.targets = {q.id for q in corpus.questions
                        if any(q.doc_id in c.pollution.polluted for c in copies if c.spec.targeted)}  # fmt: skip

    def run(self) -> dict:
        domain = SigningDomain(self.client.chain_id, self.registry.address)
        wallets: dict[int, int] = {}
        apps, self.switches, self.ids = {}, {}, []
        for copy in self.copies:
            operator = dev_account(2 + wallets.setdefault(copy.operator, len(wallets)), self.client.chain_id)
            sid = self.registry.register(
                operator, f"http://127.0.0.1:{9001 + copy.index}", copy.corpus.commitment
            )
            index = _ServingIndex(copy, self.embedder)
            self.switches[sid] = index
            apps[sid] = create_node_app(SourceNode(copy.corpus, index, operator, sid, domain))  # type: ignore[arg-type]
            self.ids.append((sid, copy, operator))
        bonds = {sid: self.registry.source(sid).bond for sid, _, _ in self.ids}
        reader = ExtractiveReader(self.embedder)
        central = _Centralized(self.copies, self.embedder, reader, self.config.orchestrator, done=0)
        pool = canary_pool(self.corpus, self.config.canary_share, self.config.seed)
        per_epoch = round(self.config.canary_fraction * self.config.batch_queries)
        schedule = CanarySchedule(pool, per_epoch, self.config.seed)
        with tempfile.TemporaryDirectory() as tmp, _Serving(apps, {sid: op for sid, _, op in self.ids},
                                                            self.registry, self.config.http) as transports:  # fmt: skip
            directory = SourceDirectory(self.registry)
            engine = make_engine(f"sqlite:///{Path(tmp) / 'feedback.db'}")
            queue = FeedbackQueue(engine, self.registry, self.evaluator, max_queries=10**9, max_age=1e18,
                                  on_applied=directory.on_applied)  # fmt: skip
            orchestrator = Orchestrator(directory, ExtractiveGenerator(reader), self.embedder, queue=queue,
                                        config=self.config.orchestrator, transports=transports)  # fmt: skip
            auditor = CanaryAuditor(
                self.registry, self.evaluator, schedule, evidence_dir=Path(tmp) / "evidence"
            )
            scores = _Scores(self.ids, self.targets)
            epoch = self.registry.current_epoch() + 1
            size = self.config.batch_queries
            # Probation epochs first: canaries only, no users' questions.
            blocks: list[list[Question]] = [[] for _ in range(self.config.probation_epochs)]
            blocks += [list(self.stream[i : i + size]) for i in range(0, len(self.stream), size)]
            for e in range(epoch, epoch + self.config.probation_epochs):
                schedule.set_count(e, size)
            auditor.commit(epoch)
            done = 0
            for block in blocks:
                self._next_epoch()
                auditor.settle(epoch)
                auditor.commit(epoch + 1)
                for q in schedule.interleave(epoch, block):
                    if isinstance(q, Canary):
                        result = orchestrator.query(
                            q.question, gold=q, query_id=f"{self.label}-canary-{q.id}"
                        )
                        auditor.record(epoch, q, result)
                        continue
                    done += 1
                    # A sleeper turns (each at its own query).
                    if any(c.spec.turn_at == done for c in self.copies):
                        for index in self.switches.values():
                            index.at(done)
                        central = _Centralized(self.copies, self.embedder, reader, self.config.orchestrator,
                                               done=done)  # fmt: skip
                    result = orchestrator.query(q.question, query_id=f"{self.label}-{done}")
                    wrong = self.planted.get(q.id, set())
                    scores.add(
                        q,
                        result,
                        sentence_correct(result.answer, q.answers, wrong, self.clean_sentences),
                        sentence_correct(central.answer(q.question), q.answers, wrong, self.clean_sentences),
                    )
                    if self.progress is not None:
                        self.progress(self.label, done, len(self.stream))
                queue.flush()
                scores.after_batch(done, self.registry.reliabilities())
                epoch += 1
            self._next_epoch()
            auditor.settle(epoch)
            engine.dispose()
        return self._report(scores, queue, auditor, bonds)

    def _next_epoch(self) -> None:
        """Mine the next block at the start of the registry's next epoch (anvil only)."""
        start = self.registry.genesis() + (self.registry.current_epoch() + 1) * EPOCH_SECONDS
        self.client.w3.provider.make_request("evm_mine", [start])  # type: ignore[arg-type]

    def _report(
        self, scores: _Scores, queue: FeedbackQueue, auditor: CanaryAuditor, bonds: dict[int, int]
    ) -> dict:
        reliabilities = self.registry.reliabilities()
        sources = []
        for sid, copy, operator in self.ids:
            rel, info = reliabilities[sid], self.registry.source(sid)
            sources.append({"id": sid, "pollution": copy.spec.pollution, "attacker": copy.attacker,
                            "operator": operator.address, "reliability": rel.mean, "observations": rel.observations,
                            "polluted_documents": len(copy.pollution.polluted), "slots": scores.slots[sid],
                            "status": info.status.name.lower(), "bond": bonds[sid], "burned": bonds[sid] - info.bond})  # fmt: skip
        gas = [b.gas_used for b in queue.applied if b.gas_used]
        n = len(self.stream)
        report: dict[str, Any] = {
            "metric": METRIC_SENTENCE,
            "queries": n,
            "setting": self.label,
            "decentralized": {"accuracy": scores.right["decentralized"] / n},
            "centralized": {"accuracy": scores.right["centralized"] / n},
            "sources": sources,
            "attacker_slot_share": scores.attacker_share(),
            "canaries": {
                "asked": sum(len(s.canaries) for s in auditor.epochs.values() if s.revealed),
                "slashes": len(auditor.slashed),
                "burned": sum(b for _, _, b in auditor.slashed),
            },
            "gas": {
                "batches": len(gas),
                "per_batch": sum(gas) / len(gas) if gas else None,
                "marginal_per_source": _marginal_gas(
                    self.client, self.registry, self.evaluator, [sid for sid, _, _ in self.ids]
                ),
            },
            "seed": self.config.seed,
            "probation_epochs": self.config.probation_epochs,
        }
        if scores.targeted:
            report["targeted"] = {k: v / scores.targeted for k, v in scores.right_targeted.items()}
            report["targeted"]["questions"] = scores.targeted
        sleepers = [scores.sleeper(sid, copy.spec.turn_at) for sid, copy, _ in self.ids
                    if copy.spec.turn_at is not None and copy.spec.turn_at <= n]  # fmt: skip
        if sleepers:
            # The one caught last (never caught counts as last) speaks for all; each is in `sleepers`.
            report["sleeper"] = max(sleepers, key=lambda s: s["queries_to_below_median"] or n + 1)
            report["sleepers"] = sleepers
        fractions = [copy.spec.pollution for _, copy, _ in self.ids]
        if len(set(fractions)) > 1 and not any(c.spec.turn_at or c.spec.targeted for c in self.copies):
            means = [reliabilities[sid].mean for sid, _, _ in self.ids]
            report["spearman"] = spearman(means, [-f for f in fractions])
        return report


class _Scores:
    """Accuracy, query slots per source, and the on-chain means after each batch (for the sleeper)."""

    def __init__(self, ids, targets: set[str]):
        self.attackers = {sid for sid, copy, _ in ids if copy.attacker}
        self.sleepers = {sid for sid, copy, _ in ids if copy.spec.turn_at}
        self.targets = targets
        self.right = {"decentralized": 0, "centralized": 0}
        self.right_targeted = {"decentralized": 0, "centralized": 0}
        self.targeted = 0
        self.slots = {sid: 0 for sid, _, _ in ids}
        self.history: list[tuple[int, dict[int, float]]] = []

    def add(self, question: Question, result, decentralized: bool, centralized: bool) -> None:
        self.right["decentralized"] += decentralized
        self.right["centralized"] += centralized
        if question.id in self.targets:
            self.targeted += 1
            self.right_targeted["decentralized"] += decentralized
            self.right_targeted["centralized"] += centralized
        for outcome in result.sources:
            self.slots[outcome.source_id] += 1

    def after_batch(self, done: int, reliabilities) -> None:
        self.history.append((done, {sid: rel.mean for sid, rel in reliabilities.items()}))

    def attacker_share(self) -> float:
        total = sum(self.slots.values())
        return sum(self.slots[s] for s in self.attackers) / total if total else 0.0

    def sleeper(self, sleeper: int, turn: int) -> dict:
        """Queries after the turn until the sleeper's on-chain mean is below the median of the sources that never
        turn (the other sources', with one sleeper; fellow sleepers sinking with it must not hide it)."""
        caught = None
        for done, means in self.history:
            others = [m for sid, m in means.items() if sid not in self.sleepers]
            if done >= turn and others and means[sleeper] < statistics.median(others):
                caught = done - turn + 1
                break
        before = [m for done, m in self.history if done < turn]
        return {"source": sleeper, "turned_at": turn, "queries_to_below_median": caught,
                "reliability_at_turn": before[-1][sleeper] if before else None}  # fmt: skip


def _marginal_gas(client, registry: SourceRegistry, evaluator, source_ids) -> float:
    """Extra gas per extra source in one batch, from gas estimates of 1- and n-entry batches at the final state."""
    batch = registry.batches() + 1
    contract = client.contract("SourceRegistry", registry.address)

    def estimate(ids) -> int:
        data = encode_feedback([FeedbackEntry(sid, 100 + sid, 50 + sid) for sid in ids])
        return contract.functions.applyFeedback(batch, data).estimate_gas({"from": evaluator.address})

    return (estimate(source_ids) - estimate(source_ids[:1])) / (len(source_ids) - 1)


class _ServingIndex:
    """A node's index over what it serves: for a sleeper, its clean documents until its turn (`at(query)`), then
    the polluted ones; positions are those of the committed corpus, whose proofs the node hands out."""

    def __init__(self, copy: SourceCopy, embedder: Embedder):
        self.corpus = copy.corpus
        self._positions = {d.doc_id: i for i, d in enumerate(copy.corpus.documents)}
        self._copy = copy
        views = (copy.clean_view, copy.view) if copy.clean_view is not None else (copy.view,)
        self._served = [(view, HybridIndex(view, embedder)) for view in views]
        self.at(0)

    def at(self, query: int) -> None:
        """Serve what this source serves at users' query number `query` (`SourceCopy.serves`)."""
        view = self._copy.serves(query)
        self._current = next(pair for pair in self._served if pair[0] is view)

    def search(self, query: str, k: int) -> list[Hit]:
        view, index = self._current
        return [Hit(self._positions[view.documents[h.position].doc_id], h.score, h.dense, h.lexical)
                for h in index.search(query, k)]  # fmt: skip


class _Centralized:
    """Every source's documents in one hybrid index, the same reader, no reliability."""

    def __init__(
        self, copies, embedder: Embedder, reader: ExtractiveReader, config: OrchestratorConfig, done: int
    ):
        """The index as of users' query number `done`: sleepers that have turned by then serve their turned view."""
        documents = [
            Document(f"{c.index}/{d.doc_id}", d.title, d.text)
            for c in copies
            for d in c.serves(done).documents
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
