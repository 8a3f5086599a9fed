"""When a project's claims open, and why not yet: read from the chain the way `claimsOpen` decides.

Claims open once the project has ended (completed or cancelled), no challenge is open, and every round that
still stands is final: attested by the verifier committee, or past its challenge window.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from backend.cli._hints import advance_hint, duration, when

if TYPE_CHECKING:
    from backend.cli._context import CliContext


def _named(value: Any) -> str:
    # Statuses are strings or IntEnums depending on the facade's version; compare by name either way.
    return str(getattr(value, "name", value)).lower()


def claims_outlook(cli: CliContext, project_id: int, now: int) -> str:
    """One sentence: what claims wait for, and from when they open."""
    tm = cli.market
    info = tm.project(project_id)
    window = info.challenge_window
    if _named(info.status) == "active":
        later = info.rounds - info.current_round - 1
        follow = f", then {later} more round{'s' if later != 1 else ''}" if later > 0 else ""
        return (
            f"project {project_id} is still running: round {info.current_round} takes commitments until "
            f"{when(info.commit_end, now)} and reveals until {when(info.reveal_end, now)}{follow}; claims open "
            f"{duration(window)} after the last round is finalized (an attested round stays challengeable "
            "until then)"
        )
    rounds = [tm.round(project_id, r) for r in range(info.rounds)]
    disputed = [r.round for r in rounds if _named(r.challenge) == "open"]
    if disputed:
        return (
            f"round {', '.join(map(str, disputed))} is under challenge: claims wait for the arbiter "
            f"(`trustmarket project resolve`) or the challenge's expiry (`trustmarket project expire-challenge`)"
        )
    pending = []
    for r in rounds:
        if not r.finalized_at or _named(r.challenge) == "upheld":
            continue
        ends = r.finalized_at + window
        if now <= ends:
            pending.append((r.round, ends))
    if not pending:
        return "nothing holds them back any more: try again in the next block"
    last_round, last_end = max(pending, key=lambda p: p[1])
    return (
        f"claims open at {when(last_end + 1, now)}, when round {last_round}'s challenge window ends"
        f"{advance_hint(cli, last_end + 1 - now)}"
    )


__all__ = ["claims_outlook"]
