"""Where a round starts: the model it trains from and the previous round's report, verified against the chain."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from backend.chain.training_market import ProjectInfo, TrainingMarket
from backend.marketplace.errors import RoundNotReady
from backend.marketplace.manifest import ContentRef
from backend.storage import ContentStore, fetch_verified

__all__ = ["RoundStart", "round_start"]


@dataclass(frozen=True)
class RoundStart:
    """Round `round` trains from `model`; `previous_report` is round `round - 1`'s report (None for round 0)."""

    round: int
    model: ContentRef
    previous_report: dict[str, Any] | None


def round_start(market: TrainingMarket, store: ContentStore, project: ProjectInfo, round_: int) -> RoundStart:
    if round_ == 0:
        return RoundStart(
            0, ContentRef(cid=project.initial_model_cid, sha256=project.initial_model_sha256), None
        )
    prev = market.round(project.project_id, round_ - 1)
    if not prev.finalized_at:
        raise RoundNotReady(f"project {project.project_id}: round {round_ - 1} is not finalized yet")
    report = json.loads(fetch_verified(store, prev.report_cid, prev.report_sha256))
    return RoundStart(round_, ContentRef(cid=prev.model_cid, sha256=prev.model_sha256), report)
