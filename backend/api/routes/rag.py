"""Decentralized RAG: the registered sources with their on-chain reliability (and, once the orchestrator is
available, reliability-weighted queries with cited sources)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter
from pydantic import BaseModel

from backend.api.core.access import Caller
from backend.api.core.errors import problem_responses
from backend.api.deps import Services, require_scope
from backend.chain.source_registry import SourceRegistry

__all__ = ["router"]

router = APIRouter(prefix="/v1/rag", tags=["rag"], responses=problem_responses(401, 403, 422, 429, 503))


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
    caller: Annotated[Caller, require_scope("rag:sources", cost="read")], services: Services
) -> list[SourceView]:
    """Registered data sources and the reliability the chain holds for each (Beta posterior mean and spread)."""

    def read() -> list[SourceView]:
        registry = SourceRegistry(services.require_chain())
        reliabilities = registry.reliabilities()
        out = []
        for info in registry.sources():
            rel = reliabilities[info.source_id]
            out.append(
                SourceView(
                    id=info.source_id,
                    operator=info.operator,
                    endpoint=info.endpoint,
                    status=info.status.name.lower(),
                    bond_wei=info.bond,
                    reliability=rel.mean,
                    reliability_std=rel.std,
                    observations=rel.observations,
                )
            )
        return out

    return services.memo("rag:sources", read)
