"""A source node over HTTP, and the checks that bind its signed answer to one query, epoch, source and corpus."""

from __future__ import annotations

import copy

import pytest
from eth_account import Account
from fastapi.testclient import TestClient

from backend.chain.source_registry import SourceStatus
from rag.corpus import Corpus
from rag.errors import RagError, SignatureError
from rag.index import HybridIndex
from rag.node import RetrieveRequest, SourceNode, create_node_app
from rag.reliability import Posterior
from rag.signing import SigningDomain, new_nonce, query_hash, recover_signer, sign_retrieval
from rag.sources import SourceView, verify_retrieval

DOMAIN = SigningDomain(31337, "0x5FbDB2315678afecb367f032d93F642f64180aa3")
OPERATOR = Account.from_key(b"\x01" * 32)
QUESTION = "Who was the Norse leader?"


@pytest.fixture(scope="module")
def node(small_corpus, embedder):
    return SourceNode(small_corpus, HybridIndex(small_corpus, embedder), OPERATOR, 3, DOMAIN)


@pytest.fixture(scope="module")
def http(node):
    return TestClient(create_node_app(node))


@pytest.fixture
def view(small_corpus):
    return SourceView(3, "http://node", OPERATOR.address, small_corpus.commitment, Posterior(1, 4),
                      SourceStatus.ACTIVE)  # fmt: skip


def ask(http, nonce: bytes, epoch=4, k=2, query=QUESTION):
    reply = http.post("/retrieve", json={"query": query, "k": k, "nonce": "0x" + nonce.hex(), "epoch": epoch})
    assert reply.status_code == 200, reply.text
    return reply.json()


def test_health(http, small_corpus):
    body = http.get("/health").json()
    assert body == {"source_id": 3, "documents": len(small_corpus), "operator": OPERATOR.address,
                    "commitment": "0x" + small_corpus.commitment.hex()}  # fmt: skip


def test_signed_answer_verifies(http, view):
    nonce = new_nonce()
    payload = ask(http, nonce)
    documents = verify_retrieval(view, DOMAIN, payload, QUESTION, nonce, 4, 2)
    assert len(documents) == 2 and documents[0].doc_id == "Normans#0"
    assert payload["signer"] == OPERATOR.address


@pytest.mark.parametrize(
    "body",
    [
        {"query": "", "k": 2, "nonce": "0x" + "00" * 32, "epoch": 0},
        {"query": "q", "k": 0, "nonce": "0x" + "00" * 32, "epoch": 0},
        {"query": "q", "k": 51, "nonce": "0x" + "00" * 32, "epoch": 0},
        {"query": "q", "k": 2, "nonce": "0x1234", "epoch": 0},
        {"query": "q", "k": 2, "nonce": "0x" + "zz" * 32, "epoch": 0},
        {"query": "q", "k": 2, "nonce": "0x" + "00" * 32, "epoch": -1},
        {"query": "q", "k": 2, "nonce": "0x" + "00" * 32},
    ],
)
def test_bad_requests_are_422(http, body):
    assert http.post("/retrieve", json=body).status_code == 422


def test_rag_errors_become_problem_json(http):
    reply = http.post("/retrieve", json={"query": "   ", "k": 2, "nonce": "0x" + "00" * 32, "epoch": 0})
    assert reply.status_code == 400
    assert reply.headers["content-type"] == "application/problem+json"
    assert reply.json()["detail"] == "empty query"


def test_replayed_or_redirected_answers_are_refused(http, view):
    nonce = new_nonce()
    payload = ask(http, nonce)
    with pytest.raises(SignatureError, match="another query"):
        verify_retrieval(view, DOMAIN, payload, QUESTION, new_nonce(), 4, 2)  # replay for a new nonce
    with pytest.raises(SignatureError, match="another query"):
        verify_retrieval(view, DOMAIN, payload, "Who founded Normandy?", nonce, 4, 2)
    with pytest.raises(SignatureError, match="epoch"):
        verify_retrieval(view, DOMAIN, payload, QUESTION, nonce, 5, 2)
    with pytest.raises(SignatureError, match="another query"):
        verify_retrieval(view, DOMAIN, payload, QUESTION, nonce, 4, 3)


