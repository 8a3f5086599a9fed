"""The verifier service behind `trustmarket verifier run`: recompute finalized rounds, sign or challenge, attest.

For each round the market finalizes, a committee member reruns the deterministic aggregator on the on-chain inputs
(`backend.marketplace.recompute.verify_round`). On a match it signs the digest the market stores and drops the signature in a
shared exchange folder; on a mismatch it raises the market's challenge instead (and never signs). Whenever the
signatures in the exchange reach the quorum, whoever sees it first aggregates them and submits one attestation;
a second submission of the same result is harmless (`AlreadyAttested` is treated as done).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from eth_account.signers.local import LocalAccount

from backend.chain.errors import ChainError
from backend.chain.training_market import TrainingMarket
from backend.chain.verifier_committee import CommitteeError, VerifierCommittee
from backend.committee import bls
from backend.committee.attestation import EmptyCommittee, aggregate, sign_round, submit
from backend.committee.exchange import Exchange
from backend.errors import TrustmarketError
from backend.marketplace.recompute import VerifyReport, verify_round
from backend.storage import ContentStore

__all__ = ["CommitteeService", "RoundOutcome"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RoundOutcome:
    """What the service did with one round: `attested`, `signed` (waiting for the quorum), `challenged`,
    `mismatch` (differs, but the challenge could not be raised) or `skipped` (with the reason)."""

    project_id: int
    round: int
    action: str
    detail: str = ""


class CommitteeService:
    """One committee member's loop over the market's finalized rounds."""

    def __init__(
        self,
        market: TrainingMarket,
        committee: VerifierCommittee,
        store: ContentStore,
        keys: bls.KeyPair,
        account: LocalAccount,
        exchange: Exchange,
        *,
        challenge: bool = True,
        verify: Callable[[TrainingMarket, ContentStore, int, int], VerifyReport] = verify_round,
    ):
        if committee.public_key_g2(account.address) != keys.public_g2:
            raise CommitteeError(f"{account.address} is not a committee member with this BLS key")
        self.market, self.committee, self.store = market, committee, store
        self.keys, self.account, self.exchange = keys, account, exchange
        self.challenge, self.verify = challenge, verify
        self._done: set[tuple[int, int, bytes]] = (
            set()
        )  # attested, challenged or disputed: nothing left to do
        self._signed: set[tuple[int, int, bytes]] = set()  # signed: only the quorum is awaited

    def finalized_rounds(self, from_block: int = 0) -> list[tuple[int, int]]:
        """(project, round) of every `RoundFinalized` since `from_block`, oldest first."""
        logs = self.market.client.events(
            "TrainingMarket", "RoundFinalized", from_block=from_block, address=self.market.address
        )
        return [(int(e["args"]["projectId"]), int(e["args"]["round"])) for e in logs]

    def process(self, project_id: int, round_: int) -> RoundOutcome:
        """Verify, then sign and try to attest, or challenge."""
        digest = self.committee.market_digest(self.market.address, project_id, round_)
        if digest == bytes(32):
            return RoundOutcome(project_id, round_, "skipped", "not finalized")
        if self.committee.is_attested(self.market.address, project_id, round_):
            return RoundOutcome(project_id, round_, "attested", "already attested")
        try:
            report = self.verify(self.market, self.store, project_id, round_)
        except (TrustmarketError, ValueError) as exc:
            # Inputs we cannot fetch or decode: neither sign nor accuse; try again next pass.
            return RoundOutcome(project_id, round_, "skipped", f"cannot recompute: {exc}")
        if not report.match:
            return self._dispute(project_id, round_, report)
        mine = sign_round(self.keys, self.account.address, self.market.address, project_id, round_, digest)
        self.exchange.put(mine)
        return self._try_attest(project_id, round_)

    def _dispute(self, project_id: int, round_: int, report: VerifyReport) -> RoundOutcome:
        why = "; ".join(report.mismatches) or "digest differs"
        if not self.challenge:
            return RoundOutcome(project_id, round_, "mismatch", why)
        bond = self.market.project(project_id).challenge_bond
        try:
            self.market.challenge(self.account, project_id, round_, bond)
        except (
            ChainError
        ) as exc:  # window closed, challenges disabled, already challenged: say so, never sign
            return RoundOutcome(project_id, round_, "mismatch", f"{why}; challenge not raised: {exc}")
        return RoundOutcome(project_id, round_, "challenged", why)

    def _try_attest(self, project_id: int, round_: int) -> RoundOutcome:
        signatures = self.exchange.collect(self.market.address, project_id, round_)
        try:
            attestation, rejected = aggregate(self.committee, signatures)
        except EmptyCommittee as exc:
            return RoundOutcome(project_id, round_, "unattestable", str(exc))
        except CommitteeError as exc:
            return RoundOutcome(project_id, round_, "signed", str(exc))
        for verifier, why in rejected.items():
            log.warning("project=%s round=%s left out %s: %s", project_id, round_, verifier, why)
        try:
            result = submit(self.committee, self.account, attestation)
        except VerifierCommittee.errors.AlreadyAttested:
            return RoundOutcome(project_id, round_, "attested", "attested by another member")
        return RoundOutcome(
            project_id, round_, "attested", f"{len(attestation.signers)} signers, block {result.block}"
        )

    def run_once(self, from_block: int = 0) -> list[RoundOutcome]:
        """One pass over finalized rounds not settled yet (attested, challenged or disputed)."""
        outcomes = []
        for project_id, round_ in self.finalized_rounds(from_block):
            digest = self.committee.market_digest(self.market.address, project_id, round_)
            key = (project_id, round_, digest)
            if key in self._done:
                continue
            # Recomputing is the expensive part: a round already signed only waits for the quorum.
            outcome = (
                self._try_attest(project_id, round_)
                if key in self._signed
                else self.process(project_id, round_)
            )
            log.info("project=%s round=%s %s %s", project_id, round_, outcome.action, outcome.detail)
            if outcome.action in {"attested", "challenged", "mismatch", "unattestable"}:
                self._done.add(key)
            elif outcome.action == "signed":
                self._signed.add(key)
            outcomes.append(outcome)
        return outcomes

    def run(
        self,
        *,
        poll: float = 5.0,
        max_poll: float = 60.0,
        from_block: int = 0,
        until: Callable[[], bool] = lambda: False,
        on_outcome: Callable[[RoundOutcome], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """Poll until `until()` is true. Each round's outcome is reported once, when it changes (a round waiting
        for its quorum is news once, not every pass); while nothing changes the pause doubles up to `max_poll`. A
        node or exchange that is down is logged once per distinct error and retried, never fatal."""
        reported: dict[tuple[int, int], tuple[str, str]] = {}
        last_error = None
        delay = poll
        while not until():
            changed = False
            try:
                for outcome in self.run_once(from_block):
                    key, seen = (outcome.project_id, outcome.round), (outcome.action, outcome.detail)
                    if reported.get(key) == seen:
                        continue
                    reported[key] = seen
                    changed = True
                    if on_outcome is not None:
                        on_outcome(outcome)
                last_error = None
            except ChainError as exc:
                if str(exc) != last_error:
                    log.warning("waiting for the chain or the exchange (retrying): %s", exc)
                    last_error = str(exc)
            delay = poll if changed else min(delay * 2, max(max_poll, poll))
            sleep(delay)
