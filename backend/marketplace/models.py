"""A project's model as content: hf folders as one canonical archive, plugin wheels, and building the model a
manifest pins (on a trainer's, the aggregator's or a verifier's machine) with every pin checked.

**hf folders travel as one canonical tar archive**, not as a UnixFS directory. The contract's convention is a CID
plus the sha256 of *the bytes*; one archive has one sha256 that the manifest records and `fetch_verified`-style
checks cover, where a directory would need a second, per-file hash list. Every store the project speaks (the local
store, Kubo's RPC, any trustless gateway) already stores and verifies files block by block, and none needs
directory support. The archive is canonical, so packing the same folder anywhere gives the same bytes and CID:
POSIX ustar, the folder's top-level model files in name order, mode 0644, owner 0, mtime 0, no compression
(safetensors weights do not compress anyway). Only config, tokenizer and safetensors files go in: pickled weights
(`.bin`, `.pt`, `.ckpt`, ...), code and everything else are left out, and unpacking refuses any member that is not
a plain file with such a name (no paths, links or devices).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from aggregator.models import BuiltModel, LoraSpec, ModelContext, ModelSource, build
from aggregator.schema import DataSchema
from backend.marketplace.errors import MarketplaceError
from backend.marketplace.manifest import ContentRef, ModelEntry, ProjectManifest, WheelRef
from backend.storage import ContentStore, fetch_verified_file
from backend.storage.codec import ModelSpec

__all__ = [
    "PackedFolder",
    "build_entry_model",
    "build_project_model",
    "fetch_hf_folder",
    "install_plugin_wheel",
    "model_context",
    "pack_model_folder",
    "read_wheel",
    "unpack_model_folder",
    "wheel_ref",
]

# Files a Hugging Face model folder needs: config, tokenizer, weights as safetensors.
_MODEL_FILE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*\.(json|safetensors|txt|model|tiktoken)$")
_READY = ".trustmarket-sha256"  # written last into an unpacked folder: the archive hash it came from


@dataclass(frozen=True)
class PackedFolder:
    path: Path  # the archive file
    sha256: str
    files: tuple[str, ...]
    skipped: tuple[str, ...]


def pack_model_folder(folder: Path, out: Path) -> PackedFolder:
    """Write `folder`'s model files as the canonical archive `out` (see the module docstring)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise MarketplaceError(f"hf:{folder}: not a folder")
    names, skipped = [], []
    for entry in sorted(folder.iterdir(), key=lambda p: p.name):
        if entry.is_file() and not entry.is_symlink() and _MODEL_FILE.match(entry.name):
            names.append(entry.name)
        else:
            skipped.append(entry.name + ("/" if entry.is_dir() else ""))
    if "config.json" not in names or not any(n.endswith(".safetensors") for n in names):
        raise MarketplaceError(
            f"hf:{folder}: a model folder needs config.json and .safetensors weights (found {', '.join(names) or 'none'})"
        )
    with tarfile.open(out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name in names:
            info = tarfile.TarInfo(name)
            info.size = (folder / name).stat().st_size
            info.mode, info.mtime, info.uid, info.gid, info.uname, info.gname = 0o644, 0, 0, 0, "", ""
            with (folder / name).open("rb") as fh:
                tar.addfile(info, fh)
    return PackedFolder(out, _sha256_file(out), tuple(names), tuple(skipped))


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for piece in iter(lambda: fh.read(1 << 20), b""):
            digest.update(piece)
    return digest.hexdigest()


def unpack_model_folder(archive: Path, dest: Path) -> None:
    """Extract a canonical model archive into the new folder `dest`; refuses anything but plain model files."""
    try:
        with tarfile.open(archive, mode="r:") as tar:
            members = tar.getmembers()
            for member in members:
                if not member.isreg() or not _MODEL_FILE.match(member.name):
                    raise MarketplaceError(
                        f"model archive: refusing member {member.name!r} (not a plain model file)"
                    )
            dest.mkdir(parents=True)
            for member in members:
                source = tar.extractfile(member)
                assert source is not None
                with source, (dest / member.name).open("wb") as fh:
                    shutil.copyfileobj(source, fh, 1 << 20)
    except tarfile.TarError as exc:
        raise MarketplaceError(f"model archive is not a tar file: {exc}") from None


def fetch_hf_folder(store: ContentStore, ref: ContentRef, cache_dir: Path) -> Path:
    """The hf folder of `ref`, unpacked under `cache_dir` (once: later calls reuse it), its archive verified."""
    folder = cache_dir / "hf" / ref.sha256
    marker = folder / _READY
    if marker.is_file() and marker.read_text().strip() == ref.sha256:
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder.parent) as tmp:
        archive = fetch_verified_file(store, ref.cid, ref.sha256, Path(tmp) / "model.tar")
        staged = Path(tmp) / "folder"
        unpack_model_folder(archive, staged)
        (staged / _READY).write_text(ref.sha256)
        # Complete folders appear in one rename, so a folder without the marker is debris: replace it.
        if folder.exists() and not marker.is_file():
            shutil.rmtree(folder)
        try:
            os.replace(staged, folder)
        except OSError:
            if not marker.is_file():  # not another process finishing first
                raise
    return folder


