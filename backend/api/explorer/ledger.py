"""The explorer's read model of the training market: projects and rounds from the contract (state through the
typed facade, history from its events) joined with their manifests and round reports from the store.

One `Ledger` serves every page of one process. A page reads at the block its request is pinned to (the API's
`BlockCachedClient`: one head lookup per request, every contract read cached by that block's hash); what the
ledger derives from those reads (joined with manifests and reports) is remembered for that block (`BlockMemo`),
so a page costs the node nothing more until the next block, however many people look; events are indexed
incrementally (`EventIndex`). A new block re-reads only what time can change (claims open, a round final): the
storage views (projects, rounds, trainers) are kept until the market or the committee emits an event, since every
state change of our contracts emits one. Amounts stay exact wei ints; the templates format them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

from backend.api.explorer.index import BlockMemo, ChainEvent, EventIndex, sync_together
from backend.api.explorer.reports import ContentCache, Fetched, RoundReport, defense_names, parse_report
from backend.chain.training_market import ProjectInfo, ProjectStatus, RoundInfo, TrainingMarket
from backend.chain.verifier_committee import VerifierCommittee
from backend.storage import ContentStore

__all__ = ["Attestation", "Head", "Ledger", "ProjectView", "RoundRow", "TrainerStanding", "UnknownEntity"]


class UnknownEntity(LookupError):
    """A project, round, trainer or source the chain does not know (the page answers 404)."""


@dataclass(frozen=True)
class Head:
    number: int
    timestamp: int
    hash: str | None = None

    @property
    def key(self) -> int | str:
        """What names this block for the memo: its hash where known (a reorg at the same height is another)."""
        return self.hash or self.number


@dataclass(frozen=True)
class Attestation:
    """A quorum attestation of the committee (`RoundAttested`)."""

    epoch: int
    signers: int
    signed_stake: int
    total_stake: int
    block: int
    transaction: str


@dataclass(frozen=True)
class RoundRow:
    """A round of a project as the chain and its report tell it."""

    project_id: int
    round: int
    state: str  # open | revealing | closed | missed | finalized | challenged | reversed | pending | cancelled
    opened_at: int
    finalized_at: int
    window_end: int | None  # the open round's submission (sealed rounds: commit) window
    reveal_end: int | None  # sealed rounds: the end of the reveal window that follows it
    aggregator_deadline: int | None
    challenge_ends: int | None  # finalized_at + challenge window, when challenges are enabled
    challenge: str
    final: bool
    attestation: Attestation | None
    submissions: int
    flagged: int
    round_pool: int
    allocated: int | None
    dust: int | None
    info: RoundInfo | None
    report: RoundReport | None = None
    report_error: str | None = None
    commits: int = 0  # sealed rounds: commitments in (submissions counts the reveals)
    validation: ChainEvent | None = (
        None  # sealed rounds: the revealed validation shard (`ValidationRevealed`)
    )

    @property
    def finalized(self) -> bool:
        return bool(self.finalized_at)

    def metric(self, name: str) -> float | None:
        return None if self.report is None else self.report.metrics.get(name)


@dataclass(frozen=True)
class TrainerStanding:
    """A trainer's standing in one project: the contract's record, each round's credited share, its claim."""

    address: str
    stake: int
    reward: int
    submissions: int
    flags: int
    claimed: bool
    shares: dict[int, int]  # round -> wei credited
    claimed_amount: int | None = None
    slashed: int | None = None


