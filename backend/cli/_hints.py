"""Failures as one line that says what went wrong and what to do next.

`one_line` is called once, by the root command group, for whatever a command raised: the project's errors,
bad values and unreadable files become one line; anything else is a bug and keeps its traceback. A reverted
transaction names the contract's own error, and for the errors people meet in the normal course of a project
(claims not open yet, a stake still locked, a missing role) the line goes on with when or how it will work.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from backend.chain.errors import ContractRevert
    from backend.cli._context import CliContext


def one_line(exc: BaseException, cli: CliContext | None) -> str | None:
    """The message to print for `exc`, on one line, or None when it is not the user's to fix (a bug)."""
    from pydantic import ValidationError

    from backend.errors import TrustmarketError

    if isinstance(exc, ValidationError):
        prefix = _env_prefix(exc.title)
        message = "; ".join(_setting_error(error, prefix) for error in exc.errors())
    elif isinstance(exc, TrustmarketError):
        message = str(exc)
        hint = _revert_hint(exc, cli) if cli is not None else None
        if hint:
            message = f"{message}: {hint}"
    elif (db := sys.modules.get("sqlalchemy.exc")) is not None and isinstance(exc, db.OperationalError):
        # The database is down, unreachable or refuses us: the operator's to fix, not a bug.
        reason = str(exc.orig or exc).strip().splitlines()[0]
        message = f"the database (TRUSTMARKET_DATABASE_URL) failed: {reason}"
    elif isinstance(exc, ValueError | OSError):
        message = str(exc) or type(exc).__name__
        from aggregator.errors import InsufficientUpdates

        if isinstance(exc, InsufficientUpdates):
            message += (
                ": the round cannot be finalized with this rule and these trainers; once the aggregator's deadline "
                "has passed anyone may cancel the project (`trustmarket project cancel PROJECT`), which releases the "
                "escrow by rule"
            )
    else:
        return None
    return " ".join(message.split())


def _env_prefix(model: str) -> str:
    """The environment prefix of the settings class named `model` (TRUSTMARKET_API_ for the API's, ...)."""
    from pydantic_settings import BaseSettings

    classes: list[type] = [BaseSettings]
    while classes:
        cls = classes.pop()
        if cls.__name__ == model:
            return str(cls.model_config.get("env_prefix", ""))  # type: ignore[attr-defined]
        classes.extend(cls.__subclasses__())
    return "TRUSTMARKET_"


def _setting_error(error: Any, prefix: str) -> str:
    where = ".".join(str(part) for part in error.get("loc", ()))
    name = f"{prefix}{where.upper()}" if where else "a setting"
    return f"{name}={error.get('input')!r}: {error.get('msg')}"


