"""The evaluator's canary duty on chain: commit an epoch's canaries before it starts, judge, reveal after, slash.

`CanaryAuditor.commit(epoch)` draws the epoch's canaries (`rag.canaries.CanarySchedule`), commits to their bytes
with a fresh random salt (`SourceRegistry.commitCanaries`, which refuses an epoch already started) and keeps the
salt. While the epoch runs, `record` notes every source that answered a canary with a tampered copy of its
reference passage, with the signed answer as evidence. `settle(current_epoch)` reveals every finished epoch's set
(anyone can now re-judge the scores of its canary queries) and slashes each tampering source once for that
epoch: the evidence (canary, nonce, signature, the signed documents) is written as JSON to `evidence_dir` and
its sha256 goes on chain with the slash.

With a `state_path` (`CanaryAuditor.load`) everything a restarted evaluator needs lives in one JSON file, written
atomically (temp file, fsync, rename) after every step that changed it: the salts and sets, what was committed,
asked, recorded and revealed, and which slashes landed. The salt is on disk before its commitment is sent, so a
crash never leaves a commitment nobody can open; actions an earlier run may have sent without saving (a commit, a
reveal, a slash) are checked against the chain before they are sent again. The salts leave the file only in the
reveal.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from eth_account.signers.local import LocalAccount

from backend.chain.errors import ContractRevert
from backend.chain.source_registry import SourceRegistry, canary_commitment
from rag.canaries import Canary, CanarySchedule, encode_canaries, tampered
from rag.errors import AuditError, RagError
from rag.orchestrator import QueryResult

__all__ = ["ASK_SPAN", "CanaryAuditor", "EpochCanaries"]

log = logging.getLogger(__name__)

STATE_VERSION = 1
ASK_SPAN = 0.8  # canaries are asked within the first 80% of their epoch, so a late step still falls inside it


@dataclass
class EpochCanaries:
    epoch: int
    canaries: list[Canary]
    salt: bytes
    committed: bool = False
    skipped: bool = False  # the epoch started before the set went on chain: never asked, never revealed
    revealed: bool = False
    asked: set[str] = field(default_factory=set)  # canary ids
    evidence: dict[int, list[dict]] = field(default_factory=dict)  # source id -> tampered answers
    slashed: dict[int, str] = field(
        default_factory=dict
    )  # source id -> evidence sha256 (hex), or why refused

    def offset(self, canary: Canary, epoch_length: int) -> int:
        """Seconds into the epoch when `canary` is due: seeded by the secret salt, so the timing gives nothing away
        before the reveal, and a restarted evaluator asks at the same moments."""
        digest = hashlib.sha256(self.salt + canary.id.encode()).digest()
        return int.from_bytes(digest[:8], "big") % max(1, int(epoch_length * ASK_SPAN))

    def to_json(self) -> dict:
        return {
            "epoch": self.epoch, "canaries": [c.to_json() for c in self.canaries], "salt": self.salt.hex(),
            "committed": self.committed, "skipped": self.skipped, "revealed": self.revealed,
            "asked": sorted(self.asked), "evidence": {str(s): a for s, a in sorted(self.evidence.items())},
            "slashed": {str(s): d for s, d in sorted(self.slashed.items())},
        }  # fmt: skip

    @classmethod
    def from_json(cls, record: dict) -> EpochCanaries:
        canaries = [Canary(str(c["id"]), str(c["question"]), tuple(str(a) for a in c["answers"]), str(c["passage"]))
                    for c in record["canaries"]]  # fmt: skip
        salt = bytes.fromhex(record["salt"])
        if len(salt) != 32:
            raise ValueError(f"epoch {record['epoch']}: a salt of {len(salt)} bytes")
        return cls(int(record["epoch"]), canaries, salt, bool(record["committed"]), bool(record["skipped"]),
                   bool(record["revealed"]), {str(a) for a in record["asked"]},
                   {int(s): list(a) for s, a in record["evidence"].items()},
                   {int(s): str(d) for s, d in record["slashed"].items()})  # fmt: skip


class CanaryAuditor:
    def __init__(
        self,
        registry: SourceRegistry,
        evaluator: LocalAccount,
        schedule: CanarySchedule,
        *,
        evidence_dir: Path | None = None,
        state_path: Path | None = None,
    ):
        self.registry, self.evaluator, self.schedule = registry, evaluator, schedule
        self.evidence_dir, self.state_path = evidence_dir, state_path
        self.epochs: dict[int, EpochCanaries] = {}
        self.slashed: list[tuple[int, int, int]] = []  # (source id, epoch, wei burned)
        self.notices: list[str] = []  # warnings for the operator since the caller last took them

    # -- persistence ---------------------------------------------------------------------------------------------

    @classmethod
    def load(
        cls,
        state_path: Path,
        registry: SourceRegistry,
        evaluator: LocalAccount,
        schedule: CanarySchedule,
        *,
        evidence_dir: Path | None = None,
    ) -> CanaryAuditor:
        """The auditor as an earlier run left it in `state_path` (a fresh one if there is no file yet); the
        canaries that file used are retired from `schedule`. A malformed file is an error, never reset."""
        auditor = cls(registry, evaluator, schedule, evidence_dir=evidence_dir, state_path=state_path)
        if not state_path.exists():
            return auditor
        try:
            data = json.loads(state_path.read_bytes())
            if data.get("version") != STATE_VERSION:
                raise ValueError(f"version {data.get('version')!r}, expected {STATE_VERSION}")
            owners = (data["registry"].lower(), data["evaluator"].lower())
            epochs = [EpochCanaries.from_json(record) for record in data["epochs"]]
        except (OSError, UnicodeDecodeError, AttributeError, KeyError, TypeError, ValueError) as exc:
            raise AuditError(f"canary state file {state_path} is malformed ({type(exc).__name__}: {exc}); it holds "
                             "the salts of committed epochs: repair it or move it aside, nothing was changed") from None  # fmt: skip
        if owners != (registry.address.lower(), evaluator.address.lower()):
            raise AuditError(f"canary state file {state_path} belongs to registry {owners[0]} and evaluator "
                             f"{owners[1]}, not to {registry.address} and {evaluator.address}")  # fmt: skip
        for state in sorted(epochs, key=lambda s: s.epoch):
            schedule.restore(state.epoch, state.canaries)
            auditor.epochs[state.epoch] = state
        return auditor

    def save(self) -> None:
        """Write the state file atomically (nothing to do without a `state_path`)."""
        if self.state_path is None:
            return
        data = {"version": STATE_VERSION, "registry": self.registry.address, "evaluator": self.evaluator.address,
                "epochs": [s.to_json() for _, s in sorted(self.epochs.items())]}  # fmt: skip
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=self.state_path.parent, prefix=".state-", suffix=".tmp")  # mode 0600
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(json.dumps(data, indent=1, sort_keys=True).encode())
                out.flush()
                os.fsync(out.fileno())
            os.replace(temp, self.state_path)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise

    def _notice(self, message: str) -> None:
        log.warning(message)
        self.notices.append(message)

    # -- the epoch's duties --------------------------------------------------------------------------------------

    def commit(self, epoch: int) -> list[Canary]:
        """Draw and commit `epoch`'s canaries (before it starts); returns them. Idempotent per epoch; an epoch that
        has already started is skipped with a notice (returns [])."""
        state = self.epochs.get(epoch)
        if state is not None and (state.committed or state.skipped):
            return [] if state.skipped else state.canaries
        current = self.registry.current_epoch()
        if state is None:
            if epoch <= current:
                self._notice(f"epoch {epoch} has started: too late to commit its canaries, skipped")
                return []
            state = EpochCanaries(epoch, self.schedule.plan(epoch), secrets.token_bytes(32))
            self.epochs[epoch] = state
            self.save()  # the salt is on disk before its commitment is on chain
        elif self._committed_on_chain(state):  # an earlier run sent it, then stopped before saving
            state.committed = True
            self.save()
            return state.canaries
        if state.canaries and epoch <= current:
            return self._skip(state)
        if state.canaries:
            try:
                self.registry.commit_canaries(self.evaluator, epoch, state.salt, len(state.canaries),
                                              encode_canaries(state.canaries))  # fmt: skip
            except SourceRegistry.errors.EpochNotInFuture:  # the epoch began while the transaction waited
                return self._skip(state)
        state.committed = True
        self.save()
        return state.canaries

    def _skip(self, state: EpochCanaries) -> list[Canary]:
        state.skipped = True
        self.save()
        self._notice(f"epoch {state.epoch} started before its canaries were committed: skipped")
        return []

    def _committed_on_chain(self, state: EpochCanaries) -> bool:
        on_chain = self.registry.canaries(self.evaluator.address, state.epoch)
        if not any(on_chain.commitment):
            return False
        ours = canary_commitment(self.registry.client.chain_id, self.registry.address, self.evaluator.address,
                                 state.epoch, state.salt, len(state.canaries), encode_canaries(state.canaries))  # fmt: skip
        if on_chain.commitment != ours:
            raise AuditError(f"epoch {state.epoch}: {self.evaluator.address} committed other canaries than this "
                             f"state file's ({self.state_path}); is another evaluator running with this key?")  # fmt: skip
        return True

    def due(self, epoch: int, now: int, epoch_start: int, epoch_length: int) -> list[Canary]:
        """`epoch`'s committed canaries not asked yet whose seeded moment has come by chain time `now`."""
        state = self.epochs.get(epoch)
        if state is None or not state.committed or state.revealed:
            return []
        return [c for c in state.canaries
                if c.id not in state.asked and now >= epoch_start + state.offset(c, epoch_length)]  # fmt: skip

    def record(self, epoch: int, canary: Canary, result: QueryResult) -> list[int]:
        """Note the sources that served a tampered copy of `canary`'s passage; returns their ids."""
        state = self.epochs.get(epoch)
        if state is None or canary not in state.canaries:
            raise RagError(f"canary {canary.id!r} was not committed for epoch {epoch}")
        state.asked.add(canary.id)
        caught = []
        for outcome in result.sources:
            if outcome.status != "ok" or not any(tampered(d.text, canary) for d in outcome.documents):
                continue
            caught.append(outcome.source_id)
            state.evidence.setdefault(outcome.source_id, []).append({
                "canary": canary.id, "query": result.question, "epoch": result.epoch, "nonce": outcome.nonce,
                "signature": outcome.signature,
                "documents": [d.model_dump(exclude={"score", "dense", "lexical"}) for d in outcome.documents],
            })  # fmt: skip
        self.save()
        return caught

    def settle(self, current_epoch: int) -> list[tuple[int, int, int]]:
        """Reveal every committed epoch before `current_epoch` and slash its tampering sources; returns the slashes
        made now as (source id, epoch, wei burned)."""
        made = []
        for epoch in sorted(e for e, s in self.epochs.items()
                            if e < current_epoch and not s.revealed and not s.skipped):  # fmt: skip
            state = self.epochs[epoch]
            if not state.committed:  # saved but never sent, and now over
                self._skip(state)
                continue
            if state.canaries and not self.registry.canaries(self.evaluator.address, epoch).revealed:
                self.registry.reveal_canaries(
                    self.evaluator, epoch, state.salt, encode_canaries(state.canaries)
                )
            state.revealed = True
            self.save()
            for source_id, answers in sorted(state.evidence.items()):
                if source_id not in state.slashed:
                    made.extend(self._slash(state, source_id, answers))
        self.slashed.extend(made)
        return made

    def _slash(self, state: EpochCanaries, source_id: int, answers: list[dict]) -> list[tuple[int, int, int]]:
        failures = len({a["canary"] for a in answers})
        digest = self._evidence(state.epoch, source_id, answers)
        try:
            burned = self.registry.slash(self.evaluator, source_id, state.epoch, failures, digest)
        except SourceRegistry.errors.AlreadySlashed:  # an earlier run's slash landed before it saved
            state.slashed[source_id] = digest.hex()
            self.save()
            return []
        except ContractRevert as exc:
            state.slashed[source_id] = f"refused: {exc}"
            self.save()
            self._notice(f"slashing source {source_id} for epoch {state.epoch} was refused: {exc}")
            return []
        state.slashed[source_id] = digest.hex()
        self.save()
        log.info("slashed source %s for epoch %s: %s wei (%s tampered canaries)", source_id, state.epoch, burned,
                 failures)  # fmt: skip
        return [(source_id, state.epoch, burned)]

    def _evidence(self, epoch: int, source_id: int, answers: list[dict]) -> bytes:
        """The evidence file's sha256 (and the file, if there is a folder for it)."""
        data = json.dumps({"epoch": epoch, "source_id": source_id, "registry": self.registry.address,
                           "answers": answers}, sort_keys=True).encode()  # fmt: skip
        digest = hashlib.sha256(data).digest()
        if self.evidence_dir is not None:
            self.evidence_dir.mkdir(parents=True, exist_ok=True)
            (self.evidence_dir / f"slash-{epoch}-{source_id}-{digest.hex()[:16]}.json").write_bytes(data)
        return digest
