"""Round reports and project manifests as the explorer reads them: fetched by CID, checked against the sha256
the chain holds, and parsed defensively.

A report written by an older or newer aggregator may lack a field or carry new ones: what is missing reads as
unknown (and is listed in `problems`), never as an error page. Content that cannot be had (not in the store,
bytes that do not match the chain, not JSON, a store that is down) becomes a `Fetched` with the reason in words.
"""

from __future__ import annotations

import json
import math
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from backend.api.explorer.words import flag_sentence, reason_title
from backend.storage import (
    ContentNotFound,
    ContentStore,
    CorruptedBlock,
    IntegrityError,
    StorageError,
    StoreUnavailable,
    fetch_verified,
)

__all__ = [
    "ContentCache",
    "Fetched",
    "FlagView",
    "RejectionView",
    "ReportTrainer",
    "RoundReport",
    "defense_names",
    "parse_report",
]


@dataclass(frozen=True)
class Fetched:
    """A JSON document from the store, or why it could not be had (`error`)."""

    cid: str
    sha256: str
    document: Any = None
    error: str | None = None
    size: int = 0

    @property
    def ok(self) -> bool:
        return self.error is None


class ContentCache:
    """Verified JSON documents by CID (content-addressed, so a hit never goes stale); failures are not kept,
    so a document that reaches the store later is found on the next request."""

    def __init__(self, store: ContentStore, capacity: int = 256):
        self.store, self.capacity = store, capacity
        self._docs: OrderedDict[tuple[str, str], Fetched] = OrderedDict()
        self._lock = threading.Lock()

    def json(self, cid: str, sha256: str) -> Fetched:
        key = (cid, sha256)
        with self._lock:
            if key in self._docs:
                self._docs.move_to_end(key)
                return self._docs[key]
        fetched = self._fetch(cid, sha256)
        if fetched.ok:
            with self._lock:
                self._docs[key] = fetched
                while len(self._docs) > self.capacity:
                    self._docs.popitem(last=False)
        return fetched

    def _fetch(self, cid: str, sha256: str) -> Fetched:
        try:
            data = fetch_verified(self.store, cid, sha256)
        except ContentNotFound:
            return Fetched(cid, sha256, error="not in the content store")
        except IntegrityError:
            return Fetched(cid, sha256, error="the stored bytes do not match the sha256 on chain")
        except CorruptedBlock:
            return Fetched(cid, sha256, error="a block of it is corrupted in the content store")
        except StoreUnavailable as exc:
            return Fetched(cid, sha256, error=f"the content store is unreachable ({exc})")
        except StorageError as exc:
            return Fetched(cid, sha256, error=f"cannot be read from the content store ({exc})")
        try:
            return Fetched(cid, sha256, json.loads(data), size=len(data))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            return Fetched(cid, sha256, error=f"not JSON ({exc})", size=len(data))


@dataclass(frozen=True)
class FlagView:
    reason: str
    title: str
    sentence: str


@dataclass(frozen=True)
class RejectionView:
    """A defense that left the update out of the aggregate (not flagged on chain: its score is 0), in words,
    with the trainers it names (the update it copies, the group it moved with)."""

    defense: str
    sentence: str
    names: tuple[str, ...] = ()


@dataclass(frozen=True)
class ReportTrainer:
    """One trainer's entry in a round report."""

    address: str
    status: str
    flags: list[FlagView]
    score: float | None
    score_fixed: int | None
    interval: tuple[float, float] | None
    aggregation_weight: float | None
    valuation: float | None
    update_sha256: str | None
    stats: dict[str, float]
    confidence: str | None = None  # the report's words for the interval ("tight", ...)
    rejections: tuple[RejectionView, ...] = ()
    influence: float | None = None  # its share of the defended aggregate
    counted_with: tuple[str, ...] = ()  # near-copies valued as one player with it

    @property
    def verdict(self) -> str:
        """flagged (by the outlier checks: on chain, counts toward slashing), rejected (by a defense: score 0,
        not on chain) or scored."""
        if self.flags:
            return "flagged"
        return "rejected" if self.rejections or self.status == "rejected" else "scored"


@dataclass(frozen=True)
class RoundReport:
    version: int | None
    model: str | None
    rule: str | None
    rule_params: dict[str, Any]
    rule_details: dict[str, Any]
    outlier_config: dict[str, Any]
    defenses: tuple[str, ...]  # the defense steps run before the rule, by name, in order
    contribution_method: str | None
    contribution_utility: str | None
    contribution_basis: str | None
    contribution_details: dict[str, Any]
    metrics: dict[str, float]
    trainers: dict[str, ReportTrainer]
    flagged: list[str]
    problems: list[str] = field(default_factory=list)
    # The project's task as the report names it (schema 2 projects: {"name", "loss", "metric"}); older reports
    # name none: their models are classifiers judged by accuracy and cross-entropy.
    task: str | None = None
    metric_name: str | None = None
    loss_name: str | None = None

    def trainer(self, address: str) -> ReportTrainer | None:
        return self.trainers.get(address) or next(
            (t for a, t in self.trainers.items() if a.lower() == address.lower()), None
        )


