"""Whether a round verified: the explorer recomputes each finalized round once, in one background thread, with
the same deterministic pipeline as `trustmarket verify`, and remembers the verdict for the result digest the
chain holds (a new digest, e.g. a reversed and re-run round, is verified again).

Recomputing costs what the aggregator's round cost, so it never runs inside a request: a page shows "queued"
until the verdict is in, and the next block's refresh shows it. Off (`TRUSTMARKET_EXPLORER_VERIFY=false`),
pages say so and rely on the committee's attestations alone.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any

from backend.chain.training_market import TrainingMarket
from backend.errors import TrustmarketError
from backend.marketplace.recompute import verify_round
from backend.storage import ContentStore

__all__ = ["Verdict", "Verifications"]

log = logging.getLogger("trustmarket.explorer")


@dataclass(frozen=True)
class Verdict:
    """`state`: off | queued | running | match | mismatch | unverifiable."""

    state: str
    detail: str = ""
    recomputed_digest: str | None = None


class Verifications:
    """One worker thread recomputing rounds in the order pages asked for them."""

    def __init__(self, market: TrainingMarket, store: ContentStore, *, enabled: bool = True):
        self.market, self.store, self.enabled = market, store, enabled
        self._verdicts: dict[tuple[int, int, str], Verdict] = {}
        self._queue: queue.Queue[tuple[int, int, str] | None] = queue.Queue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def verdict(self, project_id: int, round_: int, digest: str) -> Verdict:
        """The verdict for this round's result, queueing its recomputation on first sight."""
        if not self.enabled:
            return Verdict("off", "recomputation is switched off in this explorer")
        key = (project_id, round_, digest)
        with self._lock:
            if key not in self._verdicts:
                self._verdicts[key] = Verdict("queued")
                self._queue.put(key)
                self._start()
            return self._verdicts[key]

    def _start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._work, name="explorer-verify", daemon=True)
            self._thread.start()

    def _set(self, key: tuple[int, int, str], verdict: Verdict) -> None:
        with self._lock:
            self._verdicts[key] = verdict

    def _work(self) -> None:
        while True:
            key = self._queue.get()
            if key is None:
                return
            project_id, round_, digest = key
            self._set(key, Verdict("running"))
            self._set(key, self._verify(project_id, round_, digest))

    def _verify(self, project_id: int, round_: int, digest: str) -> Verdict:
        try:
            report = verify_round(self.market, self.store, project_id, round_)
        except (TrustmarketError, ValueError) as exc:
            # Content missing from this store, a node that went away: not a mismatch, and said as it is.
            return Verdict("unverifiable", str(exc))
        except Exception as exc:  # a bug must not kill the worker: every later round would stay queued
            log.exception("recomputing project=%s round=%s failed", project_id, round_)
            return Verdict("unverifiable", f"{type(exc).__name__}: {exc}")
        if report.onchain_digest != digest:
            return Verdict("unverifiable", "the round's result changed while it was recomputed")
        if report.match:
            return Verdict("match", "recomputed bit for bit", report.recomputed_digest)
        return Verdict("mismatch", "; ".join(report.mismatches), report.recomputed_digest)

    def wait(self, timeout: float = 600.0) -> bool:
        """Block until every queued round has its verdict (tests, `report plot`); False after `timeout` s."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                if not any(v.state in ("queued", "running") for v in self._verdicts.values()):
                    return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)

    def close(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout=5)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {f"{p}/{r}": v.state for (p, r, _), v in self._verdicts.items()}