# -- plugin wheels ----------------------------------------------------------------------------------------------


def read_wheel(path: Path) -> tuple[str, str]:
    """(distribution name, version) from a wheel's METADATA, read as text from the zip (nothing is imported)."""
    try:
        with zipfile.ZipFile(path) as wheel:
            metadata = [n for n in wheel.namelist() if re.fullmatch(r"[^/]+\.dist-info/METADATA", n)]
            if len(metadata) != 1:
                raise MarketplaceError(f"{path}: not a wheel (no single *.dist-info/METADATA)")
            text = wheel.read(metadata[0]).decode("utf-8", "replace")
    except (zipfile.BadZipFile, OSError) as exc:
        raise MarketplaceError(f"{path}: not a wheel: {exc}") from None
    fields = dict(re.findall(r"^(Name|Version): *(.+?)\s*$", text, flags=re.MULTILINE))
    if "Name" not in fields or "Version" not in fields:
        raise MarketplaceError(f"{path}: the wheel's METADATA names no Name and Version")
    return fields["Name"], fields["Version"]


def install_plugin_wheel(store: ContentStore, manifest: ProjectManifest, target: Path | None = None) -> str:
    """Install the wheel the project's owner stored (verified by sha256) with pip, without dependencies (the
    plugin's own dependencies are the owner's to list in the project's docs). Returns what was installed."""
    entry = manifest.model
    if entry.source != "plugin":
        raise MarketplaceError(f"the project's model is {entry.uri}: there is no plugin to install")
    if entry.wheel is None:
        raise MarketplaceError(
            f"the project pins {entry.distribution}=={entry.version} but stored no wheel: install it from its publisher"
        )
    with tempfile.TemporaryDirectory() as tmp:
        path = fetch_verified_file(
            store, entry.wheel.cid, entry.wheel.sha256, Path(tmp) / entry.wheel.filename
        )
        if read_wheel(path) != (entry.distribution, entry.version):
            raise MarketplaceError(f"the stored wheel is not {entry.distribution}=={entry.version}")
        command = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--quiet"]
        if target is not None:
            command += ["--target", str(target), "--upgrade"]
        done = subprocess.run([*command, str(path)], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["pip failed"])[-1]
            raise MarketplaceError(f"pip could not install {entry.wheel.filename}: {last}")
    return f"{entry.distribution}=={entry.version}"


# -- building the pinned model ----------------------------------------------------------------------------------


def model_context(schema: DataSchema, options: dict) -> ModelContext:
    return ModelContext(schema.task, schema.num_outputs, schema.feature_shape, options)


def _source(entry: ModelEntry, folder: Path | None) -> ModelSource:
    lora = LoraSpec.from_dict(entry.lora) if entry.lora is not None else None
    return ModelSource(
        entry.source, entry.name, folder, entry.distribution, entry.version, lora, entry.options
    )


def build_entry_model(
    entry: ModelEntry, schema: DataSchema, seed: int, *, store: ContentStore | None, cache_dir: Path
) -> BuiltModel:
    """The model `entry` pins, built for `schema` from `seed`, with its frozen tensors checked against the pin.
    An hf model's folder comes from `store` (once; then from `cache_dir`)."""
    folder = None
    if entry.content is not None:
        if store is None:
            raise MarketplaceError(f"{entry.uri}: its folder must be fetched, but no content store was given")
        folder = fetch_hf_folder(store, entry.content, cache_dir)
    model = build(_source(entry, folder), model_context(schema, entry.options), seed)
    if model.frozen_sha256() != entry.frozen_sha256:
        raise MarketplaceError(
            f"{entry.uri} builds differently here than for the project's owner (the frozen tensors' sha256 differs): "
            "check the torch, transformers and peft versions against the manifest's pins"
        )
    return model


def build_project_model(store: ContentStore | None, manifest: ProjectManifest, cache_dir: Path) -> BuiltModel:
    """The project's model, every pin checked: content hash, plugin version, frozen tensors and the spec."""
    schema = DataSchema.from_dict(manifest.data)
    model = build_entry_model(manifest.model, schema, manifest.seed, store=store, cache_dir=cache_dir)
    if ModelSpec(model.spec) != manifest.tensor_spec():
        raise MarketplaceError(
            f"{manifest.model.uri} built here does not have the tensors the manifest records"
        )
    return model


def wheel_ref(store: ContentStore, path: Path, distribution: str, version: str) -> WheelRef:
    """Store a plugin's wheel (which must be the pinned distribution and version) and reference it."""
    name, wheel_version = read_wheel(path)
    if (name.lower().replace("_", "-"), wheel_version) != (distribution.lower().replace("_", "-"), version):
        raise MarketplaceError(
            f"{path.name} is {name} {wheel_version}, but the installed plugin is {distribution} {version}"
        )
    data = path.read_bytes()
    return WheelRef(cid=store.put(data), sha256=hashlib.sha256(data).hexdigest(), filename=path.name)
