"""A trainer's side of a round: fetch the global model (verified), train on private data, submit the update.

The trainer's data never leaves `train_update`: only the update (the travelling tensors' delta) is encoded,
naming its trainer. The data is checked against the project's schema before any training, and an update against
the model's spec before anything is kept or sent. `submit_update` keeps the update in the trainer's home and
commits to it on chain; `reveal_update` stores and reveals it once the round's commits close (see
`backend.marketplace.sealing`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from eth_account.signers.local import LocalAccount

from aggregator.dataset_io import Table, load_table
from aggregator.examples import Examples
from aggregator.models import BuiltModel, state_delta
from aggregator.schema import DataSchema
from aggregator.training import Recipe, StepCallback, train
from backend.chain.training_market import ProjectStatus, TrainingMarket
from backend.marketplace.errors import MarketplaceError
from backend.marketplace.manifest import ContentRef, ProjectManifest
from backend.marketplace.models import build_project_model
from backend.marketplace.publish import initial_hyperparams, load_manifest, load_model
from backend.marketplace.rounds import round_start
from backend.marketplace.sealing import SealedUpdate, commit_sealed, reveal_sealed, seal_update
from backend.storage import CodecError, ContentStore
from backend.storage.codec import (
    META_BASE_MODEL,
    META_PROJECT,
    META_ROUND,
    META_TRAINER,
    decode_state,
    encode_state,
    state_metadata,
)

__all__ = [
    "GlobalModel",
    "check_update",
    "current_model",
    "encode_update",
    "load_training_data",
    "name_trainer",
    "reveal_update",
    "submit_update",
    "train_update",
    "trainer_model",
]


@dataclass(frozen=True)
class GlobalModel:
    """The model a round starts from, verified against its on-chain sha256."""

    project_id: int
    round: int
    ref: ContentRef
    manifest: ProjectManifest
    state: dict[str, torch.Tensor]
    client_lr: float  # the learning rate the aggregator's schedule set for this round

    @property
    def schema(self) -> DataSchema:
        return DataSchema.from_dict(self.manifest.data)

    @property
    def recipe(self) -> Recipe:
        return Recipe.from_dict(self.manifest.recipe)


def current_model(market: TrainingMarket, store: ContentStore, project_id: int) -> GlobalModel:
    """The open round's starting model: the initial model for round 0, else the last finalized round's."""
    info = market.project(project_id)
    if info.status is not ProjectStatus.ACTIVE or info.current_round >= info.rounds:
        raise MarketplaceError(f"project {project_id} has no open round (it is {info.status.name.lower()})")
    manifest = load_manifest(store, ContentRef(cid=info.config_cid, sha256=info.config_sha256))
    start = round_start(market, store, info, info.current_round)
    if start.previous_report is None:
        client_lr = initial_hyperparams(manifest).client_lr
    else:
        client_lr = float(start.previous_report["hyperparams"]["next"]["client_lr"])
    ref = start.model
    return GlobalModel(
        project_id, info.current_round, ref, manifest, load_model(store, ref, manifest), client_lr
    )


def load_training_data(
    model: GlobalModel, path: Path, *, label_column: str | None = None, text_column: str | None = None
) -> Examples:
    """A trainer's data file, checked against the project's schema (one-line `DatasetError` on any mismatch) and
    prepared as the project prescribes; the columns default to the project's."""
    schema = model.schema
    table: Table = load_table(
        path,
        label_column=label_column or schema.label_field,
        text_column=text_column or schema.text_field,
    )
    return schema.prepare(schema.examples(table))


