"""Creating a project's inputs: check that the project can run, then store its model content, initial model and
manifest, and seal its validation set.

`publish_project` refuses a project that cannot run before anything is stored or escrowed: it builds the model
from its source, checks the validation set against the model and the task, checks the rule's parameters and how
many usable updates the rule needs against the number of trainers the project admits, checks the outlier,
contribution and hyper-parameter settings, and dry-runs one evaluation. Everything then goes in as bytes whose CID
and sha256 the contract or the manifest records, so the aggregator and every verifier later read exactly these
bytes. The validation set does not go in: it is split into one sealed shard per round
(`backend.marketplace.validation`), committed to on chain by its Merkle root, kept in the owner's home and stored
only when its round's commits close.
"""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from aggregator.contribution import ContributionConfig
from aggregator.dataset_io import decode_examples
from aggregator.defaults import DEFAULT_RULE, default_defenses, default_rule_params
from aggregator.defenses import parse_defenses
from aggregator.errors import AggregatorError
from aggregator.evaluation import Evaluator
from aggregator.examples import Examples
from aggregator.hyperparams import HyperParams
from aggregator.models import LoraSpec, ModelSource, build, find_plugin, flatten_state, parse_model
from aggregator.outliers import OutlierConfig
from aggregator.rules import get_rule
from aggregator.schema import DataSchema
from aggregator.training import Recipe
from backend.chain.training_market import ProjectParams
from backend.marketplace.errors import MarketplaceError
from backend.marketplace.manifest import ContentRef, ModelEntry, ProjectManifest
from backend.marketplace.models import model_context, pack_model_folder, wheel_ref
from backend.marketplace.validation import SealedValidation, seal_validation
from backend.storage import ContentStore, fetch_verified, sha256_hex
from backend.storage.codec import ModelSpec, decode_state, encode_state

__all__ = [
    "PublishedProject",
    "initial_hyperparams",
    "load_manifest",
    "load_model",
    "load_validation",
    "publish_project",
    "put_ref",
]


@dataclass(frozen=True)
class PublishedProject:
    """What `createProject` needs to reference, the sealed validation shards (one per round; keep them in the
    owner's home with `validation.save(home)`) and what the checks found."""

    initial_model: ContentRef
    manifest: ContentRef
    manifest_body: ProjectManifest
    validation: SealedValidation
    checks: dict[str, Any] = field(default_factory=dict)

    def project_params(self, **terms: Any) -> ProjectParams:
        """`ProjectParams` with this project's content references, its validation root and the given terms (rounds,
        stake, ...); `rounds` defaults to the number of shards and must equal it."""
        rounds = terms.setdefault("rounds", len(self.validation.shards))
        if rounds != len(self.validation.shards):
            raise MarketplaceError(
                f"{rounds} rounds but {len(self.validation.shards)} sealed validation shards: publish one per round"
            )
        return ProjectParams(
            initial_model_cid=self.initial_model.cid,
            initial_model_sha256=self.initial_model.sha256,
            config_cid=self.manifest.cid,
            config_sha256=self.manifest.sha256,
            validation_root=self.validation.root,
            **terms,
        )


def put_ref(store: ContentStore, data: bytes) -> ContentRef:
    """Store `data`; its reference (CID + sha256)."""
    return ContentRef(cid=store.put(data), sha256=sha256_hex(data))


def initial_hyperparams(manifest: ProjectManifest) -> HyperParams:
    """Round 0's hyper-parameters: the manifest's, with the recipe's learning rate as the first client rate (and a
    floor that never lifts it)."""
    return _hyperparams(Recipe.from_dict(manifest.recipe), manifest.hyperparams)


def _hyperparams(recipe: Recipe, settings: Mapping[str, Any]) -> HyperParams:
    values = {"client_lr": recipe.lr, "client_lr_min": min(HyperParams.client_lr_min, recipe.lr)}
    return _config(HyperParams, {**values, **settings}, "hyperparams")


def _config(cls, values: Mapping[str, Any], what: str):
    """A config dataclass from a manifest section, with a clear error for unknown or bad settings."""
    try:
        return cls(**dict(values))
    except TypeError as exc:
        raise MarketplaceError(f"{what}: {str(exc).replace('__init__() ', '')}") from None


