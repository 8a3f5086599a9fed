"""The source registry evaluator's canary loop on a real chain and a real clock (`trustmarket rag canaries run`).

Each `CanaryRunner.step()`, by the chain's clock: settle (reveal and slash) every finished epoch, ask the current
epoch's canaries whose seeded moment has come through the same orchestrator the users' questions go through
(feedback judged with the gold answer, flushed with the evaluator's key), and commit the next epoch's set if it is
not committed yet (the registry refuses an epoch that has started, so a set always goes out one epoch ahead).
While an active source's record holds less than `probation_evidence` observations, that set is a probation one of
`probation_per_epoch` canaries: newcomers' votes weigh nothing, so canaries are what anchors their records (what
`rag eval`'s probation epoch measured). A set once drawn is kept as the state file holds it, restarts included.
`run()` repeats that every `poll` seconds until stopped. Everything lives in the auditor's state file, so a run can
stop at any point (cron between steps, a crash, a restart) and the next one carries on.
"""

from __future__ import annotations

import logging
import math
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from backend.chain.anvil import mine_at
from backend.chain.errors import ChainUnavailable
from backend.chain.keys import LOCAL_CHAIN_IDS
from backend.chain.source_registry import SourceRegistry, SourceStatus
from backend.settings import Settings
from rag.auditor import CanaryAuditor
from rag.errors import AuditError, RagError
from rag.orchestrator import Orchestrator

__all__ = [
    "PROBATION_EVIDENCE",
    "PROBATION_PER_EPOCH",
    "CanaryRunner",
    "StepReport",
    "canary_home",
    "state_file",
    "stop_on_signals",
]

log = logging.getLogger(__name__)

PROBATION_EVIDENCE = 10.0  # observations a record needs before its source leaves probation
PROBATION_PER_EPOCH = 10  # canaries per epoch meanwhile (`rag eval`'s probation epoch: one users' batch)


def canary_home(settings: Settings) -> Path:
    """Where the evaluator keeps its state files (one per registry and evaluator) and evidence."""
    return settings.home / "rag" / "canaries"


def state_file(settings: Settings, registry: str, evaluator: str) -> Path:
    """The state file of `evaluator`'s canary duty against `registry`."""
    return canary_home(settings) / f"{registry.lower()}-{evaluator.lower()}.json"


@dataclass
class StepReport:
    epoch: int  # the chain's epoch when the step began
    revealed: list[int] = field(default_factory=list)
    slashes: list[tuple[int, int, int]] = field(default_factory=list)  # (source id, epoch, wei burned)
    asked: list[dict] = field(default_factory=list)  # {"canary", "epoch", "tampering": [source ids]}
    committed: dict | None = None  # {"epoch", "count"} of the set committed now
    probation: list[int] = field(default_factory=list)  # active sources whose short record sized that set
    waiting: int = 0  # the current epoch's canaries not asked yet (their moment has not come)
    notices: list[str] = field(default_factory=list)
    # Why the evaluator cannot go on (the pool is used up): the step is done, then stop.
    error: str | None = None

    def to_json(self) -> dict:
        return {
            "epoch": self.epoch, "revealed": self.revealed, "asked": self.asked, "committed": self.committed,
            "probation": self.probation,
            "slashes": [{"source_id": s, "epoch": e, "burned_wei": str(b)} for s, e, b in self.slashes],
            "waiting": self.waiting, "notices": self.notices, "error": self.error,
        }  # fmt: skip


