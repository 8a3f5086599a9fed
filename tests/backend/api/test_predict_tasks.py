"""`predict` for every task a project can have, and the project view's manifest summary, against real projects
on chain with their manifests in the store: a text classifier (a tiny BERT as an hf: source, FFA-LoRA, its own
tokenizer), a regression model of standardized feature rows, and the inputs each refuses in one line."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from api_helpers import create_market_project
from tiny_text import write_tiny_bert

from aggregator.dataset_io import Table
from aggregator.examples import Examples
from aggregator.models import ModelContext, ModelSource, build, parse_lora
from aggregator.schema import DataSchema, infer_schema
from backend.api.services import Missing
from backend.chain.training_market import TrainingMarket
from backend.marketplace.manifest import ContentRef
from backend.marketplace.publish import load_model
from backend.storage import GatewayStore

pytestmark = pytest.mark.chain

WORDS = ["normans", "rollo", "france", "turing", "machine", "complexity", "los", "angeles", "california"]
TEXTS = [
    "rollo normans",
    "normans in france",
    "turing machine",
    "machine complexity",
    "los angeles",
    "california",
]
ARTICLES = ("history", "computing", "places")
LORA = "rank=2,ffa"


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    folder = tmp_path_factory.mktemp("text") / "tiny-bert"
    folder.mkdir()
    return write_tiny_bert(folder, WORDS)


@pytest.fixture
def market(chain_client):
    return TrainingMarket(chain_client)


def _text_project(api, market, dev_accounts, tiny_bert):
    schema = DataSchema(task="text-classification", kind="text", labels=ARTICLES, text_field="question")
    validation = Examples(torch.tensor([0, 0, 1, 1, 2, 2]), texts=tuple(TEXTS))
    return create_market_project(
        market, api.services.store.get(), dev_accounts, model=f"hf:{tiny_bert}", task="text-classification",
        schema=schema, validation=validation, lora=parse_lora(LORA),
    )  # fmt: skip


def _regression_project(api, market, dev_accounts, seed=1, on_chain=None):
    rng = np.random.default_rng(seed)
    X = rng.normal(loc=50.0, scale=10.0, size=(30, 3))
    table = Table(X @ np.array([0.5, -1.0, 2.0]), features=X, feature_names=("age", "bmi", "bp"))
    schema = infer_schema(
        table, "regression", label_range=(-500.0, 500.0), preprocessing=[{"op": "standardize"}]
    )
    project_id, manifest = create_market_project(
        market, api.services.store.get(), dev_accounts, model="builtin:linear", task="regression", schema=schema,
        validation=schema.examples(table), on_chain=on_chain,
    )  # fmt: skip
    return project_id, manifest, X


def _initial_weights(api, market, project_id, manifest):
    info = market.project(project_id)
    ref = ContentRef(cid=info.initial_model_cid, sha256=info.initial_model_sha256)
    return load_model(api.services.store.get(), ref, manifest)


@pytest.mark.slow
def test_a_text_classifier_reads_texts_with_the_projects_tokenizer(api, market, dev_accounts, tiny_bert):
    project_id, manifest = _text_project(api, market, dev_accounts, tiny_bert)
    _, headers = api.member("reader", tier=1)
    texts = ["who was rollo", "turing machine complexity", "los angeles california"]
    reply = api.client.post(f"/v1/projects/{project_id}/predict", headers=headers, json={"texts": texts})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert (body["task"], body["model"], body["classes"]) == (
        "text-classification",
        "hf:tiny-bert",
        list(ARTICLES),
    )
    assert body["labels"] == [ARTICLES[i] for i in body["predictions"]]
    assert all(math.isclose(sum(p), 1.0, rel_tol=1e-9) and len(p) == 3 for p in body["probabilities"])
    # A local run of the pinned folder with the stored weights: the same tokenizer, the same outputs.
    local = build(
        ModelSource("hf", "tiny-bert", tiny_bert, lora=parse_lora(LORA)),
        ModelContext("text-classification", 3),
    )
    local.load_state(_initial_weights(api, market, project_id, manifest))
    local.module.eval()
    with torch.no_grad():
        encoded = local.encode(Examples(torch.zeros(3, dtype=torch.int64), texts=tuple(texts)))
        outputs = local.outputs(local.batch(encoded, slice(None))).double()
    assert body["predictions"] == outputs.argmax(dim=1).tolist()
    assert np.allclose(body["probabilities"], torch.softmax(outputs, dim=1).numpy(), atol=1e-6)

    url = f"/v1/projects/{project_id}/predict"
    rows = api.client.post(url, headers=headers, json={"inputs": [[1.0, 2.0]]})
    assert rows.status_code == 422 and rows.json()["type"] == "/problems/input-kind"
    assert "send `texts`" in rows.json()["detail"]
    cap = api.services.api.tiers[1].max_text_chars
    long = api.client.post(url, headers=headers, json={"texts": ["rollo", "x" * (cap + 1)]})
    assert long.status_code == 413 and "texts[1]" in long.json()["detail"]
    blank = api.client.post(url, headers=headers, json={"texts": ["rollo", "  "]})
    assert blank.status_code == 422 and blank.json()["type"] == "/problems/input-empty"
    many = api.client.post(
        url, headers=headers, json={"texts": ["rollo"] * (api.services.api.tiers[1].max_predict_rows + 1)}
    )
    assert many.status_code == 413
    none = api.client.post(url, headers=headers, json={"texts": []})
    assert none.status_code == 422 and none.json()["detail"].startswith("body.texts: ")
    for reply in (rows, long, blank, many, none):
        assert "\n" not in reply.json()["detail"]

    view = api.client.get(f"/v1/projects/{project_id}", headers=headers).json()["config"]
    assert view["available"] is True and view["cid"] == market.project(project_id).config_cid
    assert (view["model"], view["task"], view["metric"], view["lora"]) == (
        "hf:tiny-bert",
        "text-classification",
        "accuracy",
        True,
    )
    assert view["data"] == {
        "kind": "text", "feature_shape": None, "feature_names": None, "text_field": "question",
        "labels": list(ARTICLES), "label_range": None, "preprocessing": [],
    }  # fmt: skip


@pytest.mark.slow
def test_a_text_regression_answers_values_from_texts(api, market, dev_accounts, tiny_bert):
    schema = DataSchema(task="regression", kind="text", text_field="question")
    validation = Examples(torch.tensor([1.0, 1.5, 3.0, 3.5, 5.0, 5.5]), texts=tuple(TEXTS))
    project_id, manifest = create_market_project(
        market, api.services.store.get(), dev_accounts, model=f"hf:{tiny_bert}", task="regression",
        schema=schema, validation=validation, lora=parse_lora(LORA),
    )  # fmt: skip
    _, headers = api.member("scorer", tier=1)
    texts = ["who was rollo", "los angeles california"]
    reply = api.client.post(f"/v1/projects/{project_id}/predict", headers=headers, json={"texts": texts})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["task"] == "regression" and len(body["predictions"]) == 2
    local = build(
        ModelSource("hf", "tiny-bert", tiny_bert, lora=parse_lora(LORA)), ModelContext("regression", 1)
    )
    local.load_state(_initial_weights(api, market, project_id, manifest))
    local.module.eval()
    with torch.no_grad():
        encoded = local.encode(Examples(torch.zeros(2), texts=tuple(texts)))
        expected = local.outputs(local.batch(encoded, slice(None))).reshape(-1)
    assert np.allclose(body["predictions"], expected.numpy(), atol=1e-6)
    view = api.client.get(f"/v1/projects/{project_id}", headers=headers).json()["config"]
    assert (view["task"], view["metric"], view["data"]["kind"], view["data"]["labels"]) == (
        "regression",
        "r2",
        "text",
        None,
    )


def test_a_regression_model_answers_values_after_the_projects_preprocessing(api, market, dev_accounts):
    project_id, manifest, X = _regression_project(api, market, dev_accounts)
    _, headers = api.member("forecaster", tier=1)
    url = f"/v1/projects/{project_id}/predict"
    reply = api.client.post(url, headers=headers, json={"inputs": X[:3].tolist()})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["task"] == "regression" and "classes" not in body and "probabilities" not in body
    assert all(isinstance(v, float) for v in body["predictions"])
    schema = DataSchema.from_dict(manifest.data)
    prepared = schema.prepare(Examples(torch.zeros(3), features=torch.tensor(X[:3], dtype=torch.float32)))
    weights = _initial_weights(api, market, project_id, manifest)
    expected = (prepared.features @ weights["1.weight"].T + weights["1.bias"]).reshape(-1)  # Flatten, Linear
    assert np.allclose(body["predictions"], expected.numpy(), rtol=1e-5, atol=1e-5)

    # Each refusal is one line naming what is wrong.
    refusals = {
        "input-shape": {"inputs": [[1.0, 2.0, 3.0], [1.0, 2.0]]},
        "input-not-finite": {"inputs": [[1.0, 1e39, 3.0]]},
        "input-kind": {"texts": ["a question"]},
    }
    for kind, payload in refusals.items():
        refused = api.client.post(url, headers=headers, json=payload)
        assert (refused.status_code, refused.json()["type"]) == (422, f"/problems/{kind}"), refused.text
    assert (
        "inputs[1] has 2 features" in api.client.post(url, headers=headers, json=refusals["input-shape"]).text
    )
    both = api.client.post(url, headers=headers, json={"inputs": [[1.0, 2.0, 3.0]], "texts": ["a"]})
    neither = api.client.post(url, headers=headers, json={})
    assert both.json()["type"] == neither.json()["type"] == "/problems/input-kind"
    for token in (b"NaN", b"Infinity", b"-Infinity"):
        bad = api.client.post(
            url,
            headers={**headers, "Content-Type": "application/json"},
            content=b'{"inputs": [[1.0, %s, 3.0]]}' % token,
        )
        assert bad.status_code == 422 and bad.json()["type"] == "/problems/validation-error"
        assert bad.json()["detail"] == "body.inputs.0.1: Input should be a finite number"

    summary = api.client.get(f"/v1/projects/{project_id}", headers=headers).json()["config"]
    assert (summary["model"], summary["task"], summary["metric"], summary["lora"]) == (
        "builtin:linear",
        "regression",
        "r2",
        False,
    )
    assert summary["data"] == {
        "kind": "tensor", "feature_shape": [3], "feature_names": ["age", "bmi", "bp"], "text_field": None,
        "labels": None, "label_range": [-500.0, 500.0], "preprocessing": ["standardize"],
    }  # fmt: skip


def test_a_store_that_is_down_leaves_the_chains_figures_and_marks_the_manifest(api, market, dev_accounts):
    seen, _, _ = _regression_project(api, market, dev_accounts)
    unseen, _, _ = _regression_project(api, market, dev_accounts, seed=2)  # another manifest, another CID
    _, headers = api.member("watcher", tier=1)
    assert api.client.get(f"/v1/projects/{seen}", headers=headers).json()["config"]["available"] is True

    # A gateway nobody listens on: every read fails with StoreUnavailable.
    api.services.store.set(GatewayStore("http://127.0.0.1:9", timeout=2.0))
    listed = api.client.get("/v1/projects", headers=headers, params={"offset": seen - 1, "limit": 2})
    assert listed.status_code == 200, listed.text
    by_id = {p["id"]: p for p in listed.json()}
    assert by_id[seen]["config"]["available"] is True  # read before, by CID: manifests never change
    down = by_id[unseen]["config"]
    assert (down["available"], down["model"], down["data"]) == (False, None, None)
    assert "127.0.0.1:9" in down["detail"] and down["cid"] == market.project(unseen).config_cid
    assert by_id[unseen]["trainer_count"] == 0 and by_id[unseen]["rounds"] == 1

    api.services.store.set(Missing("store", "the Kubo node at 127.0.0.1:5001 is down"))
    missing = api.client.get(f"/v1/projects/{unseen}", headers=headers)
    assert missing.status_code == 200
    assert missing.json()["config"]["available"] is False and "5001" in missing.json()["config"]["detail"]


def test_a_manifest_that_fails_verification_is_marked_and_the_store_kept(api, market, dev_accounts):
    # The chain records another sha256 than the stored manifest's bytes hash to: never served as this project's.
    forged, _, _ = _regression_project(
        api, market, dev_accounts, seed=3, on_chain={"config_sha256": "ab" * 32}
    )
    honest, _, _ = _regression_project(api, market, dev_accounts, seed=4)
    _, headers = api.member("auditor", tier=1)
    listed = api.client.get("/v1/projects", headers=headers, params={"offset": forged - 1, "limit": 2})
    assert listed.status_code == 200, listed.text
    by_id = {p["id"]: p["config"] for p in listed.json()}
    assert by_id[forged]["available"] is False and "sha256" in by_id[forged]["detail"]
    assert by_id[honest]["available"] is True  # one bad manifest does not take the store down for the rest


def test_the_openapi_document_names_both_answers_and_both_inputs(api):
    document = api.client.get("/openapi.json").json()
    answer = document["paths"]["/v1/projects/{project_id}/predict"]["post"]["responses"]["200"]
    schema = answer["content"]["application/json"]["schema"]
    assert schema["discriminator"]["mapping"] == {
        "classification": "#/components/schemas/ClassPrediction",
        "text-classification": "#/components/schemas/ClassPrediction",
        "regression": "#/components/schemas/ValuePrediction",
    }
    assert set(document["components"]["schemas"]["PredictIn"]["properties"]) == {"inputs", "texts"}
    config = document["components"]["schemas"]["ProjectView"]["properties"]["config"]
    assert config["$ref"] == "#/components/schemas/ManifestView"