@dataclass
class ProjectView:
    info: ProjectInfo
    manifest: Fetched
    rounds: list[RoundRow]
    trainers: list[TrainerStanding]
    committee: str | None
    claims_open: bool
    owner_claimable: int
    paid_out: int
    burned: int
    created_block: int | None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def manifest_body(self) -> dict[str, Any]:
        return self.manifest.document if self.manifest.ok and isinstance(self.manifest.document, dict) else {}

    @property
    def model(self) -> str | None:
        """The model's name, with its source when it is not built in ("hf:my-bert"); schema 1 manifests held a
        bare name, schema 2 an object (source, name, pins)."""
        model = self.manifest_body.get("model")
        if isinstance(model, dict) and isinstance(model.get("name"), str):
            source = model.get("source")
            return model["name"] if source in (None, "builtin") else f"{source}:{model['name']}"
        return model if isinstance(model, str) else None

    @property
    def task(self) -> str | None:
        """The manifest's task (a name or `{"name": ...}`); schema 1 manifests have none: their models are
        classifiers scored by accuracy and cross-entropy."""
        task = self.manifest_body.get("task")
        if isinstance(task, dict):
            task = task.get("name") or task.get("kind")
        if isinstance(task, str):
            return task
        return "classification" if self.model else None

    @property
    def metric_name(self) -> str:
        """The metric the rounds are judged by: the newest report's, else the task's (R-squared for regression)."""
        for row in reversed(self.rounds):
            if row.report is not None and row.report.metric_name:
                return row.report.metric_name
        return "r2" if self.task == "regression" else "accuracy"

    @property
    def loss_name(self) -> str:
        for row in reversed(self.rounds):
            if row.report is not None and row.report.loss_name:
                return row.report.loss_name
        return "mse" if self.task == "regression" else "cross_entropy"

    @property
    def rule(self) -> str | None:
        rule = self.manifest_body.get("rule")
        return rule if isinstance(rule, str) else None

    @property
    def rule_params(self) -> dict[str, Any]:
        params = self.manifest_body.get("rule_params")
        return params if isinstance(params, dict) else {}

    @property
    def outlier_config(self) -> dict[str, Any]:
        """The effective outlier settings: the newest report's (defaults filled in), else the manifest's."""
        for row in reversed(self.rounds):
            if row.report is not None and row.report.outlier_config:
                return row.report.outlier_config
        outliers = self.manifest_body.get("outliers")
        return outliers if isinstance(outliers, dict) else {}

    @property
    def defense_steps(self) -> tuple[str, ...]:
        """The defenses run before the rule: the newest report's, else the manifest's (names, in order)."""
        for row in reversed(self.rounds):
            if row.report is not None and row.report.defenses:
                return row.report.defenses
        return defense_names(self.manifest_body.get("defenses"))

    @property
    def contribution_method(self) -> str | None:
        for row in reversed(self.rounds):
            if row.report is not None and row.report.contribution_method:
                return row.report.contribution_method
        contribution = self.manifest_body.get("contribution")
        method = contribution.get("method") if isinstance(contribution, dict) else None
        return method if isinstance(method, str) else None

    @property
    def allocated(self) -> int:
        return sum(r.allocated or 0 for r in self.rounds if r.state != "reversed")

    @property
    def dust(self) -> int:
        return sum(r.dust or 0 for r in self.rounds if r.state != "reversed")


_SUBMITTED = ("UpdateSubmitted", "UpdateRevealed")


def round_pool(info: ProjectInfo, round_: int) -> int:
    """The wei a round not finalized yet will distribute: the pool split evenly, the remainder on the last round.
    A finalized round's pool is read from its `RoundFinalized` event instead (allocated + dust)."""
    per_round = info.pool // info.rounds
    return per_round + info.pool % info.rounds if round_ + 1 == info.rounds else per_round


