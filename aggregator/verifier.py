"""`trustmarket verify`: recompute a finalized round from on-chain inputs and compare it with what was posted.

The aggregator is deterministic, so an honest result is reproduced bit for bit: the same model bytes, the same
report bytes, the same fixed-point scores and flags, hence the same on-chain result digest.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aggregator.runner import RoundRunner
from backend.chain.training_market import RoundResult, TrainingMarket
from backend.marketplace.errors import RoundNotReady
from backend.storage import ContentStore

__all__ = ["VerifyReport", "verify_round"]


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


def _hex(value: bytes | str) -> str:
    return value.hex() if isinstance(value, bytes) else value.lower().removeprefix("0x")


def verify_round(market: TrainingMarket, store: ContentStore, project_id: int, round_: int) -> VerifyReport:
    """Recompute round `round_` of `project_id` and compare it field by field with the chain."""
    posted = market.round(project_id, round_)
    if not posted.finalized_at:
        raise RoundNotReady(f"project {project_id}: round {round_} has not been finalized")
    _, outcome = RoundRunner(market, store).compute(project_id, round_)
    trainers = sorted(outcome.scores_fixed, key=lambda a: int(a, 16))
    recomputed = RoundResult(
        model_cid=posted.model_cid,
        model_sha256=outcome.model_sha256,
        trainers=trainers,
        scores=[outcome.scores_fixed[t] for t in trainers],
        flagged=sorted(outcome.flagged, key=lambda a: int(a, 16)),
        report_cid=posted.report_cid,
        report_sha256=outcome.report_sha256,
    )
    digest = _hex(market.result_digest_of(project_id, round_, recomputed))
    onchain = _hex(posted.result_digest)
    mismatches = []
    if outcome.model_sha256 != _hex(posted.model_sha256):
        mismatches.append(
            f"model sha256: posted {_hex(posted.model_sha256)}, recomputed {outcome.model_sha256}"
        )
    if outcome.report_sha256 != _hex(posted.report_sha256):
        mismatches.append(
            f"report sha256: posted {_hex(posted.report_sha256)}, recomputed {outcome.report_sha256}"
        )
    if digest != onchain and not mismatches:
        mismatches.append("scores or flagged trainers differ from those posted")
    return VerifyReport(project_id, round_, digest == onchain, onchain, digest, mismatches)