class CanaryRunner:
    """One evaluator's canary duty against one registry, step by step."""

    def __init__(
        self,
        auditor: CanaryAuditor,
        orchestrator: Orchestrator,
        per_epoch: int,
        *,
        probation_per_epoch: int = PROBATION_PER_EPOCH,
        probation_evidence: float = PROBATION_EVIDENCE,
    ):
        if per_epoch < 1:
            raise AuditError(f"--per-epoch must be at least 1, got {per_epoch}")
        if probation_per_epoch < 0:
            raise AuditError(f"--probation-per-epoch must not be negative, got {probation_per_epoch}")
        if not 0 <= probation_evidence < math.inf:  # NaN fails too
            raise AuditError(
                f"--probation-evidence must be a finite number of observations >= 0, got {probation_evidence}"
            )
        self.auditor, self.orchestrator, self.per_epoch = auditor, orchestrator, per_epoch
        self.probation_per_epoch, self.probation_evidence = probation_per_epoch, probation_evidence
        self.registry: SourceRegistry = auditor.registry
        self.genesis = self.registry.genesis()
        self.epoch_length = self.registry.epoch_length()

    def check(self) -> None:
        """Refuse to start with a key that is not the registry's evaluator, or a pool that cannot fill an epoch."""
        evaluator = self.auditor.evaluator.address
        if not self.registry.is_evaluator(evaluator):
            raise AuditError(f"{evaluator} is not an evaluator of the SourceRegistry at {self.registry.address} "
                             "(its transactions revert with AccessControlUnauthorizedAccount)")  # fmt: skip
        pending = any(not (s.revealed or s.skipped) for s in self.auditor.epochs.values())
        if self.auditor.schedule.remaining < self.per_epoch and not pending:
            raise AuditError(self._pool_message())

    def _pool_message(self) -> str:
        return (f"the canary pool has {self.auditor.schedule.remaining} unused canaries, too few for "
                f"{self.per_epoch} per epoch (each is asked once); give more canaries (the used ones are remembered)")  # fmt: skip

    def step(self) -> StepReport:
        client = self.registry.client
        if client.chain_id in LOCAL_CHAIN_IDS:
            # anvil mines only when a transaction comes, so its clock (and every epoch check the contract makes,
            # gas estimates included) stands still while idle; a real chain's blocks keep it at the wall clock.
            mine_at(client, int(time.time()))
        now = client.timestamp()
        epoch = (now - self.genesis) // self.epoch_length
        report = StepReport(epoch)
        before = {e for e, s in self.auditor.epochs.items() if s.revealed}
        report.slashes = self.auditor.settle(epoch)
        report.revealed = sorted(e for e, s in self.auditor.epochs.items() if s.revealed and e not in before)
        started = self.auditor.epochs.get(epoch)
        if started is not None and not (started.committed or started.skipped):
            self.auditor.commit(epoch)  # saved, never sent, and now too late: skipped with a notice
        self._ask(epoch, now, report)
        upcoming = self.auditor.epochs.get(epoch + 1)
        if upcoming is None and self.auditor.schedule.remaining < self.per_epoch:
            report.error = self._pool_message()  # said after settling and asking: nothing is lost
        elif upcoming is None or not (
            upcoming.committed or upcoming.skipped
        ):  # or sent by a run that stopped
            if upcoming is None:  # drawn now; a set an earlier run drew keeps its size
                report.probation = self._size(epoch + 1)
            canaries = self.auditor.commit(epoch + 1)
            if canaries:
                report.committed = {"epoch": epoch + 1, "count": len(canaries)}
        report.notices.extend(self._take_notices())
        return report

    def _size(self, epoch: int) -> list[int]:
        """Size `epoch`'s set: `probation_per_epoch` (at least `per_epoch`, at most what the pool has) while an active
        source's record holds less than `probation_evidence` observations; returns those sources."""
        short = sorted(sid for sid, r in self.registry.reliabilities().items()
                       if r.status == SourceStatus.ACTIVE and r.observations < self.probation_evidence)  # fmt: skip
        wanted = max(self.per_epoch, self.probation_per_epoch)
        if not short or wanted == self.per_epoch:
            return short
        remaining = self.auditor.schedule.remaining  # >= per_epoch here (checked before)
        if remaining < wanted:
            self.auditor.notices.append(f"probation: the canary pool has {remaining} unused canaries, "
                                        f"fewer than {wanted}: epoch {epoch} gets {remaining}")  # fmt: skip
        self.auditor.schedule.set_count(epoch, min(wanted, remaining))
        return short

    def _take_notices(self) -> list[str]:
        notices, self.auditor.notices = self.auditor.notices, []
        return notices

    def _ask(self, epoch: int, now: int, report: StepReport) -> None:
        start = self.genesis + epoch * self.epoch_length
        due = self.auditor.due(epoch, now, start, self.epoch_length)
        state = self.auditor.epochs.get(epoch)
        if state is not None and state.committed:
            report.waiting = sum(c.id not in state.asked for c in state.canaries) - len(due)
        if not due:
            return
        if not any(r.status == SourceStatus.ACTIVE for r in self.registry.reliabilities().values()):
            report.waiting += len(due)
            self.auditor.notices.append(
                f"no active sources: {len(due)} canaries of epoch {epoch} wait to be asked"
            )
            return
        for canary in due:
            query_id = f"canary-{self.registry.address[2:10].lower()}-{epoch}-{canary.id}"[:80]
            try:
                result = self.orchestrator.query(canary.question, gold=canary, query_id=query_id)
            except RagError as exc:
                # One failed query (e.g. the generator): the canary stays due, asked at the next step.
                self.auditor.notices.append(f"canary {canary.id} of epoch {epoch} not asked: {exc}")
                continue
            if result.epoch > epoch:  # the epoch ended while asking: what is left is revealed unasked
                self.auditor.notices.append(f"epoch {epoch} ended before all its canaries were asked")
                break
            caught = self.auditor.record(epoch, canary, result)
            report.asked.append({"canary": canary.id, "epoch": epoch, "tampering": caught})
        if self.orchestrator.queue is not None and report.asked:
            self.orchestrator.queue.flush()  # the judgements count in this epoch's budget

    def run(self, poll: float, stop: threading.Event, on_step: Callable[[StepReport], None]) -> None:
        """Step every `poll` seconds until `stop` is set; a chain that is down is waited for, not fatal; a pool
        that is used up ends the run (`AuditError`) once that step is reported."""
        while not stop.is_set():
            try:
                report = self.step()
            except ChainUnavailable as exc:
                log.warning("chain unavailable, retrying in %ss: %s", poll, exc)
                report = StepReport(-1, notices=[f"chain unavailable, retrying in {poll:g}s: {exc}"])
            on_step(report)
            if report.error:
                raise AuditError(report.error)
            stop.wait(poll)


@contextmanager
def stop_on_signals() -> Iterator[threading.Event]:
    """An event set by SIGINT or SIGTERM while the block runs (the step in progress finishes first)."""
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
