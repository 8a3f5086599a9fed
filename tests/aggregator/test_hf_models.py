"""hf: models on a tiny BERT written to a folder here (the real all-MiniLM-L6-v2 runs in tests/e2e): offline
loading, the seeded head and adapters, LoRA and FFA-LoRA (what travels, what stays, why averaging B is exact)."""

from __future__ import annotations

import pytest
import torch
from tiny_text import write_tiny_bert

from aggregator.evaluation import Evaluator
from aggregator.examples import Examples
from aggregator.models import (
    ModelContext,
    ModelError,
    ModelSource,
    build,
    flatten_state,
    parse_lora,
    state_delta,
)
from aggregator.training import Recipe, train

pytestmark = pytest.mark.slow  # transformers, or a chain and a dozen CLI runs

WORDS = [
    "normans",
    "rollo",
    "france",
    "turing",
    "machine",
    "complexity",
    "los",
    "angeles",
    "california",
    "who",
    "what",
]
TEXTS = [
    "who was rollo",
    "normans in france",
    "turing machine complexity",
    "what is complexity",
    "los angeles california",
    "what is california",
] * 4
LABELS = torch.tensor([0, 0, 1, 1, 2, 2] * 4)


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    return write_tiny_bert(tmp_path_factory.mktemp("tiny-bert"), WORDS)


def text_model(folder, lora="rank=2,ffa", seed=0, **options):
    source = ModelSource("hf", "tiny-bert", folder, lora=parse_lora(lora) if lora else None, options=options)
    return build(source, ModelContext("text-classification", 3), seed)


def examples():
    return Examples(LABELS, texts=tuple(TEXTS))


def test_the_same_source_and_seed_build_the_same_model(tiny_bert):
    a, b, c = text_model(tiny_bert), text_model(tiny_bert), text_model(tiny_bert, seed=1)
    assert a.uri == "hf:tiny-bert" and a.input_kind == "text"
    assert torch.equal(flatten_state(a.initial_state()), flatten_state(b.initial_state()))
    assert a.frozen_sha256() == b.frozen_sha256()
    assert a.frozen_sha256() != c.frozen_sha256()  # FFA's frozen A matrices come from the seed too
    assert not torch.equal(a.initial_state()["head.weight"], c.initial_state()["head.weight"])


def test_ffa_lora_trains_only_b_and_the_head(tiny_bert):
    model = text_model(tiny_bert)
    names = list(model.spec)
    assert names and all(".lora_B." in n or n.startswith("head.") for n in names)
    frozen = {k: v.clone() for k, v in model.frozen_state().items()}
    assert any(".lora_A." in k for k in frozen)
    start = model.initial_state()
    local = train(model, "text-classification", start, examples(), Recipe("adamw", 0.01, 1, 6, 4))
    delta = state_delta(local, start)
    assert all(float(delta[n].abs().sum()) > 0 for n in names if ".lora_B." in n)
    assert all(torch.equal(v, frozen[k]) for k, v in model.frozen_state().items())  # A and the base stayed
    ev = Evaluator(model, "text-classification", examples())
    assert ev.evaluate_state(local)["loss"] < ev.evaluate_state(start)["loss"]


def _effective_deltas(model, state):
    """Each adapted layer's weight change `scale * B @ A` for the travelling `state` (B) and the model's A."""
    model.load_state(state)
    out = {}
    for name, module in model.module.named_modules():
        if hasattr(module, "lora_A") and "default" in getattr(module, "lora_A", {}):
            scale = module.scaling["default"]
            out[name] = scale * module.lora_B["default"].weight @ module.lora_A["default"].weight
    return out


@pytest.mark.parametrize(("lora", "exact"), [("rank=2,ffa", True), ("rank=2", False)])
def test_averaging_adapters_is_exact_with_ffa_and_not_without(tiny_bert, lora, exact):
    model = text_model(tiny_bert, lora=lora)
    start = model.initial_state()
    data = examples()
    halves = [data.subset(range(0, 12)), data.subset(range(12, 24))]
    locals_ = [
        train(model, "text-classification", start, half, Recipe("sgd", 0.5, 1, 4, 4, seed=i))
        for i, half in enumerate(halves)
    ]
    per_trainer = [_effective_deltas(model, s) for s in locals_]
    averaged = {k: (locals_[0][k] + locals_[1][k]) / 2 for k in start}
    of_average = _effective_deltas(model, averaged)
    diff = max(
        float((of_average[k] - (per_trainer[0][k] + per_trainer[1][k]) / 2).detach().abs().max())
        for k in of_average
    )
    scale = max(float(v.detach().abs().max()) for v in of_average.values())
    assert scale > 0
    assert (diff <= 1e-6 * scale + 1e-9) is exact


