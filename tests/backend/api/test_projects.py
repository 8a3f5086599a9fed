"""Projects, rounds and predictions over the API, against a real marketplace round: a project created on chain
with its model and manifest in the store, three trainers submitting updates, the round runner finalizing."""

from __future__ import annotations

import math

import pytest
import torch
from api_helpers import create_market_project

from backend.chain.training_market import TrainingMarket
from backend.marketplace.publish import publish_project
from backend.marketplace.trainer import current_model, encode_update, train_update

pytestmark = pytest.mark.chain

ETH = 10**18


@pytest.fixture
def market_project(api, chain_client, dev_accounts):
    """Project 1 (digits_linear, 2 rounds) with round 0 open; returns (market, store, project id, trainers)."""
    from aggregator.data import load_digits_data

    market = TrainingMarket(chain_client)
    store = api.services.store.get()
    data = load_digits_data(0)
    published = publish_project(
        store,
        model="digits_linear",
        validation=(data.validation.X, data.validation.y),
        rounds=2,
        rule="fedavg",
    )
    owner, aggregator, arbiter = dev_accounts[10], dev_accounts[11], dev_accounts[12]
    project_id = market.create_project(
        owner,
        published.project_params(
            rounds=2,
            round_duration=3600,
            reveal_window=600,
            aggregation_window=3600,
            min_stake=ETH // 100,
            max_trainers=3,
            aggregator=aggregator.address,
            arbiter=arbiter.address,
            challenge_window=0,
            challenge_bond=0,
        ),
        value=ETH,
    )
    trainers = dev_accounts[13:16]
    for trainer in trainers:
        market.register(trainer, project_id, ETH // 100)
    return market, store, project_id, trainers, aggregator, owner, published


def _finalize_round_zero(market, store, project_id, trainers, aggregator, owner, published, homes):
    from aggregator.data import load_digits_data
    from backend.marketplace.local import play_sealed_round
    from backend.marketplace.runner import RoundRunner

    model = current_model(market, store, project_id)
    train = load_digits_data(0).train
    updates = {}
    for i, trainer in enumerate(trainers):
        # Each trainer trains on its own third of the data: honest updates that pass outlier detection.
        X, y = train.X[i :: len(trainers)], train.y[i :: len(trainers)]
        delta = train_update(model, (X, y), overrides={"epochs": 2, "seed": i})
        updates[trainer] = encode_update(model, delta, trainer.address)
    published.validation.save(homes / "owner")
    play_sealed_round(
        market,
        store,
        model,
        updates,
        homes={t.address: homes / t.address for t in trainers},
        owner=owner,
        owner_home=homes / "owner",
    )
    return RoundRunner(market, store, aggregator).finalize(project_id, 0)


def _digits_rows(n: int) -> list[list[float]]:
    from aggregator.data import load_digits_data

    return load_digits_data(0).test.X[:n].tolist()


def test_project_and_open_round(api, market_project):
    market, _, project_id, *_ = market_project
    _, headers = api.member("viewer", tier=1)
    listed = api.client.get("/v1/projects", headers=headers).json()
    assert [p["id"] for p in listed] == [project_id]
    view = api.client.get(f"/v1/projects/{project_id}", headers=headers).json()
    assert (view["status"], view["rounds"], view["current_round"], view["trainer_count"]) == (
        "active",
        2,
        0,
        3,
    )
    assert view["model_round"] is None
    assert view["model"]["cid"] == market.project(project_id).initial_model_cid
    round_zero = api.client.get(f"/v1/projects/{project_id}/rounds/0", headers=headers).json()
    assert (round_zero["status"], round_zero["submissions"], round_zero["scores"]) == ("open", 0, None)
    pending = api.client.get(f"/v1/projects/{project_id}/rounds/1", headers=headers).json()
    assert pending["status"] == "pending"
    no_report = api.client.get(f"/v1/projects/{project_id}/rounds/0/report", headers=headers)
    assert no_report.status_code == 404
    assert no_report.json()["type"] == "/problems/no-report"


def test_unknown_project_and_round_are_404(api, market_project):
    _, _, project_id, *_ = market_project
    _, headers = api.member("lost", tier=1)
    missing = api.client.get("/v1/projects/999", headers=headers)
    assert missing.status_code == 404
    assert missing.json()["type"] == "/problems/unknown-project"
    assert api.client.get(f"/v1/projects/{project_id}/rounds/7", headers=headers).status_code == 404
    assert (
        api.client.post("/v1/projects/999/predict", headers=headers, json={"inputs": [[0.0]]}).status_code
        == 404
    )


@pytest.mark.slow
def test_finalized_round_shows_scores_and_predictions_follow_the_new_model(api, market_project, tmp_path):
    market, store, project_id, trainers, aggregator, owner, published = market_project
    _, headers = api.member("predictor", tier=1)
    rows = _digits_rows(3)
    before = api.client.post(f"/v1/projects/{project_id}/predict", headers=headers, json={"inputs": rows})
    assert before.status_code == 200, before.text
    assert before.json()["model_round"] is None
    done = _finalize_round_zero(
        market, store, project_id, trainers, aggregator, owner, published, tmp_path / "homes"
    )

    view = api.client.get(f"/v1/projects/{project_id}/rounds/0", headers=headers).json()
    assert view["status"] == "finalized"
    assert view["submissions"] == 3
    assert view["model"]["cid"] == done.model.cid
    assert set(view["scores"]) == {t.address for t in trainers}
    assert view["flagged"] == []
    # Honest trainers on equal shares of the data score about alike, and the scores are normalized.
    assert math.isclose(sum(view["scores"].values()), 1.0, rel_tol=1e-6)
    assert all(0.2 < score < 0.5 for score in view["scores"].values())
    report = api.client.get(f"/v1/projects/{project_id}/rounds/0/report", headers=headers).json()
    assert report["round"] == 0
    assert report["model"] == "builtin:digits_linear"

    url = f"/v1/projects/{project_id}/predict"
    # Which model is current is read from chain at most once per cache TTL, like tiers.
    stale = api.client.post(url, headers=headers, json={"inputs": rows}).json()
    assert stale["model_round"] is None
    api.clock.advance(api.services.api.tier_cache_ttl_s + 1)
    after = api.client.post(url, headers=headers, json={"inputs": rows}).json()
    assert after["model_round"] == 0
    assert after["model_cid"] == done.model.cid
    assert len(after["predictions"]) == 3
    assert after["labels"] == after["predictions"] and after["classes"] == list(range(10))  # digits: by index
    for probabilities in after["probabilities"]:
        assert len(probabilities) == 10
        assert math.isclose(sum(probabilities), 1.0, rel_tol=1e-9)
    # The same answer a local run of the verified model gives.
    state = done.outcome.global_state
    logits = torch.tensor(rows, dtype=torch.float32) @ state["0.weight"].T + state["0.bias"]
    assert after["predictions"] == logits.argmax(dim=1).tolist()


def test_predict_input_failures(api, market_project):
    _, _, project_id, *_ = market_project
    _, headers = api.member("careless", tier=1)
    url = f"/v1/projects/{project_id}/predict"
    cap = api.services.api.tiers[1].max_predict_rows
    too_many = api.client.post(url, headers=headers, json={"inputs": _digits_rows(cap + 1)})
    assert too_many.status_code == 413
    assert too_many.json()["type"] == "/problems/payload-too-large"
    narrow = api.client.post(url, headers=headers, json={"inputs": [[0.0, 1.0]]})
    assert narrow.status_code == 422
    assert narrow.json()["type"] == "/problems/input-shape"
    nan = api.client.post(
        url, headers={**headers, "Content-Type": "application/json"}, content=b'{"inputs": [[NaN, 1.0]]}'
    )
    assert nan.status_code == 422
    assert nan.json()["type"] == "/problems/validation-error"
    empty = api.client.post(url, headers=headers, json={"inputs": []})
    assert empty.status_code == 422


def test_predict_needs_the_scope_and_the_terms(api, market_project):
    _, _, project_id, *_ = market_project
    _, nobody = api.member("no-tier", tier=0, terms=False)
    reply = api.client.post(
        f"/v1/projects/{project_id}/predict", headers=nobody, json={"inputs": [[0.0] * 64]}
    )
    assert reply.status_code == 403
    _, unsigned = api.member("no-terms-predict", tier=1, terms=False)
    api.publish_terms()
    reply = api.client.post(
        f"/v1/projects/{project_id}/predict", headers=unsigned, json={"inputs": [[0.0] * 64]}
    )
    assert reply.status_code == 403
    assert reply.json()["type"] == "/problems/terms-not-accepted"


def test_no_route_hands_out_weights(api):
    document = api.client.get("/openapi.json").json()
    for path, operations in document["paths"].items():
        assert "weight" not in path and "download" not in path
        for operation in operations.values():
            for response in operation.get("responses", {}).values():
                for media in response.get("content", {}):
                    assert (
                        media in ("application/json", "application/problem+json") or "text/plain" in media
                    ), (
                        path,
                        media,
                    )


def test_upload_checked_against_the_project_model(api, market_project):
    from backend.storage.codec import encode_state

    _, _, project_id, *_ = market_project
    _, headers = api.member("spec-uploader", tier=2)
    good = encode_state({"0.weight": torch.zeros(10, 64), "0.bias": torch.zeros(10)}, {})
    reply = api.client.post("/v1/uploads", headers=headers, params={"project_id": project_id}, content=good)
    assert reply.status_code == 201, reply.text
    wrong = encode_state({"0.weight": torch.zeros(10, 63), "0.bias": torch.zeros(10)}, {})
    reply = api.client.post("/v1/uploads", headers=headers, params={"project_id": project_id}, content=wrong)
    assert reply.status_code == 422
    assert "0.weight" in reply.json()["detail"]
    # Without a project, only the format is checked.
    assert api.client.post("/v1/uploads", headers=headers, content=wrong).status_code == 201
    unknown = api.client.post("/v1/uploads", headers=headers, params={"project_id": 999}, content=good)
    assert unknown.status_code == 404


def _project(market, store, dev_accounts, table, task, preprocessing=()):
    """A schema 2 project published from a data `table` (its labels as found, its preprocessing)."""
    from aggregator.schema import infer_schema

    schema = infer_schema(table, task, preprocessing=preprocessing)
    return create_market_project(
        market, store, dev_accounts, model="builtin:linear", task=task, schema=schema,
        validation=schema.examples(table),
    )  # fmt: skip


def test_predictions_name_the_projects_labels_after_its_preprocessing(api, chain_client, dev_accounts):
    import numpy as np

    from aggregator.dataset_io import Table
    from aggregator.schema import DataSchema
    from backend.marketplace.manifest import ContentRef
    from backend.marketplace.publish import load_model

    market, store = TrainingMarket(chain_client), api.services.store.get()
    rng = np.random.default_rng(0)
    X = rng.normal(loc=50.0, scale=10.0, size=(30, 3))
    labels = np.array(["benign", "malignant"], dtype=object)[(X[:, 0] > 50).astype(int)]
    table = Table(labels, features=X, feature_names=("a", "b", "c"))
    project_id, manifest = _project(
        market, store, dev_accounts, table, "classification", [{"op": "standardize"}]
    )
    _, headers = api.member("clinician", tier=1)
    rows = X[:4].tolist()
    reply = api.client.post(f"/v1/projects/{project_id}/predict", headers=headers, json={"inputs": rows})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["classes"] == ["benign", "malignant"] and body["task"] == "classification"
    assert body["labels"] == [body["classes"][i] for i in body["predictions"]]
    # The initial model's own answer on the rows as the trainers' data was prepared (standardized).
    schema = DataSchema.from_dict(manifest.data)
    prepared = schema.prepare(
        schema.examples(Table(labels[:4], features=X[:4], feature_names=("a", "b", "c")))
    )
    info = market.project(project_id)
    weights = load_model(
        store, ContentRef(cid=info.initial_model_cid, sha256=info.initial_model_sha256), manifest
    )
    logits = prepared.features @ weights["1.weight"].T + weights["1.bias"]  # Flatten, then Linear
    assert body["predictions"] == logits.argmax(dim=1).tolist()
