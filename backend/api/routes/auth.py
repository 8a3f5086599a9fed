"""Sign-In with Ethereum: get a nonce, sign an EIP-4361 message with it, trade it for a session token; log out."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field

from backend.api.core.access import Caller
from backend.api.core.errors import problem_responses
from backend.api.deps import GatedRoute, ServicesDep, public, require_scope, set_audit

__all__ = ["router"]

router = APIRouter(
    route_class=GatedRoute, prefix="/v1/auth", tags=["auth"], responses=problem_responses(422, 429, 503)
)


class Challenge(BaseModel):
    nonce: str = Field(description="Put this in the SIWE message's `Nonce:` line; single use.")
    expires_at: float = Field(description="Unix time after which the nonce is void.")
    domain: str = Field(description="The SIWE message's domain must be this.")
    uri: str | None = Field(description="If set, the SIWE message's URI must be this.")
    chain_id: int = Field(description="The SIWE message's Chain ID must be this.")
    statement: str = Field(description="A suggested statement line.")


class Login(BaseModel):
    message: str = Field(min_length=1, max_length=4096, description="The EIP-4361 message, as signed.")
    signature: str = Field(pattern=r"^0x[0-9a-fA-F]{130}$", description="EIP-191 signature of the message.")


class Session(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_at: int
    expires_in: int
    address: str


@router.post("/nonce", dependencies=[Depends(public)])
def issue_nonce(services: ServicesDep) -> Challenge:
    """A fresh single-use nonce (valid for a few minutes) and what the SIWE message must name."""
    issued = services.siwe.issue_nonce(services.chain_id())
    return Challenge(
        nonce=issued.nonce,
        expires_at=issued.expires_at,
        domain=issued.domain,
        uri=issued.uri,
        chain_id=issued.chain_id,
        statement=issued.statement,
    )


@router.post("/login", dependencies=[Depends(public)], responses=problem_responses(400, 401))
def login(body: Login, request: Request, services: ServicesDep) -> Session:
    """Verify a signed SIWE message (domain, chain, validity, signature, unused nonce) and open a session."""
    set_audit(request, decision="login-denied")
    chain_id = services.chain_id()
    address = services.siwe.verify(body.message, body.signature, chain_id=chain_id)
    token, claims = services.tokens.issue(address, chain_id)
    set_audit(request, wallet=address, decision="login")
    return Session(
        access_token=token, expires_at=claims.expires_at, expires_in=services.tokens.ttl_s, address=address
    )


@router.post("/logout", status_code=204, responses=problem_responses(401, 403))
def logout(
    caller: Annotated[Caller, require_scope("auth:logout", cost="free")], services: ServicesDep
) -> Response:
    """Revoke this session's token now (it would otherwise live until it expires)."""
    services.revocations.revoke(caller.jti, caller.wallet, caller.token_expires_at)
    return Response(status_code=204)
