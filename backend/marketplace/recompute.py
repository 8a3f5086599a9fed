"""`trustmarket verify`: recompute a finalized round from on-chain inputs and compare it with what was posted.

The aggregator is deterministic, so an honest result is reproduced bit for bit: the same model bytes, the same
report bytes, the same fixed-point scores and flags, hence the same on-chain result digest. A mismatch names what
differs: the model or report hash, each trainer whose posted score or flag differs (read from the round's
`RoundScored` event), or a posted CID that does not serve the posted bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from aggregator.engine import Engine
from backend.chain.training_market import TrainingMarket
from backend.marketplace.errors import MarketplaceError, RoundNotReady
from backend.marketplace.runner import RoundRunner, round_result
from backend.storage import ContentStore, StorageError, StoreUnavailable, fetch_verified

__all__ = ["VerificationIncomplete", "VerifyReport", "verify_round"]


@dataclass(frozen=True)
class VerifyReport:
    project_id: int
    round: int
    match: bool
    onchain_digest: str
    recomputed_digest: str
    mismatches: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "project": self.project_id,
            "round": self.round,
            "match": self.match,
            "onchain_digest": self.onchain_digest,
            "recomputed_digest": self.recomputed_digest,
            "mismatches": self.mismatches,
        }


class VerificationIncomplete(MarketplaceError):
    """The round cannot be recomputed here (content the aggregator used is missing from this store)."""


def _posted_allocation(
    market: TrainingMarket, project_id: int, round_: int
) -> tuple[dict[str, int], set[str]]:
    """The scores and flags `finalizeRound` recorded, from its `RoundScored` event (the views keep only shares)."""
    logs = market.client.events(
        "TrainingMarket",
        "RoundScored",
        filters={"projectId": project_id, "round": round_},
        address=market.address,
    )
    if not logs:
        return {}, set()
    args = logs[-1]["args"]
    return dict(zip(args["trainers"], (int(s) for s in args["scores"]), strict=True)), set(args["flagged"])


def _allocation_mismatches(
    posted: tuple[dict[str, int], set[str]], scores: dict[str, int], flagged: set[str]
) -> list[str]:
    """One line per trainer whose posted score or flag differs from the recomputed one."""
    posted_scores, posted_flagged = posted
    lines = []
    for trainer in sorted(set(posted_scores) | set(scores), key=lambda a: int(a, 16)):
        if posted_scores.get(trainer) != scores.get(trainer):
            lines.append(
                f"score of {trainer}: posted {posted_scores.get(trainer)}, recomputed {scores.get(trainer)}"
            )
    for trainer in sorted(posted_flagged ^ flagged, key=lambda a: int(a, 16)):
        side = "posted" if trainer in posted_flagged else "recomputed"
        lines.append(f"flag of {trainer}: only the {side} result flags it")
    return lines


def _content_mismatches(store: ContentStore, posted) -> list[str]:
    """The posted CIDs must hold the posted bytes: the digest covers the hashes only, and trainers fetch by CID."""
    lines = []
    for what, cid, sha256 in (
        ("model", posted.model_cid, posted.model_sha256),
        ("report", posted.report_cid, posted.report_sha256),
    ):
        try:
            fetch_verified(store, cid, sha256)
        except StoreUnavailable:
            raise
        except StorageError as exc:
            lines.append(f"{what} CID {cid} does not serve the posted {what}: {exc}")
    return lines


def _check_complete(
    invalid: Mapping[str, str], posted_flagged: set[str], project_id: int, round_: int
) -> None:
    """An update this verifier cannot fetch, which the aggregator did use, makes the round unverifiable here, not
    wrong: say so instead of reporting a mismatch."""
    missing = sorted(
        t for t, reason in invalid.items() if reason.startswith("ContentNotFound") and t not in posted_flagged
    )
    if missing:
        raise VerificationIncomplete(
            f"cannot verify project {project_id} round {round_}: this store lacks the update of "
            f"{', '.join(missing)}, which the aggregator used; fetch it from a store that has it"
        )


def verify_round(
    market: TrainingMarket,
    store: ContentStore,
    project_id: int,
    round_: int,
    *,
    engine: Engine | None = None,
    spool: Path | None = None,
) -> VerifyReport:
    """Recompute round `round_` of `project_id` and compare it field by field with the chain (passes on
    `engine`, update files under `spool`: see `RoundRunner`)."""
    posted = market.round(project_id, round_)
    if not posted.finalized_at:
        raise RoundNotReady(f"project {project_id}: round {round_} has not been finalized")
    inputs, outcome = RoundRunner(market, store, engine=engine, spool=spool).compute(project_id, round_)
    posted_allocation = _posted_allocation(market, project_id, round_)
    _check_complete(inputs.invalid, posted_allocation[1], project_id, round_)
    recomputed = round_result(outcome, posted.model_cid, posted.report_cid)
    digest = market.result_digest_of(project_id, round_, recomputed)
    onchain = posted.result_digest
    mismatches = []
    if outcome.model_sha256 != posted.model_sha256:
        mismatches.append(f"model sha256: posted {posted.model_sha256}, recomputed {outcome.model_sha256}")
    if outcome.report_sha256 != posted.report_sha256:
        mismatches.append(f"report sha256: posted {posted.report_sha256}, recomputed {outcome.report_sha256}")
    mismatches += _allocation_mismatches(posted_allocation, dict(outcome.scores_fixed), set(outcome.flagged))
    mismatches += _content_mismatches(store, posted)
    if digest != onchain and not mismatches:
        mismatches.append("the result digest differs from the one posted")
    return VerifyReport(project_id, round_, digest == onchain and not mismatches, onchain, digest, mismatches)
