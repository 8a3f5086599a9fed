"""Structured access to trained models: `POST /v1/projects/{id}/predict` runs the project's current global model
on the caller's inputs and returns predictions. Rows per call are capped by tier (413 above); no route returns
weights."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter
from pydantic import BaseModel, Field

from backend.api.core.access import Caller
from backend.api.core.errors import PayloadTooLarge, Unprocessable, problem_responses
from backend.api.deps import Services, require_scope
from backend.api.inference import ModelCache
from backend.api.routes.projects import ProjectId, market_project

__all__ = ["router"]

router = APIRouter(prefix="/v1/projects", tags=["models"], responses=problem_responses(401, 403, 429, 503))

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
    predictions: list[int]
    probabilities: list[list[float]]


@router.post("/{project_id}/predict", responses=problem_responses(404, 413, 422, 502))
def predict(
    project_id: ProjectId,
    body: PredictIn,
    caller: Annotated[Caller, require_scope("models:predict", cost="predict")],
    services: Services,
) -> Prediction:
    """Run the project's current global model on `inputs` (rows of features); answers classes and probabilities."""
    cap = caller.policy.max_predict_rows
    if len(body.inputs) > cap:
        raise PayloadTooLarge(f"tier {caller.policy.name!r} predicts at most {cap} rows per call")
    market, _ = market_project(services, project_id)
    models: ModelCache = services.require("models")
    loaded = models.current(market, services.require("store"), project_id)
    width = loaded.input_width
    bad = next((i for i, row in enumerate(body.inputs) if width is not None and len(row) != width), None)
    if bad is not None:
        raise Unprocessable(
            f"row {bad} has {len(body.inputs[bad])} features; model {loaded.name!r} takes {width}",
            kind="input-shape",
        )
    predictions, probabilities = loaded.predict(body.inputs)
    return Prediction(
        project_id=project_id,
        model=loaded.name,
        model_round=loaded.round,
        model_cid=loaded.ref.cid,
        predictions=predictions,
        probabilities=probabilities,
    )
