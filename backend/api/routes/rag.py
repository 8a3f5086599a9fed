"""Decentralized RAG: the registered sources with their on-chain reliability (and, once the orchestrator is
available, reliability-weighted queries with cited sources)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter
from pydantic import BaseModel

from backend.api.core.access import Caller
from backend.api.core.errors import problem_responses
from backend.api.deps import Services, require_scope
from backend.api.services import ApiServices
from backend.chain.source_registry import SourceRegistry

__all__ = ["list_sources", "router"]

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
    return list_sources(services)


def list_sources(services: ApiServices) -> list[SourceView]:
    """The sources as the chain has them, read at most once per cache TTL."""

    def read() -> list[SourceView]:
        registry = SourceRegistry(services.require_chain())
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
