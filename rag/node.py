"""A source node: one data owner's FastAPI service over its own corpus, signing every answer it gives.

`POST /retrieve` runs the local hybrid index and returns the top-k documents, each with its hash and Merkle proof
against the corpus commitment registered on chain, and an EIP-712 signature by the source's operator key over
(source id, query hash, document hashes, epoch). `GET /health` tells the source id, size and commitment.
"""

from __future__ import annotations

import re

from eth_account.signers.local import LocalAccount
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, field_validator

from rag.corpus import Corpus
from rag.errors import RagError
from rag.index import HybridIndex
from rag.signing import SigningDomain, query_hash, sign_retrieval

__all__ = ["RetrieveRequest", "RetrieveResponse", "RetrievedDocument", "SourceNode", "create_node_app"]

_HEX32 = re.compile(r"^0x[0-9a-fA-F]{64}$")


class RetrieveRequest(BaseModel):
    query: str = Field(min_length=1, max_length=4000)
    k: int = Field(ge=1, le=50)
    nonce: str = Field(description="32 random bytes as 0x-hex, fresh per query")
    epoch: int = Field(ge=0, lt=2**64, description="The SourceRegistry epoch the client read")

    @field_validator("nonce")
    @classmethod
    def _hex32(cls, value: str) -> str:
        if not _HEX32.match(value):
            raise ValueError("nonce must be 0x followed by 64 hex digits")
        return value.lower()


class RetrievedDocument(BaseModel):
    doc_id: str
    title: str
    text: str
    hash: str
    proof: list[str]
    score: float
    dense: float
    lexical: float


class RetrieveResponse(BaseModel):
    source_id: int
    query_hash: str
    epoch: int
    documents: list[RetrievedDocument]
    signature: str
    signer: str


class SourceNode:
    """The retrieval logic of a node, independent of HTTP (the app below and tests call it)."""

    def __init__(
        self, corpus: Corpus, index: HybridIndex, account: LocalAccount, source_id: int, domain: SigningDomain
    ):
        if index.corpus is not corpus:
            raise RagError("the index must be built over the node's corpus")
        self.corpus = corpus
        self.index = index
        self.account = account
        self.source_id = source_id
        self.domain = domain
        self._hashes = corpus.hashes

    def retrieve(self, request: RetrieveRequest) -> RetrieveResponse:
        nonce = bytes.fromhex(request.nonce[2:])
        qhash = query_hash(request.query, nonce, request.epoch, request.k)
        hits = self.index.search(request.query, request.k)
        documents = []
        for hit in hits:
            doc = self.corpus.documents[hit.position]
            documents.append(RetrievedDocument(
                doc_id=doc.doc_id, title=doc.title, text=doc.text, hash="0x" + self._hashes[hit.position].hex(),
                proof=["0x" + p.hex() for p in self.corpus.proof(doc.doc_id)],
                score=hit.score, dense=hit.dense, lexical=hit.lexical,
            ))  # fmt: skip
        signature = sign_retrieval(self.account, self.domain, self.source_id, qhash,
                                   [self._hashes[h.position] for h in hits], request.epoch)  # fmt: skip
        return RetrieveResponse(
            source_id=self.source_id, query_hash="0x" + qhash.hex(), epoch=request.epoch, documents=documents,
            signature="0x" + signature.hex(), signer=self.account.address,
        )  # fmt: skip


def create_node_app(node: SourceNode) -> FastAPI:
    """The HTTP face of a node."""
    app = FastAPI(title=f"trustmarket source node {node.source_id}", version="1")

    @app.exception_handler(RagError)
    async def _rag_error(_request: Request, exc: RagError) -> JSONResponse:
        return JSONResponse(
            status_code=400,
            media_type="application/problem+json",
            content={
                "type": "about:blank",
                "title": "Bad retrieval request",
                "status": 400,
                "detail": str(exc),
            },
        )

    @app.get("/health")
    def health() -> dict:
        """Which source this is, how many documents it serves, and its corpus commitment."""
        return {
            "source_id": node.source_id,
            "documents": len(node.corpus),
            "commitment": "0x" + node.corpus.commitment.hex(),
            "operator": node.account.address,
        }

    @app.post("/retrieve", response_model=RetrieveResponse)
    def retrieve(request: RetrieveRequest) -> RetrieveResponse:
        """Top-k documents for a query, signed by the source operator over the query hash, documents and epoch."""
        return node.retrieve(request)

    return app