def _float(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        x = float(value)
    except ValueError:
        return None
    return x if math.isfinite(x) else None


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _mapping(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, Mapping) else {}


def _interval(entry: Mapping[str, Any]) -> tuple[float, float] | None:
    """A score's confidence interval under any of the names a report may give it."""
    for key in ("score_interval", "score_ci", "confidence_interval", "interval", "ci"):
        value = entry.get(key)
        if isinstance(value, list | tuple) and len(value) == 2:
            low, high = _float(value[0]), _float(value[1])
        elif isinstance(value, Mapping):
            low = _float(value.get("low", value.get("lo", value.get("lower"))))
            high = _float(value.get("high", value.get("hi", value.get("upper"))))
        else:
            continue
        if low is not None and high is not None:
            return (min(low, high), max(low, high))
    return None


def _addresses(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    return tuple(str(a) for a in value if isinstance(a, str)) if isinstance(value, list | tuple) else ()


def _rejection(raw: Mapping[str, Any]) -> RejectionView:
    detail = _mapping(raw.get("detail"))
    defense = str(raw.get("defense") or "a defense")
    for key in ("message", "reason"):
        if isinstance(raw.get(key), str) and raw[key].strip():
            sentence = raw[key].strip()
            break
    else:
        sentence = f"left out of the aggregate by {defense}"
    return RejectionView(
        defense, sentence, _addresses(detail.get("copy_of")) + _addresses(detail.get("group"))
    )


def _trainer(address: str, entry: Mapping[str, Any], config: Mapping[str, Any]) -> ReportTrainer:
    flags = []
    for flag in entry.get("flags") or []:
        if isinstance(flag, Mapping):
            reason = str(flag.get("reason", "flagged"))
            flags.append(FlagView(reason, reason_title(reason), flag_sentence(flag, config)))
    raw_rejections = entry.get("rejections")
    rejections = tuple(
        _rejection(r)
        for r in (raw_rejections if isinstance(raw_rejections, list) else [])
        if isinstance(r, Mapping)
    )
    stats = {k: v for k, v in _mapping(entry.get("outlier_stats")).items() if _float(v) is not None}
    confidence = entry.get("score_confidence")
    status = entry.get("status") or ("flagged" if flags else "rejected" if rejections else "scored")
    return ReportTrainer(
        address=address,
        status=str(status),
        flags=flags,
        score=_float(entry.get("score")),
        score_fixed=_int(entry.get("score_fixed")),
        interval=_interval(entry),
        aggregation_weight=_float(entry.get("aggregation_weight")),
        valuation=_float(entry.get("valuation")),
        update_sha256=entry.get("update_sha256") if isinstance(entry.get("update_sha256"), str) else None,
        stats={k: float(v) for k, v in stats.items()},
        confidence=confidence.strip() if isinstance(confidence, str) and confidence.strip() else None,
        rejections=rejections,
        influence=_float(entry.get("influence")),
        counted_with=tuple(a for a in _addresses(entry.get("counted_with")) if a.lower() != address.lower()),
    )


def defense_names(steps: Any) -> tuple[str, ...]:
    """The names of a report's (or manifest's) defense steps, in order: `[{"name": ...}, ...]` or names."""
    if not isinstance(steps, list):
        return ()
    names = (d.get("name") if isinstance(d, Mapping) else d for d in steps)
    return tuple(n for n in names if isinstance(n, str) and n)


def parse_report(raw: Any) -> RoundReport:
    """The report's fields the explorer shows; anything malformed is skipped and named in `problems`."""
    problems: list[str] = []
    doc = _mapping(raw)
    if not doc:
        problems.append("the report is not a JSON object")
    rule = _mapping(doc.get("rule"))
    contribution = _mapping(doc.get("contribution"))
    config = _mapping(doc.get("outlier_config"))
    trainers: dict[str, ReportTrainer] = {}
    raw_trainers = doc.get("trainers")
    if isinstance(raw_trainers, Mapping):
        for address, entry in raw_trainers.items():
            if isinstance(entry, Mapping):
                trainers[str(address)] = _trainer(str(address), entry, config)
            else:
                problems.append(f"the entry of {address} is not an object")
    elif doc:
        problems.append("the report lists no trainers")
    metrics = {k: v for k, v in _mapping(doc.get("metrics")).items() if _float(v) is not None}
    task = {k: v for k, v in _mapping(doc.get("task")).items() if isinstance(v, str)}
    if doc and not metrics:
        problems.append("the report has no validation metrics")
    return RoundReport(
        version=_int(doc.get("version")),
        model=doc.get("model") if isinstance(doc.get("model"), str) else None,
        rule=rule.get("name") if isinstance(rule.get("name"), str) else None,
        rule_params=_mapping(rule.get("params")),
        rule_details=_mapping(rule.get("details")),
        outlier_config=config,
        defenses=defense_names(doc.get("defenses")),
        contribution_method=_mapping(contribution.get("config")).get("method"),
        contribution_utility=_mapping(contribution.get("config")).get("utility"),
        contribution_basis=contribution.get("basis") if isinstance(contribution.get("basis"), str) else None,
        contribution_details=_mapping(contribution.get("details")),
        metrics={k: float(v) for k, v in metrics.items()},
        trainers=trainers,
        flagged=[str(a) for a in doc.get("flagged") or [] if isinstance(a, str)],
        problems=problems,
        task=task.get("name"),
        metric_name=task.get("metric"),
        loss_name=task.get("loss"),
    )
