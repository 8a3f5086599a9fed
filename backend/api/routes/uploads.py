"""Trainers upload model updates (safetensors) to the content store and get back the CID and sha256 they then
submit on chain (themselves, or gasless through the relay route).

The bytes are refused unless they parse as safetensors with finite values (never unpickled), and the upload is
capped by the tier before it is read in full.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from backend.api.core.access import Caller
from backend.api.core.errors import BadRequest, PayloadTooLarge, problem_responses
from backend.api.deps import GatedRoute, ServicesDep, StoreDep, require_scope
from backend.api.routes.projects import market_project
from backend.storage import sha256_hex
from backend.storage.codec import decode_state

__all__ = ["router"]

router = APIRouter(
    route_class=GatedRoute,
    prefix="/v1/uploads",
    tags=["trainers"],
    responses=problem_responses(401, 403, 429, 503),
)


class Uploaded(BaseModel):
    cid: str
    sha256: str
    size: int
    tensors: int


@router.post(
    "",
    status_code=201,
    responses=problem_responses(400, 413, 422, 507),
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": "A safetensors file (the model update).",
            "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
        }
    },
)
async def upload_update(
    request: Request,
    caller: Annotated[Caller, require_scope("updates:upload", cost="upload")],
    services: ServicesDep,
    store: StoreDep,
    project_id: Annotated[
        int | None, Query(ge=1, lt=2**256, description="Check the update against this project's model spec.")
    ] = None,
) -> Uploaded:
    """Store a safetensors model update; returns its CID and sha256 (what `revealUpdate` takes, once the round's
    commits have closed: storing it earlier lets anyone who learns the CID copy it)."""
    cap = caller.policy.max_upload_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > cap:
        raise PayloadTooLarge(f"tier {caller.policy.name!r} uploads at most {cap} bytes; this is {declared}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > cap:
            raise PayloadTooLarge(f"tier {caller.policy.name!r} uploads at most {cap} bytes")
        chunks.append(chunk)
    data = b"".join(chunks)
    if not data:
        raise BadRequest("the body is empty; send the safetensors bytes", kind="empty-upload")

    def validate_and_store() -> Uploaded:
        spec = None
        if project_id is not None:
            info = market_project(services.market.get(), project_id)
            spec = services.models.get().manifest(store, info).tensor_spec()
        # CodecError (422) for anything but finite safetensors (with the project's tensors, if one is named).
        tensors, _ = decode_state(data, spec)
        return Uploaded(cid=store.put(data), sha256=sha256_hex(data), size=len(data), tensors=len(tensors))

    # Parsing and hashing megabytes is CPU work: keep it off the event loop.
    return await run_in_threadpool(validate_and_store)
