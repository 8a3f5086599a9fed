"""Structured access to trained models: `POST /v1/projects/{id}/predict` runs the project's current global model
on the caller's inputs (rows of features, or texts) and returns class predictions or values, whatever the
project's task. Inputs per call and characters per text are capped by tier (413 above); every input is checked
against the project's data schema (one-line 422 problems); no route returns weights."""

from __future__ import annotations

import asyncio
from typing import Annotated, Literal

import torch
from fastapi import APIRouter
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from aggregator.examples import Examples
from backend.api.core.access import Caller
from backend.api.core.errors import PayloadTooLarge, Unprocessable, problem_responses
from backend.api.deps import GatedRoute, ServicesDep, caller_refund, require_scope
from backend.api.inference import LoadedModel, current_model_ref
from backend.api.routes.projects import ProjectId, market_project
from backend.api.services import ApiServices

__all__ = ["ClassPrediction", "PredictIn", "Prediction", "ValuePrediction", "router", "run_prediction"]

router = APIRouter(
    route_class=GatedRoute,
    prefix="/v1/projects",
    tags=["models"],
    responses=problem_responses(401, 403, 429, 503),
)

Finite = Annotated[float, Field(allow_inf_nan=False)]
# Rows and text lengths are capped by tier below; these only bound what the parser accepts at all.
Row = Annotated[list[Finite], Field(min_length=1, max_length=4096)]
Text = Annotated[str, Field(max_length=2**20)]


class PredictIn(BaseModel):
    inputs: list[Row] | None = Field(
        default=None,
        min_length=1,
        max_length=100_000,
        description="One feature row per example (a project of feature tensors), in the order of the project's "
        "`feature_names` (GET /v1/projects/{id}: `config.data`).",
    )
    texts: list[Text] | None = Field(
        default=None,
        min_length=1,
        max_length=100_000,
        description="One text per example (a project of texts); the project's tokenizer reads them.",
    )


class _Answered(BaseModel):
    project_id: int
    model: str = Field(description="The model's source and name, e.g. builtin:digits_mlp or hf:minilm.")
    model_round: int | None = Field(description="The round that produced the model; null: the initial model.")
    model_cid: str


class ClassPrediction(_Answered):
    task: Literal["classification", "text-classification"]
    predictions: list[int] = Field(description="The predicted class index of each input.")
    labels: list[int | str] = Field(
        description="The project's label of each prediction (classes[prediction])."
    )
    classes: list[int | str] = Field(description="The project's class labels: the columns of probabilities.")
    probabilities: list[list[float]]


class ValuePrediction(_Answered):
    task: Literal["regression"]
    predictions: list[float] = Field(description="The predicted value of each input, in the targets' units.")


Prediction = Annotated[ClassPrediction | ValuePrediction, Field(discriminator="task")]


@router.post("/{project_id}/predict", responses=problem_responses(404, 413, 422, 502))
async def predict(
    project_id: ProjectId,
    body: PredictIn,
    caller: Annotated[Caller, require_scope("models:predict", cost="predict")],
    services: ServicesDep,
) -> Prediction:
    """Run the project's current global model on `inputs` (rows of features) or `texts`: a classifier answers
    classes and probabilities, a regression model values."""
    policy = caller.policy
    async with services.bulkheads["predict"].slot(on_refused=caller_refund(services, caller)):
        return await run_prediction(
            services, project_id, body, max_rows=policy.max_predict_rows, max_chars=policy.max_text_chars,
            tier=policy.name,
        )  # fmt: skip


async def run_prediction(
    services: ApiServices, project_id: int, body: PredictIn, *, max_rows: int, max_chars: int, tier: str
) -> ClassPrediction | ValuePrediction:
    """The route's work once the caller is admitted (the benchmark's ungated twin calls it too)."""
    given = body.texts if body.texts is not None else body.inputs
    if given is None or (body.texts is not None and body.inputs is not None):
        raise Unprocessable(
            "give either `inputs` (rows of features) or `texts`, one of them", kind="input-kind"
        )
    if len(given) > max_rows:
        raise PayloadTooLarge(f"tier {tier!r} predicts at most {max_rows} inputs per call")
    if body.texts is not None:
        _check_texts(body.texts, max_chars, tier)
    loaded = await run_in_threadpool(_current_model, services, project_id)
    # Building the input tensor and the forward pass are CPU work: on the bounded prediction pool, never on the
    # event loop.
    loop = asyncio.get_running_loop()
    examples = await loop.run_in_executor(services.predict_pool, _examples, loaded, body)
    answered = {
        "project_id": project_id,
        "model": loaded.name,
        "model_round": loaded.round,
        "model_cid": loaded.ref.cid,
        "task": loaded.task.name,
    }
    if not loaded.task.classifies:
        values = await loop.run_in_executor(services.predict_pool, loaded.regress, examples)
        return ValuePrediction.model_validate({**answered, "predictions": values})
    predictions, probabilities = await loop.run_in_executor(services.predict_pool, loaded.classify, examples)
    return ClassPrediction.model_validate(
        {
            **answered,
            "predictions": predictions,
            "labels": [loaded.classes[i] for i in predictions],
            "classes": loaded.classes,
            "probabilities": probabilities,
        }
    )


def _check_texts(texts: list[str], max_chars: int, tier: str) -> None:
    long = next((i for i, text in enumerate(texts) if len(text) > max_chars), None)
    if long is not None:
        raise PayloadTooLarge(
            f"texts[{long}] has {len(texts[long])} characters; tier {tier!r} predicts on at most {max_chars}"
        )
    blank = next((i for i, text in enumerate(texts) if not text.strip()), None)
    if blank is not None:
        raise Unprocessable(f"texts[{blank}] is empty", kind="input-empty")


def _examples(loaded: LoadedModel, body: PredictIn) -> Examples:
    """The inputs checked against the project's data schema: their kind, each row's width, float32 range."""
    where = f"model {loaded.name!r} ({loaded.task.name})"
    if loaded.input_kind == "text":
        if body.texts is None:
            raise Unprocessable(f"{where} reads text: send `texts`, not `inputs`", kind="input-kind")
        return loaded.examples(texts=body.texts)
    if body.inputs is None:
        raise Unprocessable(f"{where} reads rows of features: send `inputs`, not `texts`", kind="input-kind")
    width = loaded.input_width
    bad = next((i for i, row in enumerate(body.inputs) if len(row) != width), None)
    if bad is not None:
        raise Unprocessable(
            f"inputs[{bad}] has {len(body.inputs[bad])} features; {where} takes {width}", kind="input-shape"
        )
    examples = loaded.examples(rows=body.inputs)
    assert examples.features is not None
    finite = torch.isfinite(examples.features.reshape(len(examples), -1))
    if not bool(finite.all()):
        row, column = (int(v) for v in (~finite).nonzero()[0])
        raise Unprocessable(
            f"inputs[{row}][{column}] = {body.inputs[row][column]:g} is beyond float32's range",
            kind="input-not-finite",
        )
    return examples


def _current_model(services: ApiServices, project_id: int) -> LoadedModel:
    def resolve():
        market = services.market.get()
        info = market_project(market, project_id)
        return (info, *current_model_ref(market, info))

    # Which model is current changes only when a round is finalized: read it from chain at most once per cache
    # TTL, as tiers are (a finalized round's model is served within that TTL).
    info, round_, ref = services.memo(f"model-ref:{project_id}", resolve)
    return services.models.get().load(services.store.get(), info, round_, ref)