def _source(
    model: str, lora: LoraSpec | None, options: Mapping[str, Any]
) -> tuple[ModelSource, dict[str, Any]]:
    kind, name = parse_model(model)
    if kind == "hf":
        folder = Path(name).expanduser()
        if not folder.is_dir():
            raise MarketplaceError(f"hf:{name}: no such folder")
        return ModelSource("hf", folder.name, folder.resolve(), lora=lora, options=dict(options)), {}
    if kind == "plugin":
        plugin = find_plugin(name)
        source = ModelSource("plugin", name, None, plugin.distribution, plugin.version, options=dict(options))
        return source, {"distribution": plugin.distribution, "version": plugin.version}
    return ModelSource("builtin", name, lora=lora, options=dict(options)), {}


def _tensor_examples(validation: tuple[torch.Tensor, torch.Tensor] | Examples) -> Examples:
    if isinstance(validation, Examples):
        return validation
    X, y = validation
    return Examples(torch.as_tensor(y), features=torch.as_tensor(X, dtype=torch.float32))


def _schema_for(examples: Examples, task: str) -> DataSchema:
    """The schema of in-memory examples (tensor callers: the demo, tests): labels are class indices 0..max."""
    labels = tuple(range(int(examples.targets.max()) + 1)) if examples.targets.dtype == torch.int64 else None
    kind = examples.kind
    shape = tuple(examples.features.shape[1:]) if examples.features is not None else None
    return DataSchema(
        task=task,
        kind=kind,
        labels=labels,
        feature_shape=shape,
        text_field="text" if kind == "text" else None,
    )


def _check_rule(rule: str, rule_params: Mapping[str, Any], max_trainers: int | None) -> dict[str, Any]:
    try:
        built = get_rule(rule, **dict(rule_params))
    except TypeError as exc:
        raise MarketplaceError(f"rule {rule}: {exc}") from None
    need = built.min_updates
    if max_trainers is not None and need > max_trainers:
        raise MarketplaceError(
            f"{rule} with {json.dumps(dict(rule_params), sort_keys=True)} needs at least {need} usable updates "
            f"per round, but --max-trainers is {max_trainers}"
        )
    return {"rule": built.name, "min_updates": need}


