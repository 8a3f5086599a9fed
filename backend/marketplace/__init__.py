"""The training-round service: the project manifest, publishing a project (with its sealed validation shards), a
trainer's sealed round (commit, then reveal), the round runner, recomputation (`recompute.verify_round`) and the
end-to-end demo. `runner`, `recompute`, `manifest` and `demo` are
imported where used."""

from backend.marketplace.errors import MarketplaceError, RoundNotReady
from backend.marketplace.publish import (
    PublishedProject,
    load_manifest,
    load_model,
    publish_project,
)
from backend.marketplace.trainer import (
    GlobalModel,
    current_model,
    encode_update,
    reveal_update,
    submit_update,
    train_update,
)

__all__ = [
    "GlobalModel",
    "MarketplaceError",
    "PublishedProject",
    "RoundNotReady",
    "current_model",
    "encode_update",
    "load_manifest",
    "load_model",
    "publish_project",
    "reveal_update",
    "submit_update",
    "train_update",
]