class Ledger:
    """Reads for the explorer's pages; see the module docstring."""

    def __init__(
        self,
        market: TrainingMarket,
        store: ContentStore,
        *,
        committee: VerifierCommittee | None = None,
        head_ttl_s: float = 0.5,
        monotonic: Callable[[], float] = time.monotonic,
    ):
        self.market, self.store, self.committee = market, store, committee
        self.client = market.client
        first = self.client.deployments.first_block if self.client.deployments else 0
        self.events = EventIndex(self.client, "TrainingMarket", market.address, first)
        self.committee_events = (
            EventIndex(self.client, "VerifierCommittee", committee.address, first) if committee else None
        )
        self.content = ContentCache(store)
        self.followed: list[EventIndex] = []
        self.memo = BlockMemo()
        self.state = BlockMemo()  # storage views, keyed by the event indexes' versions instead of a block
        self._head_ttl, self._monotonic = head_ttl_s, monotonic
        self._head: tuple[float, Head] | None = None
        self._head_lock = threading.Lock()
        self._block_times: dict[int, int] = {}
        # A share is written once, when its round is finalized (a reversal subtracts it at claim time instead):
        # kept for good, so a new block does not re-read every trainer of every round.
        self._shares: dict[tuple[int, int, str], int] = {}
        self._final: set[tuple[int, int, int]] = set()

    # -- the chain's head -------------------------------------------------------------------------------------

    def head(self) -> Head:
        """The block this page reads at, with every index synced to it: the request's pinned block where the
        client pins (the API's `BlockCachedClient`), else the newest block, asked of the node at most every
        `head_ttl_s` (the CLI's plain client)."""
        pinned = getattr(self.client, "pinned_head", None)
        if pinned is not None:
            block = pinned()
            head = Head(block.number, block.timestamp, block.hash)
        else:
            with self._head_lock:
                now = self._monotonic()
                if self._head is None or now >= self._head[0]:
                    number = self.client.block_number()
                    self._head = (now + self._head_ttl, Head(number, self.client.timestamp(number)))
                head = self._head[1]
        sync_together(self.indexes, head.number)  # one eth_getLogs for every contract the pages show
        return head

    @property
    def indexes(self) -> list[EventIndex]:
        return [self.events, *([self.committee_events] if self.committee_events else []), *self.followed]

    def follow(self, index: EventIndex) -> None:
        """Sync `index` (another contract's, e.g. the SourceRegistry's) with the market's, in the same request."""
        self.followed.append(index)

    def _memo(self, key: Any, thunk: Callable[[], Any]) -> Any:
        return self.memo.get(self.head().key, key, thunk)

    def _stored(self, key: Any, thunk: Callable[[], Any]) -> Any:
        """A storage view, read again only after the contracts emitted an event (or the chain was reset)."""
        number = self.head().number  # syncs the indexes
        committee = self.committee_events.version_at(number) if self.committee_events is not None else None
        return self.state.get((self.events.version_at(number), committee), key, thunk)

    # -- projects ---------------------------------------------------------------------------------------------

    def project_count(self) -> int:
        return self._stored("count", self.market.project_count)

    def info(self, project_id: int) -> ProjectInfo:
        def read() -> ProjectInfo:
            if not 1 <= project_id <= self.project_count():
                raise UnknownEntity(f"no project {project_id} (projects are 1..{self.project_count()})")
            try:
                return self.market.project(project_id)
            except TrainingMarket.errors.UnknownProject:
                raise UnknownEntity(f"no project {project_id}") from None

        return self._stored(("info", project_id), read)

    def project_ids(self) -> list[int]:
        return list(range(1, self.project_count() + 1))

    def manifest(self, info: ProjectInfo) -> Fetched:
        return self.content.json(info.config_cid, info.config_sha256)

    def project(self, project_id: int) -> ProjectView:
        return self._memo(("project", project_id), lambda: self._project(project_id))

    def _project(self, project_id: int) -> ProjectView:
        info = self.info(project_id)
        rounds = self.rounds(project_id)
        owner = info.owner
        claims = self.events.events("Claimed", projectId=project_id)
        claimed_by = {e.args["account"].lower(): e for e in claims}
        trainers = []
        for event in self.events.events("TrainerRegistered", projectId=project_id):
            address = event.args["trainer"]
            record = self._stored(
                ("trainer", project_id, address), partial(self.market.trainer, project_id, address)
            )
            shares = {r.round: self.share(project_id, r.round, address) for r in rounds if r.finalized}
            claim = claimed_by.get(address.lower())
            trainers.append(
                TrainerStanding(
                    address=address,
                    stake=record.stake,
                    reward=record.reward,
                    submissions=record.submissions,
                    flags=record.flags,
                    claimed=record.claimed,
                    shares=shares,
                    claimed_amount=int(claim.args["amount"]) if claim else None,
                    slashed=int(claim.args["slashed"]) if claim else None,
                )
            )
        created = self.events.events("ProjectCreated", projectId=project_id)
        open_claims = self.market.claims_open(project_id)
        return ProjectView(
            info=info,
            manifest=self.manifest(info),
            rounds=rounds,
            trainers=trainers,
            committee=self.committee.address if self.committee else None,
            claims_open=open_claims,
            owner_claimable=self.market.claimable(project_id, owner) if open_claims else 0,
            paid_out=sum(int(e.args["amount"]) for e in claims),
            burned=sum(int(e.args["amount"]) for e in self.events.events("Burned", projectId=project_id)),
            created_block=created[0].block if created else None,
            extra={"owner_claim": claimed_by.get(owner.lower())},
        )

    # -- rounds -----------------------------------------------------------------------------------------------

    def rounds(self, project_id: int) -> list[RoundRow]:
        return self._memo(("rounds", project_id), lambda: self._rounds(project_id))

    def round_row(self, project_id: int, round_: int) -> RoundRow:
        info = self.info(project_id)
        if not 0 <= round_ < info.rounds:
            raise UnknownEntity(f"project {project_id} has rounds 0..{info.rounds - 1}, not {round_}")
        return self.rounds(project_id)[round_]

    def _rounds(self, project_id: int) -> list[RoundRow]:
        info = self.info(project_id)
        finalized = {
            int(e.args["round"]): e for e in self.events.events("RoundFinalized", projectId=project_id)
        }
        submissions: dict[int, int] = {}
        for event in self._submitted(projectId=project_id):
            submissions[int(event.args["round"])] = submissions.get(int(event.args["round"]), 0) + 1
        commits: dict[int, int] = {}
        for event in self.events.events("UpdateCommitted", projectId=project_id):
            commits[int(event.args["round"])] = commits.get(int(event.args["round"]), 0) + 1
        shards = {
            int(e.args["round"]): e for e in self.events.events("ValidationRevealed", projectId=project_id)
        }
        attestations = self._attestations(project_id)
        now = self.head().timestamp
        rows = []
        for r in range(info.rounds):
            found = finalized.get(r)
            if found is None:
                row = self._unfinalized(info, r, now, submissions.get(r, 0), round_pool(info, r))
                rows.append(replace(row, commits=commits.get(r, 0), validation=shards.get(r)))
                continue
            event = found
            pool = int(event.args["allocated"]) + int(event.args["dust"])
            rd = self._stored(("round", project_id, r), partial(self.market.round, project_id, r))
            fetched = self.content.json(rd.report_cid, rd.report_sha256)
            report = parse_report(fetched.document) if fetched.ok else None
            state = {"Open": "challenged", "Upheld": "reversed"}.get(rd.challenge.label, "finalized")
            rows.append(
                RoundRow(
                    project_id=project_id,
                    round=r,
                    state=state,
                    opened_at=rd.opened_at,
                    finalized_at=rd.finalized_at,
                    window_end=None,
                    reveal_end=None,
                    aggregator_deadline=None,
                    challenge_ends=rd.finalized_at + info.challenge_window if info.challenge_window else None,
                    challenge=rd.challenge.label,
                    final=self.is_round_final(project_id, r),
                    attestation=attestations.get(r),
                    submissions=rd.submitters,
                    flagged=rd.flagged_count,
                    round_pool=pool,
                    allocated=int(event.args["allocated"]),
                    dust=int(event.args["dust"]),
                    info=rd,
                    report=report,
                    report_error=fetched.error,
                    commits=commits.get(r, 0),
                    validation=shards.get(r),
                )
            )
        return rows

    def _unfinalized(self, info: ProjectInfo, r: int, now: int, submitted: int, pool: int) -> RoundRow:
        state, window_end, reveal_end, deadline, opened = "pending", None, None, None, 0
        if info.status is ProjectStatus.ACTIVE and r == info.current_round:
            opened = info.round_opened_at
            window_end = info.round_opened_at + info.round_duration
            # Sealed rounds (#12) add a reveal window between the commits and the aggregator's window.
            reveal = int(getattr(info, "reveal_window", 0) or 0)
            reveal_end = window_end + reveal if reveal else None
            deadline = window_end + reveal + info.aggregation_window
            if now <= window_end:
                state = "open"
            elif reveal_end is not None and now <= reveal_end:
                state = "revealing"
            else:
                state = "closed" if now <= deadline else "missed"
        elif info.status is ProjectStatus.CANCELLED:
            state = "cancelled"
        return RoundRow(
            project_id=info.project_id,
            round=r,
            state=state,
            opened_at=opened,
            finalized_at=0,
            window_end=window_end,
            reveal_end=reveal_end,
            aggregator_deadline=deadline,
            challenge_ends=None,
            challenge="None",
            final=False,
            attestation=None,
            submissions=submitted,
            flagged=0,
            round_pool=pool,
            allocated=None,
            dust=None,
            info=None,
        )

    def _attestations(self, project_id: int) -> dict[int, Attestation]:
        if self.committee_events is None:
            return {}
        found = {}
        for event in self.committee_events.events(
            "RoundAttested", market=self.market.address, projectId=project_id
        ):
            found[int(event.args["round"])] = Attestation(
                epoch=int(event.args["epoch"]),
                signers=bin(int(event.args["signerBitmap"])).count("1"),
                # Stake before #12's weighted committee, capped weight after: the same share of the vote.
                signed_stake=int(event.args.get("signedStake", event.args.get("signedWeight", 0))),
                total_stake=int(event.args.get("totalStake", event.args.get("totalWeight", 0))),
                block=event.block,
                transaction=event.transaction,
            )
        return found

    def is_round_final(self, project_id: int, round_: int) -> bool:
        """Whether the round can no longer be challenged: a question of time, asked each block until it is, then
        kept (until the chain is reset)."""
        key = (self.events.version[0], project_id, round_)
        if key not in self._final and self.market.is_round_final(project_id, round_):
            self._final.add(key)
        return key in self._final

    def share(self, project_id: int, round_: int, trainer: str) -> int:
        """The wei credited to `trainer` for a finalized round (the contract's `Submission.share`)."""
        key = (project_id, round_, trainer.lower())
        if key not in self._shares:
            self._shares[key] = self.market.submission_entry(project_id, round_, trainer).share
        return self._shares[key]

    def _submitted(self, **match: Any) -> list[ChainEvent]:
        # An update is in when it is submitted (open rounds) or revealed (sealed rounds, #12): both carry
        # trainer, cid and sha256; a market has one kind or the other.
        return [e for name in _SUBMITTED for e in self.events.events(name, **match)]

    def submissions(self, project_id: int, round_: int) -> dict[str, ChainEvent]:
        """The round's updates by trainer (`UpdateSubmitted`, or `UpdateRevealed` in sealed rounds)."""
        return {e.args["trainer"]: e for e in self._submitted(projectId=project_id, round=round_)}

    def commitments(self, project_id: int, round_: int) -> dict[str, ChainEvent]:
        """Sealed rounds: the round's `UpdateCommitted` events by trainer (nothing identifies the update)."""
        events = self.events.events("UpdateCommitted", projectId=project_id, round=round_)
        return {e.args["trainer"]: e for e in events}

    def scored(self, project_id: int, round_: int) -> ChainEvent | None:
        """The round's `RoundScored` event: the trainers, fixed-point scores and flags posted on chain."""
        events = self.events.events("RoundScored", projectId=project_id, round=round_)
        return events[-1] if events else None

    def block_time(self, block: int) -> int:
        """A block's timestamp (blocks do not change, so these are kept)."""
        if block not in self._block_times:
            self._block_times[block] = self.client.timestamp(block)
        return self._block_times[block]
