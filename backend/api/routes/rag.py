"""Decentralized RAG over the API: questions answered from the registered sources by `rag.orchestrator`
(reliability-weighted retrieval, cited sources with their reliability), and the sources as the chain has them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter
from pydantic import BaseModel, Field

from backend.api.core.access import Caller
from backend.api.core.errors import BadRequest, PayloadTooLarge, ServiceUnavailable, problem_responses
from backend.api.deps import ChainDep, GatedRoute, RagDep, ServicesDep, caller_refund, require_scope
from backend.api.services import ApiServices
from backend.chain.client import ChainClient
from backend.chain.source_registry import SourceRegistry
from rag.errors import RagError

__all__ = ["list_sources", "router"]

router = APIRouter(
    route_class=GatedRoute,
    prefix="/v1/rag",
    tags=["rag"],
    responses=problem_responses(401, 403, 422, 429, 503),
)


class SourceView(BaseModel):
    id: int
    operator: str
    endpoint: str
    status: str
    bond_wei: int
    reliability: float
    reliability_std: float
    observations: float


@router.get("/sources")
def sources(
    caller: Annotated[Caller, require_scope("rag:sources", cost="read")],
    services: ServicesDep,
    chain: ChainDep,
) -> list[SourceView]:
    """Registered data sources and the reliability the chain holds for each (Beta posterior mean and spread)."""
    return list_sources(services, chain)


def list_sources(services: ApiServices, chain: ChainClient) -> list[SourceView]:
    """The sources as the chain has them, read at most once per cache TTL."""

    def read() -> list[SourceView]:
        registry = SourceRegistry(chain)
        reliabilities = registry.reliabilities()
        return [
            SourceView(
                id=info.source_id,
                operator=info.operator,
                endpoint=info.endpoint,
                status=info.status.name.lower(),
                bond_wei=info.bond,
                reliability=reliabilities[info.source_id].mean,
                reliability_std=reliabilities[info.source_id].std,
                observations=reliabilities[info.source_id].observations,
            )
            for info in registry.sources()
        ]

    return services.memo("rag:sources", read)


class QueryIn(BaseModel):
    question: str = Field(min_length=1, max_length=20_000, description="Capped further by tier (413 above).")


class CitedSource(BaseModel):
    source_id: int
    doc_id: str
    reliability: float = Field(
        description="The source's on-chain reliability (Beta posterior mean) when asked."
    )


class SourceReport(BaseModel):
    source_id: int
    status: str = Field(description="ok | unavailable | invalid (a bad signature or proof)")
    reliability: float
    contribution: float = Field(description="How much the answer depended on this source (leave-one-out).")
    documents: list[str]
    detail: str


class Answer(BaseModel):
    query_id: str
    answer: str
    citations: list[CitedSource]
    sources: list[SourceReport]
    epoch: int


@router.post("/query", responses=problem_responses(400, 413, 502))
async def query(
    body: QueryIn,
    caller: Annotated[Caller, require_scope("rag:query", cost="rag_query")],
    services: ServicesDep,
    orchestrator: RagDep,
) -> Answer:
    """Answer a question from the registered sources, weighted by their on-chain reliability, with citations.

    Queries run concurrently (waiting on sources holds no thread); at most `rag_concurrency` per worker are in
    progress and `rag_queue` more wait: beyond that, 503 `busy` with Retry-After (and no charge)."""
    cap = caller.policy.max_query_chars
    if len(body.question) > cap:
        raise PayloadTooLarge(f"tier {caller.policy.name!r} asks questions of at most {cap} characters")
    if not body.question.strip():
        raise BadRequest("the question is blank", kind="blank-question")
    refund = caller_refund(services, caller)
    async with services.bulkheads["rag"].slot(on_refused=refund):
        try:
            result = await orchestrator.aquery(body.question)
        except RagError as exc:
            raise ServiceUnavailable(str(exc), kind="rag-no-answer") from None
    reliability = {o.source_id: o.reliability for o in result.sources}
    return Answer(
        query_id=result.query_id,
        answer=result.answer,
        citations=[
            CitedSource(source_id=s, doc_id=d, reliability=reliability.get(s, 0.0))
            for s, d in result.citations
        ],
        sources=[
            SourceReport(
                source_id=o.source_id,
                status=o.status,
                reliability=o.reliability,
                contribution=o.contribution,
                documents=[d.doc_id for d in o.documents],
                detail=o.detail,
            )
            for o in result.sources
        ],
        epoch=result.epoch,
    )
