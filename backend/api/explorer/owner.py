"""What a project's owner may still do, read from the contract's state: the owner escrowed the pool and can
neither take it back nor change the rules, so the list is short, and each item says until when.

Every item names the contract function it calls and, where the CLI has one, the command.
"""

from __future__ import annotations

from dataclasses import dataclass

from backend.api.explorer.ledger import ProjectView
from backend.api.explorer.words import ether
from backend.chain.training_market import ProjectStatus

__all__ = ["Action", "owner_actions"]


@dataclass(frozen=True)
class Action:
    title: str
    detail: str
    until: int | None = None  # chain time the action (or the wait) ends: the page counts down to it
    command: str | None = None
    call: str | None = None  # the TrainingMarket function


def owner_actions(view: ProjectView, now: int) -> list[Action]:
    info = view.info
    p = info.project_id
    actions: list[Action] = []
    open_row = next((r for r in view.rounds if r.state in ("open", "revealing", "closed", "missed")), None)
    if open_row is not None and open_row.state == "open":
        actions.append(
            Action(
                f"Wait for round {open_row.round}",
                (
                    f"{open_row.commits} of {info.trainer_count} trainers committed; commits close in"
                    if open_row.reveal_end
                    else f"{open_row.submissions} of {info.trainer_count} trainers submitted; the window closes in"
                ),
                until=open_row.window_end,
            )
        )
    if open_row is not None and open_row.state == "revealing":
        actions.append(
            Action(
                f"Wait for round {open_row.round}'s reveals",
                f"{open_row.submissions} of {open_row.commits} committed updates revealed; the reveal window "
                "closes in",
                until=open_row.reveal_end,
            )
        )
    if open_row is not None and open_row.state in ("open", "revealing", "closed"):
        actions.append(
            Action(
                "Cancel if the aggregator stalls",
                "If round "
                f"{open_row.round} is not finalized by its deadline, anyone (you included) may cancel: the "
                "unallocated pool then goes to the trainers who did unflagged work, the remainder to you. "
                "The deadline is in",
                until=open_row.aggregator_deadline,
                call=f"cancel({p})",
            )
        )
    if open_row is not None and open_row.state == "missed":
        actions.append(
            Action(
                "Cancel the project now",
                f"The aggregator missed round {open_row.round}'s deadline: anyone may cancel. The unallocated "
                "pool goes to the trainers who did unflagged work, the rounding remainder to you.",
                call=f"cancel({p})",
            )
        )
    for row in view.rounds:
        challengeable = (
            row.finalized
            and row.challenge == "None"
            and row.attestation is None
            and row.challenge_ends is not None
            and now <= row.challenge_ends
        )
        if challengeable:
            actions.append(
                Action(
                    f"Challenge round {row.round} if it does not recompute",
                    f"Run `trustmarket verify -p {p} -r {row.round}`; on a mismatch, post the "
                    f"{ether(info.challenge_bond)} bond to challenge (anyone may). The window closes in",
                    until=row.challenge_ends,
                    command=f"trustmarket verify -p {p} -r {row.round}",
                    call=f"challenge({p}, {row.round})",
                )
            )
        if row.challenge == "Open":
            actions.append(
                Action(
                    f"Wait for the arbiter on round {row.round}",
                    "Every payout of the project is frozen until the arbiter rules or the challenge lapses.",
                )
            )
    if info.status in (ProjectStatus.COMPLETED, ProjectStatus.CANCELLED):
        claim = view.extra.get("owner_claim")
        if info.owner_claimed or claim is not None:
            paid = int(claim.args["amount"]) if claim is not None else None
            detail = (
                "The owner claimed, and the trainers had earned the whole pool: there was nothing to refund."
                if paid == 0
                else f"The owner claimed the refund of what nobody earned ({ether(paid)})."
            )
            actions.append(Action("Nothing left to claim", detail))
        elif view.claims_open and view.owner_claimable > 0:
            actions.append(
                Action(
                    f"Claim your refund of {ether(view.owner_claimable)}",
                    "The part of the pool nobody earned (rounding dust, rounds where every score was 0"
                    + (", and the liveness remainder" if info.status is ProjectStatus.CANCELLED else "")
                    + ").",
                    command=f"trustmarket trainer claim -p {p}",
                    call=f"claim({p})",
                )
            )
        elif view.claims_open:
            actions.append(Action("Nothing to claim", "The trainers earned the whole pool."))
        else:
            last = max((r.challenge_ends or 0 for r in view.rounds if r.finalized), default=0)
            actions.append(
                Action(
                    "Wait for claims to open",
                    "Claims open when every round that stands is final (attested by the committee or past its "
                    "challenge window) and no challenge is open; the last window ends in",
                    until=last or None,
                )
            )
    actions.append(
        Action(
            "What you cannot do",
            "Withdraw the escrow, change the rules or the aggregator, or pay trainers yourself: the contract "
            "has no function for it.",
        )
    )
    return actions
