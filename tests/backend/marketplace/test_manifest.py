"""The project manifest as everyone reads it back: a manifest that is tampered with, of another schema, or whose
model, data schema, task or recipe cannot run is refused in one line when it is loaded, before any training,
aggregation or verification; a validation set that does not fit its schema likewise; and `model install` refuses
a project without a plugin, without a stored wheel, or with a wheel that is not the pinned version."""

from __future__ import annotations

import json

import pytest
import torch

from aggregator.dataset_io import DatasetError, encode_examples
from aggregator.errors import AggregatorError
from aggregator.examples import Examples
from backend.marketplace.errors import MarketplaceError
from backend.marketplace.manifest import WheelRef
from backend.marketplace.models import install_plugin_wheel
from backend.marketplace.publish import load_manifest, load_validation, publish_project, put_ref
from backend.storage import IntegrityError, LocalStore


def blobs(n=40, features=4, classes=3):
    g = torch.Generator().manual_seed(0)
    y = torch.arange(n) % classes
    return Examples(y, features=3 * torch.eye(classes, features)[y] + torch.randn(n, features, generator=g))


@pytest.fixture
def store(tmp_path):
    return LocalStore(tmp_path / "store")


@pytest.fixture
def published(store):
    return publish_project(store, model="builtin:mlp", validation=blobs(), rounds=1, rule="fedavg")


def edited(store, published, edit):
    """The project's manifest with `edit` applied to its JSON, stored, and its reference."""
    body = json.loads(published.manifest_body.to_bytes())
    edit(body)
    return put_ref(store, json.dumps(body).encode())


def test_a_published_manifest_loads_back_the_same(store, published):
    manifest = load_manifest(store, published.manifest)
    assert manifest == published.manifest_body and manifest.model.uri == "builtin:mlp"
    assert manifest.to_bytes() == store.get(published.manifest.cid)
    # One round: its sealed shard holds every validation example (in the shard's seeded order).
    shard = put_ref(store, published.validation.shards[0])
    assert sorted(load_validation(store, manifest, shard).targets.tolist()) == sorted(
        blobs().targets.tolist()
    )


def _set(path, value):
    def edit(body):
        *parents, last = path.split(".")
        for key in parents:
            body = body[key]
        body[last] = value

    return edit


@pytest.mark.parametrize(
    ("edit", "error", "message"),
    [
        (_set("schema", "trustmarket.project/1"), AggregatorError, "invalid project manifest: schema"),
        (_set("task", "segmentation"), AggregatorError, "unknown task 'segmentation'"),
        (_set("task", "regression"), AggregatorError, "the data schema is for task 'classification'"),
        (_set("model.source", "onnx"), AggregatorError, "invalid project manifest: model.source"),
        (
            _set("model.source", "plugin"),
            AggregatorError,
            "a plugin model needs its distribution and version",
        ),
        (_set("model.frozen_sha256", "not-a-hash"), AggregatorError, "model.frozen_sha256"),
        (_set("model.lora", {"rank": 4}), AggregatorError, "LoRA applies to hf models only"),
        (_set("rule_params", "f=1"), AggregatorError, "invalid project manifest: rule_params"),
        (_set("surprise", 1), AggregatorError, "invalid project manifest: surprise"),
        (_set("data.feature_shape", None), DatasetError, "tensor data needs a feature shape"),
        (_set("data.colour", "red"), DatasetError, "data schema: unknown field(s) ['colour']"),
        (_set("data.preprocessing", [{"op": "whiten"}]), DatasetError, "unknown preprocessing step"),
        (_set("data.labels", [0, 0, 1]), DatasetError, "distinct class labels"),
        (_set("recipe.optimizer", "lion"), AggregatorError, "optimizer must be one of"),
        (_set("recipe.warmup", 10), AggregatorError, "unknown recipe setting(s) ['warmup']"),
    ],
)
def test_a_manifest_that_cannot_run_is_refused_when_loaded(store, published, edit, error, message):
    ref = edited(store, published, edit)
    with pytest.raises(error) as raised:
        load_manifest(store, ref)
    assert message in str(raised.value) and "\n" not in str(raised.value)


def test_manifest_bytes_are_checked_before_they_are_read(store, published):
    with pytest.raises(IntegrityError):
        load_manifest(store, published.manifest.model_copy(update={"sha256": "0" * 64}))
    with pytest.raises(AggregatorError, match="invalid project manifest"):
        load_manifest(store, put_ref(store, b"\x00not json"))


@pytest.mark.parametrize(
    ("examples", "message"),
    [
        (blobs(features=5), "features [5], expected [4]"),
        (blobs(classes=4), "class indices must be in [0, 3)"),
        (Examples(torch.zeros(3), features=torch.zeros(3, 4)), "class indices must be in [0, 3)"),
        (Examples(torch.tensor([0, 1]), texts=("a", "b")), "holds text data, the project's is tensor"),
    ],
)
def test_a_stored_validation_set_that_does_not_fit_its_schema_is_refused(store, published, examples, message):
    ref = put_ref(store, encode_examples(examples))
    with pytest.raises(DatasetError) as raised:
        load_validation(store, published.manifest_body, ref)
    assert message in str(raised.value)


def test_model_install_refuses_what_it_cannot_install_exactly(store, published, tmp_path):
    with pytest.raises(
        MarketplaceError, match="the project's model is builtin:mlp: there is no plugin to install"
    ):
        install_plugin_wheel(store, published.manifest_body, tmp_path / "site")
    entry = published.manifest_body.model.model_copy(
        update={
            "source": "plugin",
            "name": "tabular_mlp",
            "distribution": "tm-test-models",
            "version": "0.1.0",
        }
    )
    pinned = published.manifest_body.model_copy(update={"model": entry})
    with pytest.raises(MarketplaceError, match=r"pins tm-test-models==0\.1\.0 but stored no wheel"):
        install_plugin_wheel(store, pinned, tmp_path / "site")

    import zipfile

    wheel = tmp_path / "tm_test_models-0.2.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("tm_test_models-0.2.0.dist-info/METADATA", "Name: tm-test-models\nVersion: 0.2.0\n")
    ref = put_ref(store, wheel.read_bytes())
    other = WheelRef(cid=ref.cid, sha256=ref.sha256, filename=wheel.name)
    with pytest.raises(MarketplaceError, match=r"the stored wheel is not tm-test-models==0\.1\.0"):
        install_plugin_wheel(
            store, pinned.model_copy(update={"model": entry.model_copy(update={"wheel": other})})
        )
    lying = WheelRef(cid=ref.cid, sha256="0" * 64, filename=wheel.name)
    with pytest.raises(IntegrityError):
        install_plugin_wheel(
            store, pinned.model_copy(update={"model": entry.model_copy(update={"wheel": lying})})
        )
    assert not (tmp_path / "site").exists()  # nothing was installed
