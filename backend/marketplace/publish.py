"""Putting a project's inputs in the content store: the initial model, the validation set and the manifest.

Everything goes in as bytes whose CID and sha256 the contract records, so the aggregator and every verifier
later read exactly these bytes (`backend.storage.fetch_verified`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from aggregator.dataset_io import decode_dataset, encode_dataset
from aggregator.models import initial_state, model_spec
from backend.chain.training_market import ProjectParams
from backend.marketplace.errors import MarketplaceError
from backend.marketplace.manifest import ContentRef, ProjectManifest
from backend.storage import ContentStore, fetch_verified, sha256_hex
from backend.storage.codec import ModelSpec, decode_state, encode_state

__all__ = ["PublishedProject", "load_manifest", "load_model", "load_validation", "publish_project", "put_ref"]


@dataclass(frozen=True)
class PublishedProject:
    """What `createProject` needs to reference: the initial model and the manifest."""

    initial_model: ContentRef
    manifest: ContentRef
    manifest_body: ProjectManifest

    def project_params(self, **terms: Any) -> ProjectParams:
        """`createProject`'s parameters: these references plus the project's terms (rounds, stake, roles...)."""
        return ProjectParams(
            initial_model_cid=self.initial_model.cid,
            initial_model_sha256=self.initial_model.sha256,
            config_cid=self.manifest.cid,
            config_sha256=self.manifest.sha256,
            **terms,
        )


def put_ref(store: ContentStore, data: bytes) -> ContentRef:
    """Store `data`; its reference (CID + sha256)."""
    return ContentRef(cid=store.put(data), sha256=sha256_hex(data))


def publish_project(
    store: ContentStore,
    *,
    model: str,
    validation: tuple[torch.Tensor, torch.Tensor],
    rule: str,
    rule_params: Mapping[str, Any] | None = None,
    outliers: Mapping[str, Any] | None = None,
    contribution: Mapping[str, Any] | None = None,
    hyperparams: Mapping[str, Any] | None = None,
    seed: int = 0,
    initial: Mapping[str, torch.Tensor] | None = None,
) -> PublishedProject:
    """Store the initial model (seeded init unless given), the validation set and the manifest."""
    spec = ModelSpec(model_spec(model))
    state = dict(initial) if initial is not None else initial_state(model, seed=seed)
    initial_bytes = encode_state(state, {"kind": "initial_model", "model": model})
    spec.check(decode_state(initial_bytes)[0])
    initial_ref = put_ref(store, initial_bytes)
    manifest = ProjectManifest(
        model=model,
        spec=json.loads(spec.to_json()),
        validation=put_ref(store, encode_dataset(*validation)),
        rule=rule,
        rule_params=dict(rule_params or {}),
        outliers=dict(outliers or {}),
        contribution=dict(contribution or {}),
        hyperparams=dict(hyperparams or {}),
        seed=seed,
    )
    return PublishedProject(initial_ref, put_ref(store, manifest.to_bytes()), manifest)


def load_manifest(store: ContentStore, ref: ContentRef) -> ProjectManifest:
    """The verified manifest; its spec must be the model's own."""
    manifest = ProjectManifest.from_bytes(fetch_verified(store, ref.cid, ref.sha256))
    if ModelSpec.from_json(json.dumps(manifest.spec)) != ModelSpec(model_spec(manifest.model)):
        raise MarketplaceError(f"manifest {ref.cid}: its spec does not match model {manifest.model!r}")
    return manifest


def load_validation(store: ContentStore, manifest: ProjectManifest) -> tuple[torch.Tensor, torch.Tensor]:
    return decode_dataset(fetch_verified(store, manifest.validation.cid, manifest.validation.sha256))


def load_model(store: ContentStore, ref: ContentRef, manifest: ProjectManifest) -> dict[str, torch.Tensor]:
    """A verified global model, checked against the manifest's spec."""
    tensors, _ = decode_state(
        fetch_verified(store, ref.cid, ref.sha256), ModelSpec(model_spec(manifest.model))
    )
    return tensors
