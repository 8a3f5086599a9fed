"""Terms of use: read the current ones, get the EIP-712 payload to sign, and have the acceptance relayed on chain.

The acceptance is recorded by the AccessRegistry contract (the terms hash, per wallet); the service only relays
the wallet's signature and pays the gas, so it cannot accept on anyone's behalf.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from backend.api.core.access import Caller
from backend.api.core.errors import BadRequest, Conflict, problem_responses
from backend.api.deps import AccessRegistryDep, GatedRoute, RelayerDep, ServicesDep, public, require_scope
from backend.chain.access_registry import AccessRegistry

__all__ = ["router"]

router = APIRouter(
    route_class=GatedRoute, prefix="/v1/terms", tags=["terms"], responses=problem_responses(422, 429, 503)
)

_HEX32 = r"^0x[0-9a-fA-F]{64}$"


class Terms(BaseModel):
    published: bool
    version: int
    terms_hash: str
    uri: str | None
    registry: str
    chain_id: int


class Acceptance(BaseModel):
    terms_hash: str = Field(pattern=_HEX32)
    deadline: int = Field(ge=0, lt=2**64, description="Unix time after which the signature is void.")
    signature: str = Field(pattern=r"^0x([0-9a-fA-F]{2}){65,1024}$", description="EIP-712 signature.")


class Accepted(BaseModel):
    accepted: bool
    terms_hash: str
    transaction: str


@router.get("", dependencies=[Depends(public)])
def current_terms(services: ServicesDep) -> Terms:
    """The terms in force (their hash and version, and where to read them)."""

    def read() -> Terms:
        registry = services.registry()
        info = registry.terms()
        return Terms(
            published=info.published,
            version=info.version,
            terms_hash="0x" + info.terms_hash.hex(),
            uri=registry.terms_uri(info.version) if info.published else None,
            registry=registry.address,
            chain_id=registry.client.chain_id,
        )

    return services.memo("terms", read)


@router.get("/acceptance", responses=problem_responses(401, 403, 409))
def acceptance_payload(
    caller: Annotated[Caller, require_scope("terms:accept", cost="free")],
    registry: AccessRegistryDep,
    deadline: Annotated[int | None, Query(ge=0, lt=2**64, description="Default: one hour from now.")] = None,
) -> dict[str, Any]:
    """The EIP-712 typed data (eth_signTypedData_v4) that accepts the current terms for the caller."""
    info = registry.terms()
    if not info.published:
        raise Conflict(
            "no terms are published yet: a TERMS_ADMIN_ROLE holder publishes them (`trustmarket terms publish FILE`)",
            kind="no-terms",
        )
    when = deadline if deadline is not None else int(time.time()) + 3600
    return registry.acceptance_typed_data(caller.wallet, info.terms_hash, when)


@router.post("/accept", responses=problem_responses(400, 401, 403, 409, 502))
def accept(
    body: Acceptance,
    caller: Annotated[Caller, require_scope("terms:accept", cost="default")],
    services: ServicesDep,
    registry: AccessRegistryDep,
    relayer: RelayerDep,
) -> Accepted:
    """Relay the caller's signed acceptance to the AccessRegistry (the service pays the gas)."""
    terms_hash = bytes.fromhex(body.terms_hash[2:])
    try:
        receipt = registry.accept_terms_for(
            relayer, caller.wallet, terms_hash, body.deadline, bytes.fromhex(body.signature[2:])
        )
    except AccessRegistry.errors.InvalidSignature:
        raise BadRequest(
            "the signature is not the caller's over these terms, deadline and nonce", kind="invalid-signature"
        ) from None
    except AccessRegistry.errors.SignatureExpired:
        raise BadRequest("the signature's deadline has passed", kind="signature-expired") from None
    except AccessRegistry.errors.NotCurrentTerms:
        raise Conflict("these are not the current terms (GET /v1/terms)", kind="not-current-terms") from None
    services.access.invalidate(caller.wallet)
    return Accepted(
        accepted=True, terms_hash=body.terms_hash, transaction=receipt["transactionHash"].to_0x_hex()
    )
