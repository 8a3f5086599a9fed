"""The evaluator's canary duty on chain: commit an epoch's canaries before it starts, judge, reveal after, slash.

`CanaryAuditor.commit(epoch)` draws the epoch's canaries (`rag.canaries.CanarySchedule`), commits to their bytes
with a fresh random salt (`SourceRegistry.commitCanaries`, which refuses an epoch already started) and keeps the
salt. While the epoch runs, `record` notes every source that answered a canary with a tampered copy of its
reference passage, with the signed answer as evidence. `settle(current_epoch)` reveals every finished epoch's set
(anyone can now re-judge the scores of its canary queries) and slashes each tampering source once for that
epoch: the evidence (canary, nonce, signature, the signed documents) is written as JSON to `evidence_dir` and
its sha256 goes on chain with the slash.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from eth_account.signers.local import LocalAccount

from backend.chain.source_registry import SourceRegistry
from rag.canaries import Canary, CanarySchedule, encode_canaries, tampered
from rag.errors import RagError
from rag.orchestrator import QueryResult

__all__ = ["CanaryAuditor", "EpochCanaries"]

log = logging.getLogger(__name__)


@dataclass
class EpochCanaries:
    epoch: int
    canaries: list[Canary]
    salt: bytes
    revealed: bool = False
    evidence: dict[int, list[dict]] = field(default_factory=dict)  # source id -> tampered answers


class CanaryAuditor:
    def __init__(
        self,
        registry: SourceRegistry,
        evaluator: LocalAccount,
        schedule: CanarySchedule,
        *,
        evidence_dir: Path | None = None,
    ):
        self.registry, self.evaluator, self.schedule = registry, evaluator, schedule
        self.evidence_dir = evidence_dir
        self.epochs: dict[int, EpochCanaries] = {}
        self.slashed: list[tuple[int, int, int]] = []  # (source id, epoch, wei burned)

    def commit(self, epoch: int) -> list[Canary]:
        """Draw and commit `epoch`'s canaries (before it starts); returns them. Idempotent per epoch."""
        if epoch in self.epochs:
            return self.epochs[epoch].canaries
        canaries = self.schedule.plan(epoch)
        salt = secrets.token_bytes(32)
        if canaries:
            self.registry.commit_canaries(
                self.evaluator, epoch, salt, len(canaries), encode_canaries(canaries)
            )
        self.epochs[epoch] = EpochCanaries(epoch, canaries, salt)
        return canaries

    def record(self, epoch: int, canary: Canary, result: QueryResult) -> list[int]:
        """Note the sources that served a tampered copy of `canary`'s passage; returns their ids."""
        state = self.epochs.get(epoch)
        if state is None or canary not in state.canaries:
            raise RagError(f"canary {canary.id!r} was not committed for epoch {epoch}")
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
        return caught

    def settle(self, current_epoch: int) -> list[tuple[int, int, int]]:
        """Reveal every committed epoch before `current_epoch` and slash its tampering sources; returns the slashes
        made now as (source id, epoch, wei burned)."""
        made = []
        for epoch in sorted(e for e, s in self.epochs.items() if e < current_epoch and not s.revealed):
            state = self.epochs[epoch]
            if state.canaries:
                self.registry.reveal_canaries(
                    self.evaluator, epoch, state.salt, encode_canaries(state.canaries)
                )
            state.revealed = True
            for source_id, answers in sorted(state.evidence.items()):
                failures = len({a["canary"] for a in answers})
                burned = self.registry.slash(
                    self.evaluator, source_id, epoch, failures, self._evidence(epoch, source_id, answers)
                )
                made.append((source_id, epoch, burned))
                log.info("slashed source %s for epoch %s: %s wei (%s tampered canaries)", source_id, epoch, burned,
                         failures)  # fmt: skip
        self.slashed.extend(made)
        return made

    def _evidence(self, epoch: int, source_id: int, answers: list[dict]) -> bytes:
        """The evidence file's sha256 (and the file, if there is a folder for it)."""
        data = json.dumps({"epoch": epoch, "source_id": source_id, "registry": self.registry.address,
                           "answers": answers}, sort_keys=True).encode()  # fmt: skip
        digest = hashlib.sha256(data).digest()
        if self.evidence_dir is not None:
            self.evidence_dir.mkdir(parents=True, exist_ok=True)
            (self.evidence_dir / f"slash-{epoch}-{source_id}-{digest.hex()[:16]}.json").write_bytes(data)
        return digest