def test_without_lora_the_whole_encoder_travels(tiny_bert):
    full = text_model(tiny_bert, lora=None)
    adapted = text_model(tiny_bert)
    assert full.dim > 20 * adapted.dim
    assert any(n.startswith("encoder.embeddings") for n in full.spec)


def test_hf_folders_that_cannot_be_used_are_refused(tiny_bert, tmp_path):
    (tmp_path / "config.json").write_text((tiny_bert / "config.json").read_text())
    (tmp_path / "pytorch_model.bin").write_bytes(b"pickles are never loaded")
    with pytest.raises(ModelError, match=r"no \.safetensors weights"):
        text_model(tmp_path)
    with pytest.raises(ModelError, match="not a folder"):
        text_model(tmp_path / "nowhere")
    (tmp_path / "config.json").unlink()
    (tmp_path / "model.safetensors").write_bytes((tiny_bert / "model.safetensors").read_bytes())
    with pytest.raises(ModelError, match=r"no config\.json"):
        text_model(tmp_path)
    with pytest.raises(ModelError, match="LoRA"):
        text_model(tiny_bert, lora="rank=2,targets=no_such_module")
    with pytest.raises(ModelError, match="max_length"):
        text_model(tiny_bert, max_length=1)
    with pytest.raises(ModelError, match="models read text"):
        build(ModelSource("hf", "t", tiny_bert), ModelContext("classification", 3, (4,)))


def test_text_models_and_tensor_data_do_not_mix(tiny_bert):
    model = text_model(tiny_bert)
    with pytest.raises(ModelError, match="reads text, but the data holds tensor"):
        Evaluator(model, "text-classification", Examples(LABELS, features=torch.zeros(24, 4)))


def test_an_hf_folder_that_is_not_the_pinned_one_is_refused(tiny_bert, tmp_path):
    """The two hf pins: the archive's sha256 (checked when it is fetched) and `frozen_sha256`, the hash of the
    weights that never travel (checked when it is built): a folder changed after the owner pinned it, here in a
    trainer's unpacked cache, cannot train or verify another model under the project's name."""
    from transformers import BertConfig, BertModel

    from aggregator.schema import DataSchema
    from backend.marketplace.errors import MarketplaceError
    from backend.marketplace.manifest import ContentRef, ModelEntry
    from backend.marketplace.models import build_entry_model, fetch_hf_folder, pack_model_folder
    from backend.storage import IntegrityError, LocalStore

    store = LocalStore(tmp_path / "store")
    packed = pack_model_folder(tiny_bert, tmp_path / "model.tar")
    ref = ContentRef(cid=store.put(packed.path), sha256=packed.sha256)
    lora = parse_lora("rank=2,ffa")
    entry = ModelEntry(
        source="hf", name="tiny-bert", content=ref, lora=lora.to_dict(),
        frozen_sha256=text_model(tiny_bert).frozen_sha256(),
    )  # fmt: skip
    schema = DataSchema(task="text-classification", kind="text", labels=(0, 1, 2), text_field="text")
    cache = tmp_path / "cache"
    assert build_entry_model(entry, schema, 0, store=store, cache_dir=cache).dim == text_model(tiny_bert).dim

    with pytest.raises(IntegrityError):  # the store serves other bytes than the pinned archive
        build_entry_model(
            entry.model_copy(update={"content": ref.model_copy(update={"sha256": "1" * 64})}),
            schema, 0, store=store, cache_dir=cache,
        )  # fmt: skip
    # Other base weights in the unpacked folder (same config, another initialization).
    folder = fetch_hf_folder(store, ref, cache)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        other = BertModel(BertConfig.from_pretrained(tiny_bert))
    other.save_pretrained(tmp_path / "other", safe_serialization=True)
    (folder / "model.safetensors").write_bytes((tmp_path / "other" / "model.safetensors").read_bytes())
    with pytest.raises(MarketplaceError, match="builds differently here than for the project's owner"):
        build_entry_model(entry, schema, 0, store=store, cache_dir=cache)
    # FFA-LoRA's frozen A matrices are pinned too: adapters of another rank than the owner built are refused.
    with pytest.raises(MarketplaceError, match="builds differently here"):
        build_entry_model(
            entry.model_copy(update={"lora": parse_lora("rank=3,ffa").to_dict()}),
            schema, 0, store=LocalStore(tmp_path / "store"), cache_dir=tmp_path / "cache2",
        )  # fmt: skip
