"""The training-round service: the project manifest, publishing a project, a trainer's round, the round runner,
recomputation (`recompute.verify_round`) and the end-to-end demo. `runner`, `recompute`, `manifest` and `demo` are
imported where used."""

from backend.marketplace.errors import MarketplaceError, RoundNotReady
from backend.marketplace.publish import (
    PublishedProject,
    load_manifest,
    load_model,
    load_validation,
    publish_project,
)
from backend.marketplace.trainer import (
    GlobalModel,
    Submitted,
    current_model,
    encode_update,
    submit_update,
    train_update,
)

__all__ = [
    "GlobalModel",
    "MarketplaceError",
    "PublishedProject",
    "RoundNotReady",
    "Submitted",
    "current_model",
    "encode_update",
    "load_manifest",
    "load_model",
    "load_validation",
    "publish_project",
    "submit_update",
    "train_update",
]