def _tampered(payload, change):
    forged = copy.deepcopy(payload)
    change(forged)
    return forged


def test_tampered_answers_are_refused(http, view, small_corpus):
    nonce = new_nonce()
    payload = ask(http, nonce)

    def check(change, match, source=view):
        with pytest.raises(SignatureError, match=match):
            verify_retrieval(source, DOMAIN, _tampered(payload, change), QUESTION, nonce, 4, 2)

    check(lambda p: p["documents"][0].update(text=p["documents"][0]["text"].replace("Rollo", "Hastein")),
          "does not match its hash")  # fmt: skip
    check(lambda p: p.update(source_id=4), "claims to come from source 4")
    check(lambda p: p["documents"].pop(), "signed by")  # dropping a document changes what was signed
    check(lambda p: p["documents"].reverse(), "signed by")
    check(lambda p: p.update(signature="0x" + "11" * 65), r"signed by|malformed")
    check(lambda p: p.update(signature="0xnothex"), "not hex")
    check(lambda p: p["documents"][0].update(proof=["0xzz"]), "malformed proof")
    check(lambda p: p.pop("documents"), "malformed answer")
    other = SourceView(3, "http://node", Account.from_key(b"\x02" * 32).address, small_corpus.commitment,
                       Posterior(1, 4), SourceStatus.ACTIVE)  # fmt: skip
    check(lambda p: None, "not by its operator", source=other)  # misattribution: another operator on chain
    moved = SourceView(3, "http://node", OPERATOR.address, b"\x00" * 32, Posterior(1, 4), SourceStatus.ACTIVE)
    check(lambda p: None, "not in its committed corpus", source=moved)


def test_more_documents_than_asked_are_refused(http, view):
    nonce = new_nonce()
    payload = ask(http, nonce, k=3)
    # A node that signs the k=2 query correctly but floods the answer with a third document.
    qhash = query_hash(QUESTION, nonce, 4, 2)
    hashes = [bytes.fromhex(d["hash"][2:]) for d in payload["documents"]]
    payload["query_hash"] = "0x" + qhash.hex()
    payload["signature"] = "0x" + sign_retrieval(OPERATOR, DOMAIN, 3, qhash, hashes, 4).hex()
    with pytest.raises(SignatureError, match="documents for k=2"):
        verify_retrieval(view, DOMAIN, payload, QUESTION, nonce, 4, 2)


def test_signing_primitives():
    qhash = query_hash("q", b"\x00" * 32, 1, 2)
    docs = [b"\x05" * 32]
    signature = sign_retrieval(OPERATOR, DOMAIN, 1, qhash, docs, 1)
    assert recover_signer(DOMAIN, 1, qhash, docs, 1, signature) == OPERATOR.address
    other_chain = SigningDomain(1, DOMAIN.registry)
    assert recover_signer(other_chain, 1, qhash, docs, 1, signature) != OPERATOR.address
    with pytest.raises(SignatureError, match="nonce"):
        query_hash("q", b"\x00" * 31, 1, 2)
    with pytest.raises(SignatureError, match="range"):
        query_hash("q", b"\x00" * 32, 1, 0)
    with pytest.raises(SignatureError, match="malformed"):
        recover_signer(DOMAIN, 1, qhash, docs, 1, b"\x00" * 10)


def test_node_needs_an_index_over_its_own_corpus(small_corpus, squad, embedder, node):
    other = Corpus(squad.documents[50:52])
    with pytest.raises(RagError, match="node's corpus"):
        SourceNode(small_corpus, HybridIndex(other, embedder), OPERATOR, 1, DOMAIN)
    assert RetrieveRequest(query="q", k=1, nonce="0x" + "AB" * 32, epoch=0).nonce == "0x" + "ab" * 32
