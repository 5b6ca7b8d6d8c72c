"""CLAM-compatible feature files: ``h5_files/<slide>.h5`` (``features``, ``coords``) and
``pt_files/<slide>.pt`` (the features tensor), as written by CLAM's ``extract_features_fp.py``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import torch

from her2viewer.errors import ModelError
from her2viewer.features.trident import find_trident, trident_encoder
from her2viewer.outputs import atomic_output, prepare_output_dir
from her2viewer.weights import load_tensors


@dataclass
class FeatureFile:
    """One slide's patch features.

    Attributes
    ----------
    features : np.ndarray
        (N, D) float32.
    coords : np.ndarray or None
        (N, 2) int64 level-0 top-left corners, in the same order; None for a ``.pt`` file.
    attrs : dict
        Attributes of the ``coords`` dataset (CLAM's ``patch_size``, ``patch_level`` ...).
    encoder : dict
        File attributes about the encoder (``encoder``, ``encoder_identity``), if any.
    """

    features: np.ndarray
    coords: np.ndarray | None
    attrs: dict = field(default_factory=dict)
    encoder: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.features)


def h5_path(out_dir: str | Path, name: str) -> Path:
    """CLAM's location of a slide's features h5 under an output folder."""
    return Path(out_dir) / "h5_files" / f"{name}.h5"


def pt_path(out_dir: str | Path, name: str) -> Path:
    """CLAM's location of a slide's features ``.pt`` under an output folder."""
    return Path(out_dir) / "pt_files" / f"{name}.pt"


def find_features(features_dir: str | Path, name: str) -> Path:
    """Find a slide's features in a folder (CLAM layout, flat, or TRIDENT's ``features_*/``).

    Raises
    ------
    ModelError
        When no file exists for ``name``.
    """
    root = Path(features_dir)
    candidates = [
        h5_path(root, name),
        root / f"{name}.h5",
        pt_path(root, name),
        root / f"{name}.pt",
    ]
    for path in candidates:
        if path.is_file():
            return path
    found = find_trident(root, name)
    if found is None:
        raise ModelError(
            f"No features for slide '{name}' in {root} (looked for h5_files/{name}.h5 and "
            f"TRIDENT's features_<encoder>/{name}.h5)."
        )
    return found


def read_features(path: str | Path) -> FeatureFile:
    """Read a features ``.h5`` (ours or CLAM's) or a CLAM ``.pt`` file.

    Raises
    ------
    ModelError
        Missing or unreadable file, or no ``features`` dataset.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"Features file not found: {path}.")
    if path.suffix == ".pt":
        return _read_pt(path)
    try:
        with h5py.File(path, "r") as h5:
            if "features" not in h5:
                raise ModelError(
                    f"{path.name} has no 'features' dataset; it is not a features file."
                )
            features = h5["features"][:].astype(np.float32)
            coords = h5["coords"][:].astype(np.int64) if "coords" in h5 else None
            attrs = dict(h5["coords"].attrs) if "coords" in h5 else {}
            encoder = {k: _text(v) for k, v in h5.attrs.items()} or trident_encoder(h5)
    except OSError as exc:
        raise ModelError(f"{path.name} cannot be read as an HDF5 features file ({exc}).") from exc
    if features.ndim != 2 or (coords is not None and len(coords) != len(features)):
        raise ModelError(f"{path.name}: features must be N x D with one coordinate per row.")
    return FeatureFile(features, coords, attrs, encoder)


def _text(value):
    return value.decode() if isinstance(value, bytes) else value


def _read_pt(path: Path) -> FeatureFile:
    tensor = load_tensors(path, "features")
    if not isinstance(tensor, torch.Tensor) or tensor.ndim != 2:
        raise ModelError(f"{path.name} must hold one N x D features tensor.")
    return FeatureFile(tensor.float().numpy(), None)


def save_pt_atomic(path: str | Path, features: np.ndarray) -> Path:
    """Write CLAM's ``.pt`` features tensor atomically (its folder is created if needed).

    Raises
    ------
    OutputError
        One sentence when the file cannot be written (full disk, no permission).
    """
    path = Path(path)
    prepare_output_dir(path.parent)
    with atomic_output(path) as tmp:
        torch.save(torch.from_numpy(np.ascontiguousarray(features)), tmp)
    return path
