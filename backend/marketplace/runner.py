"""The round runner: from a sealed round's reveals to a finalized round.

A round is aggregated once its commits have closed and every committer revealed (or its reveal window is over),
and its validation shard is revealed (`finalize_blocker`). For a project and round the runner reads the revealed
updates from `UpdateRevealed` events, fetches each by CID into a file of the round's spool folder (once,
streamed) and checks the sha256 the trainer committed to, checks the file's header against the manifest's model
spec and metadata, scores the round on the round's own validation shard (`validation.round_validation`), runs
the deterministic pipeline (`aggregator.pipeline.run_round`) on the files as row sources read a chunk at a time
(a round may exceed memory), stores the new model and the round report, and calls `finalizeRound`. The spool
folder is removed when the round's computation ends. A trainer whose update is missing, corrupt or malformed is
flagged with the reason and scores 0; an update that names another trainer than its revealer is a copy, and only
the copier is flagged (`copied_update`); the round still finalizes. A store that is down stops the round
instead: a flag would then blame the trainer for the store's outage, and the verifier could not reproduce it.
"""

from __future__ import annotations

import importlib.metadata
import logging
import platform
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from eth_account.signers.local import LocalAccount

from aggregator.contribution import ContributionConfig
from aggregator.engine import LOCAL, Engine
from aggregator.errors import InsufficientUpdates, InvalidUpdate
from aggregator.evaluation import Evaluator
from aggregator.history import history_from_report
from aggregator.hyperparams import HyperParams
from aggregator.models import BuiltModel
from aggregator.outliers import OutlierConfig
from aggregator.pipeline import RoundInputs, RoundOutcome, run_round
from aggregator.rows import SafetensorsRow, read_layout
from aggregator.training import Recipe
from backend.chain.training_market import (
    ProjectInfo,
    ProjectStatus,
    Reveal,
    RoundResult,
    TrainingMarket,
    finalize_blocker,
)
from backend.marketplace.errors import MarketplaceError, RoundNotReady
from backend.marketplace.manifest import ContentRef, ProjectManifest
from backend.marketplace.models import build_project_model
from backend.marketplace.publish import initial_hyperparams, load_manifest, load_model, load_validation
from backend.marketplace.rounds import round_start
from backend.marketplace.validation import revealed_shard
from backend.storage import (
    CodecError,
    ContentNotFound,
    ContentStore,
    CorruptedBlock,
    IntegrityError,
    StorageError,
    StoreUnavailable,
    fetch_verified_file,
)
from backend.storage.cids import parse_cid
from backend.storage.codec import META_BASE_MODEL, META_PROJECT, META_ROUND, META_TRAINER

__all__ = ["FinalizedRound", "ProjectContext", "RoundRunner", "round_result"]

log = logging.getLogger("trustmarket.aggregator")


class CopiedUpdate(MarketplaceError):
    """A revealed update that names another trainer: its revealer copied it."""


# Failures that are the submitter's doing (or at least reproducible by anyone): flag, do not abort.
_TRAINER_FAULTS = (ContentNotFound, CorruptedBlock, IntegrityError, CodecError)


@dataclass(frozen=True)
class ProjectContext:
    """What every round of a project shares, read once and verified."""

    project_id: int
    info: ProjectInfo
    manifest: ProjectManifest
    model: BuiltModel  # built from the pinned source, every pin checked


@dataclass(frozen=True)
class FinalizedRound:
    project_id: int
    round: int
    outcome: RoundOutcome
    model: ContentRef
    report: ContentRef
    transaction: str | None = None
    inputs: dict[str, Any] = field(default_factory=dict)


def _config(cls, values: dict[str, Any], what: str):
    """A config dataclass from the manifest's section, with a clear error for unknown or bad settings."""
    try:
        return cls(**values)
    except TypeError as exc:
        raise MarketplaceError(f"manifest {what}: {exc}") from None


def default_cache_dir() -> Path:
    """Where unpacked model content (hf folders) is kept: `$TRUSTMARKET_HOME/models`."""
    from backend.settings import Settings

    return Settings().home / "models"


