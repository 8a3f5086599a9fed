"""The project manifest: everything, besides on-chain data, that a round's result depends on.

The owner stores it in the content store when creating a project, and the contract records its CID and sha256,
so the aggregator, every trainer and every verifier read the very same model source (pinned: an hf folder by its
content hash, a plugin by distribution and version, both by the hash of what does not travel), task, data schema,
training recipe, rule, parameters and seeds. The validation data is not in it: each round's shard is sealed at
creation and revealed on chain when the round's commits close (`backend.marketplace.validation`).
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from aggregator.errors import AggregatorError
from aggregator.tasks import TASKS
from backend.storage.codec import ModelSpec

__all__ = ["MANIFEST_SCHEMA", "ContentRef", "ModelEntry", "ProjectManifest", "WheelRef"]

MANIFEST_SCHEMA = "trustmarket.project/2"
_SHA256 = r"^[0-9a-f]{64}$"


class ContentRef(BaseModel):
    """A reference to stored bytes: CID plus the sha256 readers check."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    cid: str
    sha256: str = Field(pattern=_SHA256)


class WheelRef(ContentRef):
    """A plugin's wheel as stored content, with the file name pip needs to install it."""

    filename: str = Field(pattern=r"^[A-Za-z0-9_.]+-[A-Za-z0-9_.!+]+(-[A-Za-z0-9_.]+){3,4}\.whl$")


class ModelEntry(BaseModel):
    """Where the project's model comes from, pinned so that everyone builds the same one."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    source: Literal["builtin", "hf", "plugin"]
    name: str = Field(min_length=1, description="builtin or plugin name; the hf folder's name")
    options: dict[str, Any] = Field(default_factory=dict, description="the owner's --model-option values")
    content: ContentRef | None = Field(
        default=None, description="hf: the folder as one canonical tar archive"
    )
    lora: dict[str, Any] | None = Field(
        default=None, description="hf: LoRA settings (rank, alpha, targets, ffa)"
    )
    distribution: str | None = Field(default=None, description="plugin: the distribution that provides it")
    version: str | None = Field(default=None, description="plugin: the exact version every machine must run")
    wheel: WheelRef | None = Field(
        default=None, description="plugin: the owner's wheel, installable by anyone"
    )
    frozen_sha256: str = Field(
        pattern=_SHA256, description="sha256 of the tensors that never travel, as built"
    )

    @property
    def uri(self) -> str:
        return f"{self.source}:{self.name}"

    def model_post_init(self, __context: Any) -> None:
        if self.source == "hf" and self.content is None:
            raise ValueError("an hf model needs its folder's content reference")
        if self.source == "plugin" and not (self.distribution and self.version):
            raise ValueError("a plugin model needs its distribution and version")
        if self.lora is not None and self.source != "hf":
            raise ValueError("LoRA applies to hf models only")


class ProjectManifest(BaseModel):
    """How a project's rounds are computed (canonical JSON: sorted keys, no whitespace)."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    schema_: Literal["trustmarket.project/2"] = Field(default="trustmarket.project/2", alias="schema")
    model: ModelEntry
    task: str = "classification"
    data: dict[str, Any] = Field(description="The data schema (aggregator.schema.DataSchema.to_dict).")
    recipe: dict[str, Any] = Field(
        default_factory=dict, description="The training recipe (aggregator.training.Recipe)."
    )
    spec: dict[str, Any] = Field(
        description="The travelling tensors' spec (backend.storage.codec.ModelSpec JSON): every update's shape."
    )
    rule: str = "multi_krum"
    rule_params: dict[str, Any] = Field(default_factory=dict)
    # Steps before the rule (aggregator.defenses); a manifest written before they existed has none.
    defenses: list[dict[str, Any]] = Field(default_factory=list)
    outliers: dict[str, Any] = Field(default_factory=dict)
    contribution: dict[str, Any] = Field(default_factory=dict)
    hyperparams: dict[str, Any] = Field(default_factory=dict)
    seed: int = 0

    @field_validator("task")
    @classmethod
    def _known_task(cls, value: str) -> str:
        if value not in TASKS:
            raise ValueError(f"unknown task {value!r}; known: {', '.join(TASKS)}")
        return value

    @model_validator(mode="after")
    def _one_task(self) -> ProjectManifest:
        # The evaluator follows `task`, the data checks follow `data`: a manifest where they differ cannot run.
        if self.data.get("task") != self.task:
            raise ValueError(
                f"the data schema is for task {self.data.get('task')!r}, the project's is {self.task!r}"
            )
        return self

    def tensor_spec(self) -> ModelSpec:
        """What every update and global model of the project must hold (names, shapes, dtypes)."""
        return ModelSpec.from_json(json.dumps(self.spec))

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