def train_update(
    model: GlobalModel,
    examples: Examples | tuple[torch.Tensor, torch.Tensor],
    *,
    built: BuiltModel | None = None,
    store: ContentStore | None = None,
    overrides: dict[str, Any] | None = None,
    lr: float | None = None,
    on_step: StepCallback | None = None,
) -> dict[str, torch.Tensor]:
    """Train locally from the global model by the project's recipe (with any `overrides`; at the round's client
    learning rate unless `lr` is given); the delta (local - global) of the travelling tensors is the update.
    `examples` are prepared already (`load_training_data`), or `(X, y)` tensors of a feature project. The model is
    `built` (`trainer_model`) or built here (an hf model's content then comes from `store`)."""
    if not isinstance(examples, Examples):
        X, y = examples
        examples = Examples(torch.as_tensor(y), features=torch.as_tensor(X, dtype=torch.float32))
    if built is None:
        from backend.marketplace.runner import default_cache_dir

        built = trainer_model(store, model, default_cache_dir())
    recipe = replace(model.recipe, **(overrides or {}))
    local = train(
        built,
        model.manifest.task,
        model.state,
        examples,
        recipe,
        lr=model.client_lr if lr is None else lr,
        on_step=on_step,
    )
    return state_delta(local, model.state)


def trainer_model(store: ContentStore | None, model: GlobalModel, cache_dir: Path) -> BuiltModel:
    """The project's model on this machine, every pin checked (content hash, plugin version, frozen tensors)."""
    return build_project_model(store, model.manifest, cache_dir)


def encode_update(model: GlobalModel, delta: dict[str, torch.Tensor], trainer: str | None = None) -> bytes:
    """safetensors bytes of the delta, bound to this project, round, base model and, if given, trainer (the round
    runner flags an update revealed by anyone but the trainer it names; `submit_update` names it if unnamed)."""
    metadata = state_metadata(model.project_id, model.round, model.ref.cid, kind="delta")
    if trainer is not None:
        metadata[META_TRAINER] = trainer.lower()
    return encode_state(delta, metadata)


def name_trainer(update: bytes, trainer: str) -> bytes:
    """`update` naming `trainer` (an update written without a name, e.g. by `trainer train` without a signer);
    refuses one that names somebody else."""
    tensors, meta = decode_state(update)
    named = meta.get(META_TRAINER)
    if named is not None and named.lower() != trainer.lower():
        raise MarketplaceError(f"the update names trainer {named}, not {trainer}: it is someone else's")
    if named is not None:
        return update
    return encode_state(tensors, {**meta, META_TRAINER: trainer.lower()})


def check_update(model: GlobalModel, update: bytes) -> None:
    """Refuse an update that the aggregator would flag for its form: not safetensors, other tensors, shapes or
    dtypes than the model's, NaN/Inf, or made for another project, round or base model."""
    try:
        _, meta = decode_state(update, model.manifest.tensor_spec())
    except CodecError as exc:
        raise MarketplaceError(f"the update does not fit the project's model: {exc}") from None
    expected = {
        META_PROJECT: str(model.project_id),
        META_ROUND: str(model.round),
        META_BASE_MODEL: model.ref.cid,
    }
    for key, want in expected.items():
        if meta.get(key) != want:
            raise MarketplaceError(
                f"the update was made for project {meta.get(META_PROJECT)} round {meta.get(META_ROUND)} from "
                f"{meta.get(META_BASE_MODEL)}, not project {model.project_id} round {model.round} from {model.ref.cid}"
            )


def submit_update(
    market: TrainingMarket,
    account: LocalAccount,
    model: GlobalModel,
    update: bytes,
    *,
    home: Path,
) -> SealedUpdate:
    """Check the update, seal it in the trainer's home and commit to it on chain; nothing public identifies it
    until `reveal_update` (the contract refuses a closed round or a second commitment). The check comes first: a
    trainer has one commitment per round, and an update the aggregator must reject would waste it."""
    check_update(model, update)
    sealed = seal_update(
        home, market, account.address, model.project_id, model.round, name_trainer(update, account.address)
    )
    return commit_sealed(market, account, sealed)


def reveal_update(
    market: TrainingMarket, store: ContentStore, account: LocalAccount, sealed: SealedUpdate
) -> SealedUpdate:
    """Store the sealed update in the shared store and reveal it (once the round's commits have closed)."""
    return reveal_sealed(market, store, account, sealed)