def _versions() -> dict[str, str]:
    versions = {"python": platform.python_version(), "torch": torch.__version__}
    for dist in ("trustmarket", "numpy", "safetensors"):
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:  # pragma: no cover - always installed in practice
            versions[dist] = "unknown"
    return versions


def round_result(outcome: RoundOutcome, model_cid: str, report_cid: str) -> RoundResult:
    """What `finalizeRound` takes for `outcome`: trainers and flags sorted by address as the contract requires,
    the model and report named by the given CIDs and the outcome's own hashes."""
    trainers = sorted(outcome.scores_fixed, key=lambda a: int(a, 16))
    return RoundResult(
        model_cid=model_cid,
        model_sha256=outcome.model_sha256,
        trainers=trainers,
        scores=[outcome.scores_fixed[t] for t in trainers],
        flagged=sorted(outcome.flagged, key=lambda a: int(a, 16)),
        report_cid=report_cid,
        report_sha256=outcome.report_sha256,
    )


class RoundRunner:
    """Computes rounds for the projects of one `TrainingMarket`; finalizes them when given the aggregator's key.

    `engine` runs the round's passes (this process by default; `aggregator.ray_engine.RayEngine` for a
    cluster): it never changes a result. `spool` is the folder under which each round fetches its update files
    (the system's temporary folder by default); on a Ray cluster every node must see it. `cache_dir` keeps
    unpacked model content (hf folders; `$TRUSTMARKET_HOME/models` by default).
    """

    def __init__(
        self,
        market: TrainingMarket,
        store: ContentStore,
        account: LocalAccount | None = None,
        *,
        engine: Engine | None = None,
        spool: Path | None = None,
        cache_dir: Path | None = None,
    ):
        self.market = market
        self.store = store
        self.account = account
        self.engine = engine or LOCAL
        self.spool = spool
        self.cache_dir = cache_dir or default_cache_dir()
        self._contexts: dict[int, ProjectContext] = {}

    # -- inputs -----------------------------------------------------------------------------------------------

    def context(self, project_id: int) -> ProjectContext:
        if project_id not in self._contexts:
            info = self.market.project(project_id)
            manifest = load_manifest(self.store, ContentRef(cid=info.config_cid, sha256=info.config_sha256))
            if manifest.hyperparams.get("optimizer", "sgd") != "sgd":
                # FedAdam's moment tensors would have to travel between rounds beside the report.
                raise MarketplaceError("the round runner supports the 'sgd' server optimizer only")
            model = build_project_model(self.store, manifest, self.cache_dir)
            self._contexts[project_id] = ProjectContext(project_id, info, manifest, model)
        return self._contexts[project_id]

    def _open_update(
        self,
        ctx: ProjectContext,
        round_: int,
        base: ContentRef,
        revealed: Reveal,
        path: Path,
    ) -> SafetensorsRow:
        """The update `revealed` names, fetched into `path` and checked (hash, header, metadata), as a row
        source; its values are read, and checked, by the pipeline's passes. Raises `CopiedUpdate` for an update
        that names another trainer than its revealer."""
        cid, sha256 = revealed.cid, revealed.sha256
        try:
            parse_cid(cid)
        except StorageError as exc:
            # The contract takes any short string as a CID: one that no store can parse is the submitter's fault,
            # and must not stop the round for everyone else.
            raise ContentNotFound(cid, f"unusable CID: {exc}") from None
        fetch_verified_file(self.store, cid, sha256, path)
        spec = ctx.manifest.tensor_spec()
        try:
            layout, meta = read_layout(path)
        except InvalidUpdate as exc:
            raise CodecError(str(exc)) from None
        spec.check_layout(layout)
        # An update made for another project, round or base model is a replay, not a contribution.
        expected = {META_PROJECT: str(ctx.project_id), META_ROUND: str(round_), META_BASE_MODEL: base.cid}
        for key, want in expected.items():
            if meta.get(key) != want:
                raise CodecError(f"update metadata {key}={meta.get(key)!r}, expected {want!r}")
        # The update names its trainer: anyone else revealing it copied it (commit-reveal keeps updates sealed
        # until the commits close, so only a copy made off chain, or with the author's help, gets this far).
        named = str(meta.get(META_TRAINER, "")).lower()
        if named != revealed.trainer.lower():
            raise CopiedUpdate(
                f"the update names {named or 'no trainer'}, but {revealed.trainer} revealed it"
            )
        try:
            return SafetensorsRow.open(path, list(spec))
        except InvalidUpdate as exc:
            raise CodecError(str(exc)) from None

    @contextmanager
    def round_inputs(self, project_id: int, round_: int) -> Iterator[RoundInputs]:
        """The round's deterministic inputs, everything verified against the chain, with the updates as files
        in a spool folder that exists until the block ends."""
        if self.spool is not None:
            self.spool.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=f"round-{project_id}-{round_}-", dir=self.spool) as folder:
            inputs = self._inputs(project_id, round_, Path(folder))
            try:
                yield inputs
            finally:
                for row in inputs.updates.values():
                    row.close()

    def _inputs(self, project_id: int, round_: int, folder: Path) -> RoundInputs:
        ctx = self.context(project_id)
        # Round r is scored on its own shard, revealed when its commits closed (RoundNotReady until then).
        shard = revealed_shard(self.market, project_id, round_)
        start = round_start(self.market, self.store, ctx.info, round_)
        base, previous_report = start.model, start.previous_report
        global_state = load_model(self.store, base, ctx.manifest)
        updates: dict[str, Any] = {}
        invalid: dict[str, str] = {}
        refused: dict[str, tuple[str, str]] = {}
        submitted: dict[str, dict[str, str]] = {}
        order: list[str] = []  # chain order: among exact copies, the first submitted is the original
        for k, sub in enumerate(self.market.submissions(project_id, round_)):
            order.append(sub.trainer)
            submitted[sub.trainer] = {"cid": sub.cid, "sha256": sub.sha256}
            try:
                path = folder / f"update-{k}.safetensors"
                updates[sub.trainer] = self._open_update(ctx, round_, base, sub, path)
            except StoreUnavailable:
                raise
            except CopiedUpdate as exc:
                refused[sub.trainer] = ("copied_update", str(exc))
            except _TRAINER_FAULTS as exc:
                invalid[sub.trainer] = f"{type(exc).__name__}: {exc}"
        manifest = ctx.manifest
        hyper = initial_hyperparams(manifest)
        contribution = _config(
            ContributionConfig, {"seed": manifest.seed, **manifest.contribution}, "contribution"
        )
        history = {}
        if previous_report is not None:
            hyper = HyperParams.from_report(previous_report["hyperparams"]["next"])
            history = history_from_report(previous_report)
        evaluator = Evaluator(ctx.model, manifest.task, load_validation(self.store, manifest, shard))
        return RoundInputs(
            evaluator=evaluator,
            global_state=global_state,
            updates=updates,
            invalid=invalid,
            refused=refused,
            rule=manifest.rule,
            rule_params=manifest.rule_params,
            defenses=manifest.defenses,
            # FLTrust trains the owner's reference update the way the project's trainers train.
            recipe=Recipe.from_dict(manifest.recipe),
            submission_order=order,
            outliers=_config(OutlierConfig, manifest.outliers, "outliers"),
            # A fresh, reproducible Monte Carlo seed per round.
            contribution=replace(contribution, seed=contribution.seed + round_),
            hyperparams=hyper,
            history=history,
            round_index=round_,
            context={
                "project": project_id,
                "chain_id": self.market.client.chain_id,
                "market": self.market.address,
                "global_model": base.model_dump(),
                "validation": shard.model_dump(),
                "submissions": submitted,
                "versions": _versions(),
            },
        )

    def compute(self, project_id: int, round_: int) -> tuple[RoundInputs, RoundOutcome]:
        """The round's inputs and outcome (the inputs' update files are gone by then)."""
        with self.round_inputs(project_id, round_) as inputs:
            return inputs, run_round(inputs, self.engine)

    # -- finalizing -------------------------------------------------------------------------------------------

    def blocker(self, info: ProjectInfo) -> str | None:
        """Why the open round of `info` cannot be finalized now (the contract's rule), or None."""
        revealed = False
        if info.status is ProjectStatus.ACTIVE and info.current_round < info.rounds:
            revealed = int(self.market.round(info.project_id, info.current_round).validation_sha256, 16) != 0
        return finalize_blocker(info, self.market.client.timestamp(), validation_revealed=revealed)

    def ready(self, project_id: int) -> int | None:
        """The open round if it can be finalized now: its commits have closed and every committer revealed (or
        its reveal window is over), its validation shard is revealed, and the aggregator's deadline has not
        passed (after it the contract only allows `cancel`)."""
        info = self.market.project(project_id)
        if self.blocker(info) is not None:
            return None
        return info.current_round

    def finalize(self, project_id: int, round_: int) -> FinalizedRound:
        """Compute the round, store model and report, post the result on chain."""
        if self.account is None:
            raise MarketplaceError("finalizing needs the aggregator's key")
        info = self.market.project(project_id)
        if info.aggregator.lower() != self.account.address.lower():
            raise MarketplaceError(f"{self.account.address} is not the aggregator of project {project_id}")
        if round_ != info.current_round:
            raise RoundNotReady(
                f"project {project_id}: round {round_} is not the open round ({info.current_round})"
            )
        # Checked before any work: the contract would revert only after the model and report were stored.
        reason = self.blocker(info)
        if reason is not None:
            raise RoundNotReady(f"project {project_id} round {round_}: {reason}")
        inputs, outcome = self.compute(project_id, round_)
        model = ContentRef(cid=self.store.put(outcome.model_bytes), sha256=outcome.model_sha256)
        report = ContentRef(cid=self.store.put(outcome.report_bytes), sha256=outcome.report_sha256)
        result = round_result(outcome, model.cid, report.cid)
        receipt = self.market.finalize_round(self.account, project_id, round_, result)
        log.info("finalized project=%s round=%s flagged=%d", project_id, round_, len(outcome.flagged))
        return FinalizedRound(
            project_id,
            round_,
            outcome,
            model,
            report,
            receipt["transactionHash"].to_0x_hex(),
            dict(inputs.context),
        )

    def watch(
        self,
        project_ids: Iterable[int],
        *,
        poll: float = 2.0,
        until: Callable[[], bool] = lambda: False,
        on_finalized: Callable[[FinalizedRound], None] | None = None,
    ) -> None:
        """Finalize rounds as they become ready, until `until()` is true or every project has ended."""
        pending = set(project_ids)
        while pending and not until():
            for project_id in sorted(pending):
                info = self.market.project(project_id)
                if info.status is not ProjectStatus.ACTIVE:
                    pending.discard(project_id)
                    continue
                if self.market.client.timestamp() > info.aggregation_deadline:
                    # Nobody can finalize this round any more; waiting for it would never end.
                    log.warning("project=%s round=%s missed its deadline", project_id, info.current_round)
                    pending.discard(project_id)
                    continue
                round_ = self.ready(project_id)
                if round_ is not None:
                    try:
                        done = self.finalize(project_id, round_)
                    except StorageError as exc:  # the store may come back: try again next poll
                        log.warning("project=%s round=%s not finalized: %s", project_id, round_, exc)
                        continue
                    except InsufficientUpdates as exc:
                        # The round is closed with too few usable updates: it ends by the liveness rule
                        # (anyone may cancel past the deadline), and must not stop the other projects.
                        log.warning("project=%s round=%s cannot be aggregated: %s", project_id, round_, exc)
                        pending.discard(project_id)
                        continue
                    if on_finalized is not None:
                        on_finalized(done)
            time.sleep(poll)
