"""Structured access to trained models: `POST /v1/projects/{id}/predict` runs the project's current global model
on the caller's inputs and returns predictions. Rows per call are capped by tier (413 above); no route returns
weights."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from backend.api.core.access import Caller
from backend.api.core.errors import PayloadTooLarge, Unprocessable, problem_responses
from backend.api.deps import GatedRoute, ServicesDep, caller_refund, require_scope
from backend.api.inference import LoadedModel, current_model_ref
from backend.api.routes.projects import ProjectId, market_project
from backend.api.services import ApiServices

__all__ = ["PredictIn", "Prediction", "router", "run_prediction"]

router = APIRouter(
    route_class=GatedRoute,
    prefix="/v1/projects",
    tags=["models"],
    responses=problem_responses(401, 403, 429, 503),
)

Finite = Annotated[float, Field(allow_inf_nan=False)]
# Rows are capped by tier below; this only bounds what the parser accepts at all.
Row = Annotated[list[Finite], Field(min_length=1, max_length=4096)]


class PredictIn(BaseModel):
    inputs: list[Row] = Field(min_length=1, max_length=100_000, description="One feature row per example.")


class Prediction(BaseModel):
    project_id: int
    model: str
    model_round: int | None = Field(description="The round that produced the model; null: the initial model.")
    model_cid: str
    predictions: list[int] = Field(description="The predicted class index of each row.")
    labels: list[int | str] = Field(
        description="The project's label of each prediction (classes[prediction])."
    )
    classes: list[int | str] = Field(description="The project's class labels: the columns of probabilities.")
    probabilities: list[list[float]]


@router.post("/{project_id}/predict", responses=problem_responses(404, 413, 422, 502))
async def predict(
    project_id: ProjectId,
    body: PredictIn,
    caller: Annotated[Caller, require_scope("models:predict", cost="predict")],
    services: ServicesDep,
) -> Prediction:
    """Run the project's current global model on `inputs` (rows of features); answers classes and probabilities."""
    async with services.bulkheads["predict"].slot(on_refused=caller_refund(services, caller)):
        return await run_prediction(
            services, project_id, body, max_rows=caller.policy.max_predict_rows, tier=caller.policy.name
        )


async def run_prediction(
    services: ApiServices, project_id: int, body: PredictIn, *, max_rows: int, tier: str
) -> Prediction:
    """The route's work once the caller is admitted (the benchmark's ungated twin calls it too)."""
    if len(body.inputs) > max_rows:
        raise PayloadTooLarge(f"tier {tier!r} predicts at most {max_rows} rows per call")
    loaded = await run_in_threadpool(_current_model, services, project_id)
    if loaded.unsupported is not None:
        raise Unprocessable(loaded.unsupported, kind="model-kind")
    width = loaded.input_width
    bad = next((i for i, row in enumerate(body.inputs) if width is not None and len(row) != width), None)
    if bad is not None:
        raise Unprocessable(
            f"row {bad} has {len(body.inputs[bad])} features; model {loaded.name!r} takes {width}",
            kind="input-shape",
        )
    # The forward pass is CPU work: on the bounded prediction pool, never on the event loop.
    loop = asyncio.get_running_loop()
    predictions, probabilities = await loop.run_in_executor(
        services.predict_pool, loaded.predict, body.inputs
    )
    return Prediction(
        project_id=project_id,
        model=loaded.name,
        model_round=loaded.round,
        model_cid=loaded.ref.cid,
        predictions=predictions,
        labels=[loaded.classes[i] for i in predictions],
        classes=loaded.classes,
        probabilities=probabilities,
    )


def _current_model(services: ApiServices, project_id: int) -> LoadedModel:
    def resolve():
        market = services.market.get()
        info = market_project(market, project_id)
        return (info, *current_model_ref(market, info))

    # Which model is current changes only when a round is finalized: read it from chain at most once per cache
    # TTL, as tiers are (a finalized round's model is served within that TTL).
    info, round_, ref = services.memo(f"model-ref:{project_id}", resolve)
    return services.models.get().load(services.store.get(), info, round_, ref)
