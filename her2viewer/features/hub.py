"""Where an encoder's weights are found: a file or folder the user names, an environment
variable per encoder, the Hugging Face cache, or (asked for) a download through
``huggingface_hub``.

Nothing downloads unless the user passes ``--download``; then only the registry's
weights file of that encoder is fetched, into the ordinary Hugging Face cache. A file
of that cache is checked against the SHA-256 the hub publishes for it (:func:`hub_sha256`).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

from her2viewer.errors import ModelError

if TYPE_CHECKING:
    from her2viewer.features.registry import EncoderSpec


def weights_env_var(name: str) -> str:
    """The environment variable naming encoder ``name``'s weights file or folder
    (``HER2VIEWER_WEIGHTS_`` and the name in capitals, other characters as ``_``)."""
    return "HER2VIEWER_WEIGHTS_" + "".join(c if c.isalnum() else "_" for c in name).upper()


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache (``HF_HUB_CACHE``, ``HF_HOME/hub`` or ``~/.cache``)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    home = os.environ.get("HF_HOME") or Path.home() / ".cache" / "huggingface"
    return Path(home) / "hub"


def cached_snapshot(repo: str, cache: Path | None = None) -> Path | None:
    """The snapshot folder of ``repo`` in the HF cache (``refs/main`` first), if any."""
    root = (cache or hf_cache_dir()) / ("models--" + repo.replace("/", "--"))
    return snapshot_of(root) if root.is_dir() else None


def snapshot_of(root: Path) -> Path | None:
    """The snapshot a ``models--org--name`` cache folder points at, else its newest."""
    ref = root / "refs" / "main"
    if ref.is_file() and (root / "snapshots" / ref.read_text().strip()).is_dir():
        return root / "snapshots" / ref.read_text().strip()
    snapshots = sorted((root / "snapshots").glob("*"), key=lambda p: p.stat().st_mtime)
    return snapshots[-1] if snapshots else None


def hub_sha256(path: Path) -> str | None:
    """The SHA-256 the hub publishes for a file of an HF cache, else None.

    In a Hugging Face cache ``snapshots/<revision>/<file>`` links to
    ``blobs/<sha256>``: an LFS file's blob is named by the SHA-256 of its content (the
    LFS pointer's oid, which the hub shows on the file's page). Small git files are
    named by their 40-digit git hash and are not checked.
    """
    target = Path(path).resolve()
    if target.parent.name == "blobs" and re.fullmatch("[0-9a-f]{64}", target.name):
        return target.name
    return None


def weights_in(folder: Path, spec: EncoderSpec) -> Path | None:
    """The first of the spec's weights files in a folder (or its HF snapshot)."""
    if folder.name.startswith("models--"):
        folder = snapshot_of(folder) or folder
    return next((folder / n for n in spec.weights_files if (folder / n).is_file()), None)


def resolve_weights(spec: EncoderSpec, weights: str | Path | None, download: bool) -> Path:
    """Find the weights file of ``spec``: ``weights``, its variable, the HF cache, a download.

    Raises
    ------
    ModelError
        A named file or folder without weights, or none anywhere (the sentence
        says where to put them and under which licence they are obtained).
    """
    named = weights or os.environ.get(spec.env_var)
    if named:
        path = Path(named)
        found = path if path.is_file() else weights_in(path, spec) if path.is_dir() else None
        if found is None:
            files = " or ".join(spec.weights_files)
            raise ModelError(
                f"No {spec.name} weights at {path}: expected a file, or {files} in it."
            )
        return found
    snapshot = cached_snapshot(spec.hf_repo) if spec.hf_repo else None
    found = weights_in(snapshot, spec) if snapshot else None
    if found is None and download:
        found = download_weights(spec)
    if found is None:
        raise ModelError(missing_sentence(spec))
    return found


def missing_sentence(spec: EncoderSpec) -> str:
    """Where to put an encoder's weights, and under which licence they are obtained."""
    source = f"from huggingface.co/{spec.hf_repo} " if spec.hf_repo else ""
    return (
        f"No weights for {spec.name}: put {spec.weights_files[0]} {source}in a folder and pass "
        f"--weights FOLDER or set {spec.env_var}, or pass --download with Hugging Face access "
        f"(licence: {spec.licence})."
    )


def download_weights(spec: EncoderSpec) -> Path:
    """Download the spec's weights file into the HF cache with ``huggingface_hub``.

    Raises
    ------
    ModelError
        ``huggingface_hub`` missing, no access, or no network.
    """
    try:
        import huggingface_hub
    except ImportError as exc:
        raise ModelError(
            "--download needs huggingface_hub (pip install huggingface_hub); without it, "
            f"put {spec.weights_files[0]} in a folder and pass --weights FOLDER."
        ) from exc
    errors = []
    for name in spec.weights_files:
        try:
            return Path(huggingface_hub.hf_hub_download(spec.hf_repo, name))
        except Exception as exc:  # noqa: BLE001 - the hub raises many types; all mean "not here"
            errors.append(f"{name}: {type(exc).__name__}")
    raise ModelError(
        f"Could not download {spec.name} weights from huggingface.co/{spec.hf_repo} "
        f"({'; '.join(errors)}); check your access (licence: {spec.licence}) and network."
    )