def when(timestamp: int, now: int) -> str:
    """'2025-03-01 12:00:00 UTC (in 53 min)' against the chain's clock `now`."""
    moment = datetime.fromtimestamp(int(timestamp), UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    delta = int(timestamp) - int(now)
    if delta <= 0:
        return f"{moment} (passed)"
    return f"{moment} (in {duration(delta)})"


def duration(seconds: int) -> str:
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def chain_now(cli: CliContext) -> int:
    """The timestamp of the latest block: what the contracts compare deadlines with (anvil's clock can move)."""
    try:
        return int(cli.client.w3.eth.get_block("latest")["timestamp"])
    except Exception:  # a hint must never hide the error it explains
        return int(time.time())


def advance_hint(cli: CliContext, seconds: int) -> str:
    from backend.chain.keys import LOCAL_CHAIN_IDS

    try:
        local = cli.client.chain_id in LOCAL_CHAIN_IDS
    except Exception:
        local = False
    return (
        f"; on a local chain, `trustmarket chain advance {max(seconds, 1)}` moves its clock" if local else ""
    )


def _revert_hint(exc: BaseException, cli: CliContext) -> str | None:
    from backend.chain.errors import ChainError, ContractRevert

    if isinstance(exc, ChainError) and "insufficient funds" in str(exc).lower():
        try:
            return _unfunded(cli)
        except Exception:
            return None
    if not isinstance(exc, ContractRevert):
        return None
    explain = _HINTS.get((exc.contract_name, exc.error_name))
    if explain is None:
        return None
    try:
        return explain(exc, cli)
    except Exception:  # reading the chain for a hint failed: the error alone is still right
        return None


def _claims_not_open(exc: ContractRevert, cli: CliContext) -> str:
    from backend.cli._claims import claims_outlook

    return claims_outlook(cli, int(exc.error_args["projectId"]), chain_now(cli))


def _missing_role(exc: ContractRevert, cli: CliContext) -> str:
    from backend.cli._roles import role_name

    account = exc.error_args.get("account")
    role = exc.error_args.get("neededRole")
    name = role_name(role) if isinstance(role, bytes | str) else str(role)
    return (
        f"{account} lacks {name}; a holder of its admin role runs `trustmarket roles grant {name} {account}`"
    )


def _exit_delay(exc: ContractRevert, cli: CliContext) -> str:
    now = chain_now(cli)
    at = int(exc.error_args.get("withdrawableAt", exc.error_args.get("availableAt", 0)))
    return f"it can be withdrawn from {when(at, now)}{advance_hint(cli, at - now + 1)}"


def _unfunded(cli: CliContext) -> str:
    from backend.chain.keys import LOCAL_CHAIN_IDS

    signers = list(cli.signers.values())
    if not signers:
        return "the signer cannot pay for this transaction"
    address = signers[-1].address
    balance = cli.client.w3.eth.get_balance(address)
    local = cli.client.chain_id in LOCAL_CHAIN_IDS
    extra = " (anvil funds only dev:0 to dev:19: pick one of those, or send it ether)" if local else ""
    return f"{address} holds {cli.amount(balance)}, not enough for this transaction and its gas{extra}"


def _window_closed(exc: ContractRevert, cli: CliContext) -> str:
    project = exc.error_args.get("projectId")
    return (
        f"this round no longer takes commitments; see `trustmarket project status {project}` for the next one"
    )


def _not_reveal_window(exc: ContractRevert, cli: CliContext) -> str:
    now = chain_now(cli)
    opens, closes = int(exc.error_args.get("opensAt", 0)), int(exc.error_args.get("closesAt", 0))
    if now < opens:
        return (
            f"reveals open {when(opens, now)}, once the round's commits close{advance_hint(cli, opens - now)}"
        )
    return f"the reveal window closed {when(closes, now)}: an unrevealed commitment counts as a missed round"


def _stake_too_low(exc: ContractRevert, cli: CliContext) -> str:
    minimum = int(exc.error_args.get("minStake", 0))
    return f"stake at least {cli.amount(minimum)} (--stake)"


def _not_registered(exc: ContractRevert, cli: CliContext) -> str:
    project = exc.error_args.get("projectId", "P")
    return f"register first: `trustmarket trainer register -p {project} --stake AMOUNT --signer ...`"


def _deadline_not_passed(exc: ContractRevert, cli: CliContext) -> str:
    now = chain_now(cli)
    deadline = int(exc.error_args.get("deadline", 0))
    return (
        f"the aggregator has until {when(deadline, now)} to finalize round {exc.error_args.get('round')}; "
        f"anyone may cancel after that{advance_hint(cli, deadline - now + 1)}"
    )


# By (contract, error): the same name in another contract is another error.
_HINTS: dict[tuple[str, str], Callable[[Any, CliContext], str]] = {
    ("AccessRegistry", "AccessControlUnauthorizedAccount"): _missing_role,
    ("SourceRegistry", "AccessControlUnauthorizedAccount"): _missing_role,
    ("TrainingMarket", "ClaimsNotOpen"): _claims_not_open,
    ("TrainingMarket", "DeadlineNotPassed"): _deadline_not_passed,
    ("VerifierCommittee", "ExitDelayNotOver"): _exit_delay,
    ("SourceRegistry", "ExitNotReady"): _exit_delay,
    ("TrainingMarket", "NotRegistered"): _not_registered,
    ("TrainingMarket", "NotRevealWindow"): _not_reveal_window,
    ("TrainingMarket", "StakeTooLow"): _stake_too_low,
    ("TrainingMarket", "CommitWindowClosed"): _window_closed,
}

__all__ = ["advance_hint", "chain_now", "duration", "one_line", "when"]