def publish_project(
    store: ContentStore,
    *,
    model: str,
    validation: tuple[torch.Tensor, torch.Tensor] | Examples,
    rounds: int,
    rule: str = DEFAULT_RULE,
    task: str = "classification",
    schema: DataSchema | None = None,
    lora: LoraSpec | None = None,
    model_options: Mapping[str, Any] | None = None,
    plugin_wheel: Path | None = None,
    recipe: Recipe | None = None,
    rule_params: Mapping[str, Any] | None = None,
    defenses: Sequence[Mapping[str, Any]] | None = None,
    outliers: Mapping[str, Any] | None = None,
    contribution: Mapping[str, Any] | None = None,
    hyperparams: Mapping[str, Any] | None = None,
    seed: int = 0,
    max_trainers: int | None = None,
    initial: Mapping[str, torch.Tensor] | None = None,
) -> PublishedProject:
    """Check everything (see the module docstring), then store the project's content and seal the validation set
    as one shard per round (not stored: `PublishedProject.validation` holds them); raises before storing."""
    examples = _tensor_examples(validation)
    schema = schema or _schema_for(examples, task)
    if schema.task != task:
        raise MarketplaceError(f"the data schema is for task {schema.task}, the project's is {task}")
    schema.check_examples(examples, "the validation set")
    sealed = seal_validation(examples, rounds=rounds, seed=seed)
    recipe = recipe or Recipe(seed=seed)
    # No rule parameters: the default rule gets its default ones (`aggregator.defaults`); no `defenses`: the
    # default chain runs (pass `[]` for none).
    if rule_params is None:
        rule_params = default_rule_params() if rule == DEFAULT_RULE else {}
    rule_params = dict(rule_params)
    defenses = default_defenses() if defenses is None else [dict(d) for d in defenses]
    try:
        parse_defenses(defenses)  # refused here, not in round 0
    except AggregatorError as exc:
        raise MarketplaceError(str(exc)) from None
    checks = _check_rule(rule, rule_params, max_trainers)
    _config(OutlierConfig, outliers or {}, "outliers")
    _config(ContributionConfig, {"seed": seed, **(contribution or {})}, "contribution")
    _hyperparams(recipe, hyperparams or {})
    if plugin_wheel is not None and not parse_model(model)[0] == "plugin":
        raise MarketplaceError("--plugin-wheel goes with a plugin: model")

    source, pins = _source(model, lora, model_options or {})
    built = build(source, model_context(schema, dict(source.options)), seed)
    evaluator = Evaluator(built, task, schema.prepare(examples))
    state = dict(initial) if initial is not None else built.initial_state()
    try:
        metrics = evaluator.evaluate(flatten_state(state, built.spec))
    except AggregatorError as exc:
        raise MarketplaceError(f"the initial model does not fit {built.uri}: {exc}") from None
    if not all(math.isfinite(v) for v in metrics.values()):
        raise MarketplaceError(f"evaluating the initial model gives non-finite metrics {metrics}")
    checks.update(
        {"model": built.describe(), "initial_metrics": metrics, "validation_examples": len(examples)}
    )

    spec = ModelSpec(built.spec)
    initial_bytes = encode_state(state, {"kind": "initial_model", "model": built.uri})
    spec.check(decode_state(initial_bytes)[0])
    content = None
    if source.kind == "hf":
        assert source.path is not None
        with tempfile.TemporaryDirectory() as tmp:
            packed = pack_model_folder(source.path, Path(tmp) / "model.tar")
            content = ContentRef(cid=store.put(packed.path), sha256=packed.sha256)
        checks["hf_files"], checks["hf_skipped"] = list(packed.files), list(packed.skipped)
    wheel = None
    if plugin_wheel is not None:
        wheel = wheel_ref(store, Path(plugin_wheel), pins["distribution"], pins["version"])
    entry = ModelEntry(
        source=source.kind,  # type: ignore[arg-type]
        name=source.name,
        options=dict(source.options),
        content=content,
        lora=lora.to_dict() if lora is not None else None,
        wheel=wheel,
        frozen_sha256=built.frozen_sha256(),
        **pins,
    )
    manifest = ProjectManifest(
        model=entry,
        task=task,
        data=schema.to_dict(),
        recipe=recipe.to_dict(),
        spec=json.loads(spec.to_json()),
        rule=rule,
        rule_params=rule_params,
        defenses=defenses,
        outliers=dict(outliers or {}),
        contribution=dict(contribution or {}),
        hyperparams=dict(hyperparams or {}),
        seed=seed,
    )
    initial_ref = put_ref(store, initial_bytes)
    return PublishedProject(initial_ref, put_ref(store, manifest.to_bytes()), manifest, sealed, checks)


def load_manifest(store: ContentStore, ref: ContentRef) -> ProjectManifest:
    """The verified manifest, its data schema and recipe well-formed."""
    manifest = ProjectManifest.from_bytes(fetch_verified(store, ref.cid, ref.sha256))
    DataSchema.from_dict(manifest.data)
    Recipe.from_dict(manifest.recipe)
    return manifest


def load_validation(store: ContentStore, manifest: ProjectManifest, shard: ContentRef) -> Examples:
    """The validation examples of one round: its revealed shard (`validation.revealed_shard` reads the reference
    from the chain), fetched and verified, checked against the schema and prepared. The runner and every verifier
    call this one function."""
    schema = DataSchema.from_dict(manifest.data)
    raw = decode_examples(fetch_verified(store, shard.cid, shard.sha256))
    return schema.prepare(schema.check_examples(raw, f"validation shard {shard.cid}"))


def load_model(store: ContentStore, ref: ContentRef, manifest: ProjectManifest) -> dict[str, torch.Tensor]:
    """A verified global model, checked against the manifest's spec."""
    tensors, _ = decode_state(fetch_verified(store, ref.cid, ref.sha256), manifest.tensor_spec())
    return tensors
