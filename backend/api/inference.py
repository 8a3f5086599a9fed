"""Models are queried, never handed out: the project's current global model, loaded (verified by its on-chain
sha256, checked against the manifest's spec, never unpickled) into memory and run on the caller's inputs.

The current model is the latest finalized round's that a challenge did not reverse, else the initial model.
Loaded models are kept per (project, CID), a handful at a time; a new round's model replaces the old one by CID.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from aggregator.examples import Examples
from aggregator.models import BuiltModel
from aggregator.schema import DataSchema
from backend.chain.training_market import ProjectInfo, TrainingMarket
from backend.marketplace.manifest import ContentRef, ProjectManifest
from backend.marketplace.models import build_project_model
from backend.marketplace.publish import load_manifest, load_model
from backend.marketplace.runner import default_cache_dir
from backend.storage import ContentStore

__all__ = ["LoadedModel", "ModelCache", "current_model_ref"]


@dataclass(frozen=True)
class LoadedModel:
    project_id: int
    round: int | None  # the round that produced it; None for the initial model
    ref: ContentRef
    name: str
    model: BuiltModel
    schema: DataSchema

    @property
    def module(self) -> nn.Module:
        return self.model.module

    @property
    def input_width(self) -> int | None:
        """Features per row (None for text models)."""
        return math.prod(self.schema.feature_shape) if self.schema.feature_shape is not None else None

    @property
    def unsupported(self) -> str | None:
        """Why rows of features cannot be served by this model, or None when they can."""
        if self.schema.kind != "tensor" or not self.schema.task_spec.classifies:
            return f"model {self.name!r} is a {self.schema.task} model: this route serves classifiers of feature rows"
        return None

    @property
    def classes(self) -> list[int | str]:
        """The project's class labels in output order: class `i` is `classes[i]` (names such as "malignant", or
        the integers of a data set labelled by index)."""
        return list(self.schema.labels or ())

    def predict(self, rows: Sequence[Sequence[float]]) -> tuple[list[int], list[list[float]]]:
        """Class predictions and probabilities (softmax of the outputs) for each row, after the project's
        preprocessing (the same the trainers' data went through)."""
        inputs = torch.tensor(rows, dtype=torch.float32).reshape(
            len(rows), *(self.schema.feature_shape or ())
        )
        prepared = self.schema.prepare(Examples(torch.zeros(len(rows), dtype=torch.int64), features=inputs))
        assert prepared.features is not None
        with torch.no_grad():
            outputs = self.model.outputs(((prepared.features,), {}))
        probabilities = torch.softmax(outputs.double(), dim=1)
        return outputs.argmax(dim=1).tolist(), probabilities.tolist()


def current_model_ref(market: TrainingMarket, info: ProjectInfo) -> tuple[int | None, ContentRef]:
    """The round whose model is current (None: the initial model) and that model's reference."""
    finished = min(info.current_round, info.rounds)
    if finished > 0:
        reversed_rounds = set(market.reversed_rounds(info.project_id))
        for round_ in range(finished - 1, -1, -1):
            if round_ in reversed_rounds:
                continue
            result = market.round(info.project_id, round_)
            if result.finalized_at and result.model_cid:
                return round_, ContentRef(cid=result.model_cid, sha256=result.model_sha256)
    return None, ContentRef(cid=info.initial_model_cid, sha256=info.initial_model_sha256)


class ModelCache:
    def __init__(self, max_models: int = 8, cache_dir: Path | None = None):
        self._max = max_models
        self._cache_dir = cache_dir
        self._models: OrderedDict[tuple[int, str], LoadedModel] = OrderedDict()
        self._manifests: dict[str, ProjectManifest] = {}
        self._lock = threading.Lock()

    def manifest(self, store: ContentStore, info: ProjectInfo) -> ProjectManifest:
        """The project's verified manifest (by its CID: manifests never change)."""
        with self._lock:
            cached = self._manifests.get(info.config_cid)
        if cached is None:
            cached = load_manifest(store, ContentRef(cid=info.config_cid, sha256=info.config_sha256))
            with self._lock:
                self._manifests[info.config_cid] = cached
        return cached

    def current(self, market: TrainingMarket, store: ContentStore, project_id: int) -> LoadedModel:
        info = market.project(project_id)
        round_, ref = current_model_ref(market, info)
        return self.load(store, info, round_, ref)

    def load(
        self, store: ContentStore, info: ProjectInfo, round_: int | None, ref: ContentRef
    ) -> LoadedModel:
        """The model `ref` of project `info` (from memory if it was loaded before)."""
        project_id = info.project_id
        key = (project_id, ref.cid)
        with self._lock:
            hit = self._models.get(key)
            if hit is not None:
                self._models.move_to_end(key)
                return hit
        manifest = self.manifest(store, info)
        model = build_project_model(store, manifest, self._cache_dir or default_cache_dir())
        model.load_state(load_model(store, ref, manifest))
        model.module.eval()
        loaded = LoadedModel(
            project_id, round_, ref, manifest.model.uri, model, DataSchema.from_dict(manifest.data)
        )
        with self._lock:
            self._models[key] = loaded
            while len(self._models) > self._max:
                self._models.popitem(last=False)
        return loaded
