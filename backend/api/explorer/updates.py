"""What the explorer says about one submitted update, without handing out its weights: the CID and sha256 on
chain, whether the store's bytes match them, the safetensors header (tensor names, shapes, dtypes and the
metadata binding it to a project, round and base model), and the report's figures for it."""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from typing import Any

from backend.api.explorer.index import ChainEvent
from backend.api.explorer.ledger import Ledger, ProjectView, RoundRow
from backend.api.explorer.reports import ReportTrainer
from backend.storage import ContentNotFound, IntegrityError, StorageError, fetch_verified
from backend.storage.codec import META_BASE_MODEL, META_PROJECT, META_ROUND

__all__ = ["UpdateView", "describe_update", "safetensors_header"]

_MAX_HEADER = 100 * 2**20  # safetensors' own limit on the JSON header


@dataclass
class UpdateView:
    cid: str
    sha256: str
    block: int
    stored: str  # verified | missing | mismatch | unreadable
    stored_detail: str = ""
    size: int | None = None
    tensors: list[tuple[str, str, list[int]]] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)
    binding: list[tuple[str, str, str, bool]] = field(default_factory=list)  # what, says, expected, ok
    report: ReportTrainer | None = None

    @property
    def parameters(self) -> int:
        total = 0
        for _name, _dtype, shape in self.tensors:
            count = 1
            for dim in shape:
                count *= dim
            total += count
        return total


def safetensors_header(data: bytes) -> tuple[dict[str, Any], dict[str, str]]:
    """The tensors' entries and the metadata of safetensors bytes (ValueError when it is not one)."""
    if len(data) < 8:
        raise ValueError("shorter than a safetensors header")
    (length,) = struct.unpack("<Q", data[:8])
    if length > min(_MAX_HEADER, len(data) - 8):
        raise ValueError(f"header length {length} does not fit the {len(data)} bytes")
    header = json.loads(data[8 : 8 + length])
    if not isinstance(header, dict):
        raise ValueError("the header is not a JSON object")
    metadata = header.pop("__metadata__", {}) or {}
    return header, {str(k): str(v) for k, v in metadata.items()}


def describe_update(ledger: Ledger, view: ProjectView, row: RoundRow, submission: ChainEvent) -> UpdateView:
    cid, sha256 = str(submission.args["cid"]), bytes(submission.args["sha256"]).hex()
    out = UpdateView(cid, sha256, submission.block, "verified")
    if row.report is not None:
        out.report = row.report.trainer(str(submission.args["trainer"]))
    try:
        data = fetch_verified(ledger.store, cid, sha256)
    except ContentNotFound:
        out.stored, out.stored_detail = "missing", "this explorer's content store does not hold it"
        return out
    except IntegrityError:
        out.stored, out.stored_detail = "mismatch", "the stored bytes do not match the sha256 on chain"
        return out
    except StorageError as exc:
        out.stored, out.stored_detail = "unreadable", str(exc)
        return out
    out.size = len(data)
    try:
        header, out.metadata = safetensors_header(data)
    except (ValueError, UnicodeDecodeError) as exc:
        out.stored, out.stored_detail = "unreadable", f"not a safetensors file: {exc}"
        return out
    for name in sorted(header):
        entry = header[name]
        if isinstance(entry, dict):
            out.tensors.append((name, str(entry.get("dtype")), [int(d) for d in entry.get("shape", [])]))
    expected = {
        META_PROJECT: str(view.info.project_id),
        META_ROUND: str(row.round),
    }
    previous = ledger.rounds(view.info.project_id)[row.round - 1] if row.round > 0 else None
    base = previous.info.model_cid if previous is not None and previous.info else view.info.initial_model_cid
    expected[META_BASE_MODEL] = base
    labels = {META_PROJECT: "project", META_ROUND: "round", META_BASE_MODEL: "base model"}
    for key, want in expected.items():
        says = out.metadata.get(key, "(missing)")
        out.binding.append((labels[key], says, want, says == want))
    return out
