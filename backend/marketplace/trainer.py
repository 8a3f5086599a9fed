"""A trainer's side of a round: fetch the global model (verified), train on private data, submit the update.

The trainer's data never leaves `train_update`: only the model delta is encoded, stored and referenced on chain.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import torch
from eth_account.signers.local import LocalAccount

from aggregator.hyperparams import HyperParams
from aggregator.models import state_delta
from aggregator.training import train_local
from backend.chain.training_market import ProjectStatus, TrainingMarket
from backend.marketplace.errors import MarketplaceError
from backend.marketplace.manifest import ContentRef, ProjectManifest
from backend.marketplace.publish import load_manifest, load_model, put_ref
from backend.marketplace.rounds import round_start
from backend.storage import ContentStore
from backend.storage.codec import (
    META_PROJECT,
    META_ROUND,
    ModelSpec,
    decode_state,
    encode_state,
    state_metadata,
)

__all__ = ["GlobalModel", "Submitted", "current_model", "encode_update", "submit_update", "train_update"]


@dataclass(frozen=True)
class GlobalModel:
    """The model a round starts from, verified against its on-chain sha256."""

    project_id: int
    round: int
    ref: ContentRef
    manifest: ProjectManifest
    state: dict[str, torch.Tensor]
    client_lr: float  # the learning rate the aggregator's schedule set for this round


@dataclass(frozen=True)
class Submitted:
    project_id: int
    round: int
    update: ContentRef
    transaction: str


def current_model(market: TrainingMarket, store: ContentStore, project_id: int) -> GlobalModel:
    """The open round's starting model: the initial model for round 0, else the last finalized round's."""
    info = market.project(project_id)
    if info.status is not ProjectStatus.ACTIVE or info.current_round >= info.rounds:
        raise MarketplaceError(f"project {project_id} has no open round (it is {info.status.name.lower()})")
    manifest = load_manifest(store, ContentRef(cid=info.config_cid, sha256=info.config_sha256))
    start = round_start(market, store, info, info.current_round)
    if start.previous_report is None:
        client_lr = HyperParams(**manifest.hyperparams).client_lr
    else:
        client_lr = float(start.previous_report["hyperparams"]["next"]["client_lr"])
    ref = start.model
    return GlobalModel(
        project_id, info.current_round, ref, manifest, load_model(store, ref, manifest), client_lr
    )


def train_update(
    model: GlobalModel,
    X: torch.Tensor,
    y: torch.Tensor,
    *,
    epochs: int = 10,
    lr: float | None = None,
    batch_size: int = 16,
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    """Train locally from the global model (at the round's client learning rate unless `lr` is given); the
    delta (local - global) is the update."""
    local = train_local(
        model.manifest.model,
        model.state,
        X,
        y,
        epochs=epochs,
        lr=model.client_lr if lr is None else lr,
        batch_size=batch_size,
        seed=seed,
    )
    return state_delta(local, model.state)


def encode_update(model: GlobalModel, delta: dict[str, torch.Tensor]) -> bytes:
    """safetensors bytes of the delta, bound to this project, round and base model."""
    return encode_state(delta, state_metadata(model.project_id, model.round, model.ref.cid, kind="delta"))


def submit_update(
    market: TrainingMarket, store: ContentStore, account: LocalAccount, model: GlobalModel, update: bytes
) -> Submitted:
    """Store the update, then `submitUpdate` on chain (the contract rejects a closed round or a second try).

    The update must hold exactly the project's tensors (names, shapes, dtypes, finite values) before anything is
    stored or sent: a trainer has one submission per round, and an update the aggregator must reject would waste
    it."""
    _, meta = decode_state(update, ModelSpec.from_json(json.dumps(model.manifest.spec)))
    if meta.get(META_ROUND) != str(model.round) or meta.get(META_PROJECT) != str(model.project_id):
        raise MarketplaceError(
            f"the update was made for project {meta.get(META_PROJECT)} round {meta.get(META_ROUND)}, "
            f"not project {model.project_id} round {model.round}"
        )
    ref = put_ref(store, update)
    receipt = market.submit_update(account, model.project_id, model.round, ref.cid, ref.sha256)
    return Submitted(model.project_id, model.round, ref, receipt["transactionHash"].to_0x_hex())
