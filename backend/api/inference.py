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
from aggregator.tasks import Task
from backend.chain.training_market import ProjectInfo, TrainingMarket
from backend.marketplace.manifest import ContentRef, ProjectManifest
from backend.marketplace.models import build_project_model
from backend.marketplace.publish import load_manifest, load_model
from backend.marketplace.runner import default_cache_dir
from backend.storage import ContentStore

__all__ = ["PREDICT_BATCH", "LoadedModel", "ModelCache", "current_model_ref"]

# Examples per forward pass: a text model's activations grow with batch x tokens, and a call may hold thousands.
PREDICT_BATCH = 64


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
    def input_kind(self) -> str:
        """What the model reads: "tensor" (rows of features) or "text"."""
        return self.schema.kind

    @property
    def input_width(self) -> int | None:
        """Features per row (None for text models)."""
        return math.prod(self.schema.feature_shape) if self.schema.feature_shape is not None else None

    @property
    def task(self) -> Task:
        return self.schema.task_spec

    @property
    def classes(self) -> list[int | str]:
        """The project's class labels in output order: class `i` is `classes[i]` (names such as "malignant", or
        the integers of a data set labelled by index); empty for regression."""
        return list(self.schema.labels or ())

    def examples(self, *, rows: Sequence[Sequence[float]] | None = None, texts: Sequence[str] | None = None):
        """The caller's inputs as examples of the project's kind (feature rows reshaped to the schema's feature
        shape; texts as given). The route has checked widths and kinds; targets are placeholders."""
        if texts is not None:
            return Examples(torch.zeros(len(texts), dtype=torch.int64), texts=tuple(texts))
        assert rows is not None
        features = torch.tensor(rows, dtype=torch.float32).reshape(
            len(rows), *(self.schema.feature_shape or ())
        )
        return Examples(torch.zeros(len(rows), dtype=torch.int64), features=features)

    def outputs(self, examples: Examples) -> torch.Tensor:
        """The model's outputs (float64) after the project's preprocessing and, for text, its tokenizer: the same
        path the trainers' data and the validation set take. In batches, so a large call stays in memory."""
        prepared = self.schema.prepare(examples)
        encoded = self.model.encode(prepared)
        parts = []
        with torch.no_grad():
            for start in range(0, len(prepared), PREDICT_BATCH):
                batch = self.model.batch(encoded, slice(start, start + PREDICT_BATCH))
                parts.append(self.model.outputs(batch).double())
        return torch.cat(parts)

    def classify(self, examples: Examples) -> tuple[list[int], list[list[float]]]:
        """Class predictions and probabilities (softmax of the outputs) for each example."""
        outputs = self.outputs(examples)
        return outputs.argmax(dim=1).tolist(), torch.softmax(outputs, dim=1).tolist()

    def regress(self, examples: Examples) -> list[float]:
        """The predicted value of each example (a regression model has one output)."""
        return self.outputs(examples).reshape(-1).tolist()


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
    def __init__(self, max_models: int = 8, cache_dir: Path | None = None, max_manifests: int = 1024):
        self._max = max_models
        self._max_manifests = max_manifests
        self._cache_dir = cache_dir
        self._models: OrderedDict[tuple[int, str], LoadedModel] = OrderedDict()
        self._manifests: OrderedDict[tuple[str, str], ProjectManifest] = OrderedDict()
        self._lock = threading.Lock()

    def cached_manifest(self, info: ProjectInfo) -> ProjectManifest | None:
        """The project's manifest if this worker read it before (no I/O)."""
        key = (info.config_cid, info.config_sha256)
        with self._lock:
            hit = self._manifests.get(key)
            if hit is not None:
                self._manifests.move_to_end(key)
            return hit

    def manifest(self, store: ContentStore, info: ProjectInfo) -> ProjectManifest:
        """The project's verified manifest, read once per CID (manifests never change; the project view lists
        many, so the most recently used are kept)."""
        cached = self.cached_manifest(info)
        if cached is None:
            cached = load_manifest(store, ContentRef(cid=info.config_cid, sha256=info.config_sha256))
            with self._lock:
                self._manifests[(info.config_cid, info.config_sha256)] = cached
                while len(self._manifests) > self._max_manifests:
                    self._manifests.popitem(last=False)
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
