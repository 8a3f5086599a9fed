"""RAG over the API: real source nodes (in-process ASGI) registered on chain, the real orchestrator and
embedder; the answer cites its sources with their on-chain reliability."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from backend.api import create_app
from backend.api.services import build_services
from backend.chain.source_registry import SourceRegistry

pytestmark = [pytest.mark.chain, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[3]
SQUAD = ROOT / "tests" / "fixtures" / "squad" / "paragraphs.jsonl"


@pytest.fixture(scope="module")
def embedder():
    from rag.index import Embedder

    return Embedder(cache_dir=ROOT / ".trustmarket" / "cache" / "embeddings")


@pytest.fixture
def rag_api(settings, api_settings, chain_client, dev_accounts, clock, embedder):
    from rag.corpus import Corpus, load_corpus
    from rag.generators import ExtractiveGenerator
    from rag.index import HybridIndex
    from rag.node import SourceNode, create_node_app
    from rag.orchestrator import Orchestrator, OrchestratorConfig
    from rag.reader import ExtractiveReader
    from rag.signing import SigningDomain
    from rag.sources import SourceDirectory

    squad = load_corpus(SQUAD)
    registry = SourceRegistry(chain_client)
    domain = SigningDomain(chain_client.chain_id, registry.address)
    transports, questions = {}, []
    for i, docs in enumerate((squad.documents[:4], squad.documents[40:44])):
        ids = {d.doc_id for d in docs}
        corpus = Corpus(tuple(docs), tuple(q for q in squad.questions if q.doc_id in ids))
        questions.extend(corpus.questions[:1])
        operator = dev_accounts[2 + i]
        sid = registry.register(operator, f"http://source-{i}.local", corpus.commitment, registry.min_bond())
        node = SourceNode(corpus, HybridIndex(corpus, embedder), operator, sid, domain)
        transports[sid] = httpx.ASGITransport(app=create_node_app(node))
    orchestrator = Orchestrator(
        SourceDirectory(registry),
        ExtractiveGenerator(ExtractiveReader(embedder)),
        embedder,
        config=OrchestratorConfig(sources_per_query=2, k=2, contexts=3),
        transports=transports,
    )
    services = build_services(
        settings, api_settings, chain=chain_client, relayer=dev_accounts[0], monotonic=clock,
        rag=orchestrator,
    )  # fmt: skip
    with TestClient(create_app(settings, services=services), raise_server_exceptions=False) as client:
        yield client, services, questions
    services.close()


def _member(client, services, registry_client, admin, name):
    from api_helpers import Api, FakeClock

    from backend.chain.access_registry import AccessRegistry

    helper = Api(client, services, AccessRegistry(registry_client), admin, FakeClock())
    return helper.member(name, tier=1)


def test_query_answers_with_cited_sources_and_reliability(rag_api, chain_client, dev_accounts):
    client, services, questions = rag_api
    _, headers = _member(client, services, chain_client, dev_accounts[0], "rag-asker")
    reply = client.post("/v1/rag/query", headers=headers, json={"question": questions[0].question})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["answer"]
    assert body["citations"]
    reported = {s["source_id"]: s for s in body["sources"]}
    assert set(reported) == {1, 2}
    for cite in body["citations"]:
        assert cite["reliability"] == pytest.approx(reported[cite["source_id"]]["reliability"])
        assert 0 < cite["reliability"] < 1
        assert cite["doc_id"] in reported[cite["source_id"]]["documents"]
    listed = client.get("/v1/rag/sources", headers=headers).json()
    assert [s["id"] for s in listed] == [1, 2]


def test_query_longer_than_the_tier_allows_is_413(rag_api, chain_client, dev_accounts):
    client, services, _ = rag_api
    _, headers = _member(client, services, chain_client, dev_accounts[0], "rag-verbose")
    cap = services.api.tiers[1].max_query_chars
    reply = client.post("/v1/rag/query", headers=headers, json={"question": "why " * (cap // 4 + 1)})
    assert reply.status_code == 413
    assert reply.json()["type"] == "/problems/payload-too-large"
    blank = client.post("/v1/rag/query", headers=headers, json={"question": "   "})
    assert blank.status_code == 400
