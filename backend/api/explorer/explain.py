"""A round, trainer by trainer: status, flags in words, score and its confidence, the share the contract
credited, the slashing it counts toward, and "why did I get this": the report's own figures, in order.

The payout sentence recomputes the contract's rule (`floor(round pool x score / sum of scores)` on the posted
fixed-point scores) and shows it beside the share the chain credited, so a reader can check one against the other.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from backend.api.explorer.index import ChainEvent
from backend.api.explorer.ledger import Ledger, ProjectView, RoundRow
from backend.api.explorer.reports import FlagView, ReportTrainer
from backend.api.explorer.words import ether, number, percent, timestamp
from backend.chain.training_market import ProjectInfo

__all__ = ["RoundTrainer", "explain_round"]

_RULE_WORDS = {
    "multi_krum": "Multi-Krum",
    "krum": "Krum",
    "fedavg": "FedAvg",
    "trimmed_mean": "the coordinate-wise trimmed mean",
    "median": "the coordinate-wise median",
    "coordinate_median": "the coordinate-wise median",
    "geometric_median": "the geometric median",
    "bulyan": "Bulyan",
    "centered_clipping": "centered clipping",
    "foolsgold": "FoolsGold",
}
_METHOD_WORDS = {
    "gtg_shapley": "GTG-Shapley (Monte Carlo Shapley values)",
    "leave_one_out": "leave-one-out",
    "similarity": "cosine similarity with the aggregate",
}
_UTILITY_WORDS = {"neg_loss": "the validation loss", "accuracy": "the validation accuracy"}


@dataclass
class RoundTrainer:
    """One submitter of a round, everything the round page shows for it."""

    address: str
    status: str  # scored | flagged | rejected (by a defense) | submitted (round not finalized) | reversed
    submission: ChainEvent | None
    report: ReportTrainer | None
    posted_score: int | None  # fixed point, from RoundScored
    share: int | None  # wei the contract credited
    expected_share: int | None  # the contract's rule applied to the posted scores
    flags_so_far: int  # rounds up to this one in which it was flagged
    slash: str
    why: list[str] = field(default_factory=list)
    commitment: ChainEvent | None = None  # sealed rounds: its `UpdateCommitted`

    @property
    def flags(self) -> list[FlagView]:
        return self.report.flags if self.report else []


def rule_words(name: str | None) -> str:
    return _RULE_WORDS.get(name or "", name or "the project's rule")


def _slash_text(info: ProjectInfo, flags_so_far: int, stake: int) -> str:
    if not info.slash_after_flags:
        return "no slashing in this project"
    cut = stake * info.slash_bps // 10_000
    if flags_so_far >= info.slash_after_flags:
        return (
            f"{flags_so_far} flagged rounds: {percent(info.slash_bps / 10_000, 0)} of the stake "
            f"({ether(cut)}) is slashed at claim"
        )
    return (
        f"{flags_so_far} of {info.slash_after_flags} flagged rounds before "
        f"{percent(info.slash_bps / 10_000, 0)} of the stake is slashed"
    )


def _checks(entry: ReportTrainer, config: dict) -> str:
    stats = entry.stats
    parts = []
    if "norm" in stats:
        parts.append(f"norm {number(stats['norm'])}")
    if "z_score" in stats:
        limit = config.get("mad_threshold")
        parts.append(
            f"robust z-score {number(stats['z_score'])}" + (f" (limit {number(limit)})" if limit else "")
        )
    if "cosine_to_center" in stats:
        parts.append(f"cosine to the robust center {number(stats['cosine_to_center'])}")
    if "self_consistency" in stats:
        parts.append(f"cosine to its own past direction {number(stats['self_consistency'])}")
    return "It passed every check" + (f": {', '.join(parts)}." if parts else ".")


def _contribution(row: RoundRow, entry: ReportTrainer) -> str:
    report = row.report
    assert report is not None
    method = _METHOD_WORDS.get(
        report.contribution_method or "", report.contribution_method or "the valuation"
    )
    utility = _UTILITY_WORDS.get(report.contribution_utility or "", "the validation set")
    details = report.contribution_details
    basis = report.contribution_basis
    text = f"Its contribution was valued by {method} on {utility}"
    if entry.valuation is not None:
        text += f": value {number(entry.valuation, 4)}"
    text += "."
    if basis == "similarity_fallback":
        text += (
            " The valuation gave nobody credit this round, so the scores fell back to each update's cosine "
            "similarity with the aggregate."
        )
    elif basis == "uniform_fallback":
        text += " Neither the valuation nor the similarity gave anyone credit, so the unflagged updates share equally."
    elif details.get("permutations"):
        converged = "converged" if details.get("converged") else "stopped at its permutation budget"
        text += f" The estimate used {details['permutations']} permutations and {converged}."
    if entry.score is not None:
        text += (
            f" Negative values count as 0 and the round's scores are scaled to sum to 1: its score is "
            f"{number(entry.score, 4)}"
        )
        if entry.interval is not None:
            text += f" (95% confidence {number(entry.interval[0], 3)} to {number(entry.interval[1], 3)}"
            text += f": {entry.confidence})" if entry.confidence else ")"
        text += "."
    if entry.counted_with:
        text += (
            f" It was valued as one player with {len(entry.counted_with)} near-cop"
            f"{'y' if len(entry.counted_with) == 1 else 'ies'} of its update, so copies add no credit."
        )
    return text


def _payout(row: RoundRow, t: RoundTrainer, scores_total: int | None) -> str:
    if t.share is None:
        return "The round is not finalized yet: nothing has been credited."
    if t.posted_score is None or not scores_total:
        return f"The contract credited {ether(t.share)}."
    return (
        f"The round's pool is {ether(row.round_pool)}; the contract credits floor(pool x {t.posted_score} / "
        f"{scores_total}) = {ether(t.expected_share)}, and credited {ether(t.share)} on chain."
    )


def _why(
    view: ProjectView, row: RoundRow, t: RoundTrainer, stake: int, scores_total: int | None
) -> list[str]:
    lines = []
    if t.commitment is not None:
        lines.append(
            f"You committed to your update in block {t.commitment.block} (a hash: nobody could read or copy "
            "the update before the commits closed)."
        )
        if t.submission is None:
            lines.append(
                f"You have not revealed it: reveal before {timestamp(row.reveal_end)} or it is not counted."
                if t.status == "committed" and row.reveal_end
                else "You did not reveal it in the reveal window, so it was not aggregated and earns nothing."
            )
    if t.submission is not None:
        verb = "revealed" if t.commitment is not None else "submitted"
        lines.append(
            f"You {verb} update {t.submission.args['cid']} in block {t.submission.block} (its sha256 "
            f"{t.submission.args['sha256'].hex()[:16]}… is on chain)."
        )
    if row.report is None:
        lines.append(
            "The round report is not available here"
            + (f" ({row.report_error})." if row.report_error else ": the round is not finalized yet.")
        )
        lines.append(_payout(row, t, scores_total))
        return lines
    entry = t.report
    if entry is None:
        lines.append("The report has no entry for you.")
        return lines
    config = row.report.outlier_config
    if entry.flags:
        lines.append(
            "It was left out of the aggregate: "
            + "; ".join(f.sentence for f in entry.flags)
            + ". A flagged update scores 0 and earns nothing this round."
        )
        lines.append(f"Slashing: {t.slash}.")
    elif entry.rejections:
        lines.append(
            "A defense left it out of the aggregate: "
            + "; ".join(f"{r.sentence} ({r.defense})" for r in entry.rejections)
            + ". It is not flagged on chain (no slashing counts), but it scores 0 and earns nothing this round."
        )
    else:
        lines.append(_checks(entry, config))
        if entry.aggregation_weight is not None:
            lines.append(
                f"{rule_words(row.report.rule).capitalize() if row.report.rule else 'The rule'} gave it "
                f"{percent(entry.aggregation_weight)} of the aggregate's weight"
                + (
                    f"; after the defenses its update made {percent(entry.influence)} of the aggregate."
                    if entry.influence is not None
                    else "."
                )
            )
        lines.append(_contribution(row, entry))
    lines.append(_payout(row, t, scores_total))
    return lines


def explain_round(ledger: Ledger, view: ProjectView, row: RoundRow) -> list[RoundTrainer]:
    """Every submitter of `row`, ordered by score (highest first), flagged ones last."""
    project_id, r = row.project_id, row.round
    info = view.info
    submissions = ledger.submissions(project_id, r)
    commitments = ledger.commitments(project_id, r)  # sealed rounds (#12); empty for open submissions
    scored = ledger.scored(project_id, r) if row.finalized else None
    posted: dict[str, int] = {}
    if scored is not None:
        posted = {a: int(s) for a, s in zip(scored.args["trainers"], scored.args["scores"], strict=True)}
    scores_total = sum(posted.values()) or None
    standing = {s.address.lower(): s for s in view.trainers}
    flagged_rounds: dict[str, int] = {}
    for earlier in view.rounds[: r + 1]:
        if earlier.report is not None and earlier.state != "reversed":
            for address in earlier.report.flagged:
                flagged_rounds[address.lower()] = flagged_rounds.get(address.lower(), 0) + 1
    addresses = sorted(
        set(submissions) | set(commitments) | set(posted) | set(row.report.trainers if row.report else ())
    )
    out = []
    for address in addresses:
        entry = row.report.trainer(address) if row.report else None
        record = standing.get(address.lower())
        share = ledger.share(project_id, r, address) if row.finalized else None
        score = posted.get(address)
        expected = row.round_pool * score // scores_total if score is not None and scores_total else None
        flags = flagged_rounds.get(address.lower(), 0)
        if address not in submissions and address in commitments and address not in posted:
            status = "committed" if row.state in ("open", "revealing") else "not revealed"
        elif not row.finalized:
            status = "revealed" if address in commitments else "submitted"
        elif row.state == "reversed":
            status = "reversed"
        else:
            status = entry.verdict if entry is not None else "scored"
        t = RoundTrainer(
            address=address,
            status=status,
            submission=submissions.get(address),
            commitment=commitments.get(address),
            report=entry,
            posted_score=score,
            share=share,
            expected_share=expected,
            flags_so_far=flags,
            slash=_slash_text(info, flags, record.stake if record else 0),
        )
        t.why = _why(view, row, t, record.stake if record else 0, scores_total)
        out.append(t)
    out.sort(key=lambda t: (t.status in ("flagged", "rejected"), t.status == "flagged",
                            -(t.report.score or 0) if t.report else 0, t.address))  # fmt: skip
    return out
