"""A project's model as content: the canonical hf archive, unpacking that refuses anything but model files, the
verified cache, plugin wheels, and the pins checked when the model is built."""

from __future__ import annotations

import hashlib
import io
import tarfile
import zipfile

import pytest

from aggregator.models import ModelContext, ModelSource, build
from aggregator.schema import DataSchema
from backend.marketplace.errors import MarketplaceError
from backend.marketplace.manifest import ContentRef, ModelEntry
from backend.marketplace.models import (
    build_entry_model,
    fetch_hf_folder,
    pack_model_folder,
    read_wheel,
    unpack_model_folder,
    wheel_ref,
)
from backend.storage import IntegrityError, LocalStore


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "model"
    root.mkdir()
    (root / "config.json").write_text('{"model_type": "bert"}')
    (root / "model.safetensors").write_bytes(b"\x08" + b"\x00" * 7 + b"{}" + b"weights" * 100)
    (root / "vocab.txt").write_text("[PAD]\n[UNK]\n")
    (root / "README.md").write_text("# a model card")
    (root / "pytorch_model.bin").write_bytes(b"a pickle")
    (root / "modeling_evil.py").write_text("import os")
    (root / "1_Pooling").mkdir()
    return root


def test_the_archive_is_canonical_and_holds_only_model_files(folder, tmp_path):
    a = pack_model_folder(folder, tmp_path / "a.tar")
    (folder / "vocab.txt").touch()  # a newer mtime changes nothing
    b = pack_model_folder(folder, tmp_path / "b.tar")
    assert a.sha256 == b.sha256 and (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes()
    assert a.files == ("config.json", "model.safetensors", "vocab.txt")
    assert set(a.skipped) == {"1_Pooling/", "README.md", "modeling_evil.py", "pytorch_model.bin"}
    with tarfile.open(tmp_path / "a.tar") as tar:
        assert {(m.mtime, m.uid, m.mode) for m in tar.getmembers()} == {(0, 0, 0o644)}
    unpack_model_folder(tmp_path / "a.tar", tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == list(a.files)
    (folder / "config.json").unlink()
    with pytest.raises(MarketplaceError, match=r"needs config\.json"):
        pack_model_folder(folder, tmp_path / "c.tar")


def _tar(path, members):
    with tarfile.open(path, "w") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)


@pytest.mark.parametrize(
    "member",
    [
        ("../config.json", tarfile.REGTYPE),
        ("sub/config.json", tarfile.REGTYPE),
        ("config.json", tarfile.SYMTYPE),
        ("model.bin", tarfile.REGTYPE),
        ("run.py", tarfile.REGTYPE),
        ("config.json", tarfile.CHRTYPE),
    ],
)
def test_unpacking_refuses_anything_but_plain_model_files(tmp_path, member):
    name, kind = member
    info = tarfile.TarInfo(name)
    info.type = kind
    data = b"{}" if kind == tarfile.REGTYPE else None
    info.size = len(data) if data else 0
    if kind == tarfile.SYMTYPE:
        info.linkname = "/etc/passwd"
    _tar(tmp_path / "evil.tar", [(info, data)])
    with pytest.raises(MarketplaceError, match="refusing member"):
        unpack_model_folder(tmp_path / "evil.tar", tmp_path / "out")
    assert not (tmp_path / "out").exists()
    (tmp_path / "junk.tar").write_bytes(b"not a tar at all" * 64)
    with pytest.raises(MarketplaceError, match="not a tar"):
        unpack_model_folder(tmp_path / "junk.tar", tmp_path / "out")


class CountingStore(LocalStore):
    fetched = 0

    def get_to(self, cid, path):
        CountingStore.fetched += 1
        return super().get_to(cid, path)


def test_the_folder_is_fetched_verified_and_unpacked_once(folder, tmp_path):
    store = CountingStore(tmp_path / "store")
    packed = pack_model_folder(folder, tmp_path / "m.tar")
    ref = ContentRef(cid=store.put(packed.path), sha256=packed.sha256)
    out = fetch_hf_folder(store, ref, tmp_path / "cache")
    assert (out / "config.json").is_file() and CountingStore.fetched == 1
    assert fetch_hf_folder(store, ref, tmp_path / "cache") == out and CountingStore.fetched == 1
    lying = ContentRef(cid=ref.cid, sha256="0" * 64)
    with pytest.raises(IntegrityError, match="was recorded for it"):
        fetch_hf_folder(store, lying, tmp_path / "cache")


def _wheel(path, name="tm-test-models", version="0.1.0"):
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("tm_test_models/__init__.py", "")
        zf.writestr(
            f"tm_test_models-{version}.dist-info/METADATA",
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        )
    return path


def test_wheels_are_read_without_importing_and_must_be_the_pinned_version(tmp_path):
    wheel = _wheel(tmp_path / "tm_test_models-0.1.0-py3-none-any.whl")
    assert read_wheel(wheel) == ("tm-test-models", "0.1.0")
    store = LocalStore(tmp_path / "store")
    ref = wheel_ref(store, wheel, "tm_test_models", "0.1.0")
    assert ref.filename == wheel.name and ref.sha256 == hashlib.sha256(wheel.read_bytes()).hexdigest()
    with pytest.raises(MarketplaceError, match="but the installed plugin is"):
        wheel_ref(store, wheel, "tm-test-models", "0.2.0")
    (tmp_path / "bad.whl").write_bytes(b"not a zip")
    with pytest.raises(MarketplaceError, match="not a wheel"):
        read_wheel(tmp_path / "bad.whl")


def test_a_model_that_builds_differently_here_is_refused():
    schema = DataSchema(task="classification", kind="tensor", labels=(0, 1, 2), feature_shape=(4,))
    honest = build(ModelSource("builtin", "mlp"), ModelContext("classification", 3, (4,)), 0).frozen_sha256()
    entry = ModelEntry(source="builtin", name="mlp", frozen_sha256=honest)
    assert build_entry_model(entry, schema, 0, store=None, cache_dir=None).uri == "builtin:mlp"  # type: ignore[arg-type]
    tampered = ModelEntry(source="builtin", name="mlp", frozen_sha256="f" * 64)
    with pytest.raises(MarketplaceError, match="builds differently here"):
        build_entry_model(tampered, schema, 0, store=None, cache_dir=None)  # type: ignore[arg-type]
