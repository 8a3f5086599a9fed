"""The project manifest: everything, besides on-chain data, that a round's result depends on.

The owner stores it in the content store when creating a project, and the contract records its CID and sha256,
so the aggregator and any verifier read the very same model, rule, parameters, seeds and validation set.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from aggregator.errors import AggregatorError

__all__ = ["MANIFEST_SCHEMA", "ContentRef", "ProjectManifest"]

MANIFEST_SCHEMA = "trustmarket.project/1"


class ContentRef(BaseModel):
    """A reference to stored bytes: CID plus the sha256 readers check."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    cid: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class ProjectManifest(BaseModel):
    """How a project's rounds are computed (canonical JSON: sorted keys, no whitespace)."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    schema_: Literal["trustmarket.project/1"] = Field(default="trustmarket.project/1", alias="schema")
    model: str = Field(description="A model name from aggregator.models.")
    spec: dict[str, Any] = Field(
        description="The model's tensor spec (backend.storage.codec.ModelSpec JSON)."
    )
    validation: ContentRef = Field(description="The owner's validation set (safetensors: X, y).")
    rule: str = "multi_krum"
    rule_params: dict[str, Any] = Field(default_factory=dict)
    outliers: dict[str, Any] = Field(default_factory=dict)
    contribution: dict[str, Any] = Field(default_factory=dict)
    hyperparams: dict[str, Any] = Field(default_factory=dict)
    seed: int = 0

    def to_bytes(self) -> bytes:
        """Canonical bytes: the same manifest always hashes the same."""
        payload = self.model_dump(mode="json", by_alias=True)
        return json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> ProjectManifest:
        try:
            return cls.model_validate_json(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "manifest"
            raise AggregatorError(f"invalid project manifest: {where}: {first['msg']}") from None
