"""Model bundles: a folder or zip with ``bundle.json`` and ``*.safetensors`` files.

A bundle is generic: ``bundle.json`` says what kind of model it is (``model_kind``)
and carries everything needed to use it (encoder, patch size, magnification,
class names, thresholds, provenance, architecture); each ``NAME.safetensors``
holds one state dict. Nothing in a bundle is unpickled.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from her2viewer.errors import ModelError
from her2viewer.models.checks import require_finite
from her2viewer.models.manifest import SCHEMA_VERSION, validate_manifest
from her2viewer.outputs import output_error

MANIFEST = "bundle.json"
#: Caps of a bundle zip, checked before anything is inflated: files listed, the ratio of
#: a member's size to its compressed size (weights barely compress; a zip bomb does), and
#: the total size of the files read.
MAX_ZIP_MEMBERS = 1000
MAX_COMPRESSION_RATIO = 100
MAX_BUNDLE_BYTES = 16 * 2**30


@dataclass
class Bundle:
    """A loaded model bundle.

    Attributes
    ----------
    meta : dict
        The contents of ``bundle.json``.
    tensors : dict
        ``{file stem: {tensor name: tensor}}``, one entry per ``.safetensors`` file.
    path : Path or None
        Where it was loaded from.
    """

    meta: dict
    tensors: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)
    path: Path | None = None

    @property
    def kind(self) -> str:
        """The model kind named in ``bundle.json`` (e.g. ``"clam"``)."""
        return str(self.meta["model_kind"])

    def state_dict(self, name: str = "model") -> dict[str, torch.Tensor]:
        """Return the state dict stored as ``NAME.safetensors``."""
        if name not in self.tensors:
            raise ModelError(f"Bundle {self.path} has no weights file '{name}.safetensors'.")
        return self.tensors[name]


def shipped_bundle(path: Path, name: str, rebuild: str) -> Path:
    """A demo bundle shipped in ``resources/`` (synthetic, no clinical claim).

    Parameters
    ----------
    path : Path
        Its folder.
    name : str
        What it is, for the error (e.g. ``"CLAM demo bundle"``).
    rebuild : str
        The command that rebuilds it.

    Raises
    ------
    ModelError
        When the bundle is missing from this installation.
    """
    if not (path / "bundle.json").is_file():
        raise ModelError(
            f"The {name} is missing ({path}); rebuild it with `{rebuild}` or choose a model."
        )
    return path


def is_bundle(path: str | Path) -> bool:
    """Return True when ``path`` is a bundle folder or a zip holding ``bundle.json``."""
    path = Path(path)
    if path.is_dir():
        return (path / MANIFEST).is_file()
    if path.is_file() and zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            return MANIFEST in archive.namelist()
    return False


def save_bundle(path: str | Path, meta: dict, tensors: dict[str, dict[str, torch.Tensor]]) -> Path:
    """Write a bundle atomically; a ``.zip`` suffix writes a zip, anything else a folder.

    Parameters
    ----------
    path : path
        Destination folder or ``.zip`` file; replaced if it exists.
    meta : dict
        JSON-serialisable manifest; must name ``model_kind``. ``schema_version``
        is filled in.
    tensors : dict
        ``{file stem: state dict}``.

    Returns
    -------
    Path

    Raises
    ------
    OutputError
        One sentence when the bundle cannot be written (full disk, no permission);
        nothing is left behind.
    """
    path = Path(path)
    meta = {"schema_version": SCHEMA_VERSION, **meta}
    if "model_kind" not in meta:
        raise ModelError("A bundle manifest must name its model_kind.")
    files = {MANIFEST: json.dumps(meta, indent=2, sort_keys=True).encode()}
    for stem, state in tensors.items():
        contiguous = {k: v.detach().cpu().contiguous() for k, v in state.items()}
        files[f"{stem}.safetensors"] = save_safetensors(contiguous)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".zip":
            _write_zip(path, files)
        else:
            _write_folder(path, files)
    except OSError as exc:
        raise output_error(path, exc) from exc
    return path


def _write_zip(path: Path, files: dict[str, bytes]) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for name, data in files.items():
                archive.writestr(name, data)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _write_folder(path: Path, files: dict[str, bytes]) -> None:
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        for name, data in files.items():
            (tmp / name).write_bytes(data)
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def load_bundle(path: str | Path, kind: str | None = None) -> Bundle:
    """Load a bundle folder or zip; with ``kind``, only a bundle of that model kind.

    The manifest is checked against its kind's schema
    (:func:`~her2viewer.models.manifest.validate_manifest`) and every weight must be
    finite.

    Raises
    ------
    ModelError
        When the path is missing, is not a bundle, its manifest is invalid, or a
        weights file is unreadable or holds NaN or infinite values.
    """
    path = Path(path)
    if not path.exists():
        raise ModelError(f"Model bundle not found: {path}.")
    if not is_bundle(path):
        raise ModelError(f"{path} is not a model bundle (a folder or zip with {MANIFEST}).")
    files = _read_files(path)
    try:
        meta = json.loads(files.pop(MANIFEST))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "msg", "not UTF-8 text")
        raise ModelError(f"{path}: {MANIFEST} is not valid JSON ({reason}).") from exc
    meta = validate_manifest(meta, path, kind)
    tensors = {}
    for name, data in files.items():
        try:
            tensors[name.removesuffix(".safetensors")] = load_safetensors(data)
        except Exception as exc:  # safetensors raises its own error types
            raise ModelError(f"{path}: {name} is not a valid safetensors file.") from exc
        for tensor in tensors[name.removesuffix(".safetensors")].values():
            require_finite(tensor, f"{path}: {name}")
    return Bundle(meta=meta, tensors=tensors, path=path)


def _read_files(path: Path) -> dict[str, bytes]:
    if path.is_dir():
        names = [MANIFEST] + [p.name for p in sorted(path.glob("*.safetensors"))]
        return {name: (path / name).read_bytes() for name in names}
    try:
        with zipfile.ZipFile(path) as archive:
            members = [
                m
                for m in archive.infolist()
                if m.filename == MANIFEST
                or (m.filename.endswith(".safetensors") and "/" not in m.filename)
            ]
            _check_zip_members(path, len(archive.infolist()), members)
            return {m.filename: archive.read(m) for m in members}
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError) as exc:
        raise ModelError(f"{path} is a damaged bundle zip: {exc}.") from exc


def _check_zip_members(path: Path, count: int, members: list[zipfile.ZipInfo]) -> None:
    """Refuse a zip bomb before inflating it: too many files, too large, or too compressible."""
    if count > MAX_ZIP_MEMBERS:
        raise ModelError(
            f"{path} lists {count} files; a bundle zip holds at most {MAX_ZIP_MEMBERS}."
        )
    for member in members:
        if member.file_size > MAX_COMPRESSION_RATIO * member.compress_size + 2**20:
            raise ModelError(
                f"{path}: {member.filename} would inflate {member.compress_size} bytes to "
                f"{member.file_size}, more than {MAX_COMPRESSION_RATIO} times; it is refused as "
                "a zip bomb (model weights barely compress)."
            )
    total = sum(m.file_size for m in members)
    if total > MAX_BUNDLE_BYTES:
        raise ModelError(
            f"{path} would inflate to {total / 2**30:.1f} GiB, more than the "
            f"{MAX_BUNDLE_BYTES / 2**30:.0f} GiB a bundle may hold."
        )
