"""TRIDENT's feature files, read and written as TRIDENT lays them out.

TRIDENT (github.com/mahmoodlab/TRIDENT, ``Processor.run_patch_feature_extraction_job``
and ``IO.save_h5``) writes ``<job>/<mag>x_<size>px_<overlap>px_overlap/features_<enc_name>/
<slide>.h5``: a ``features`` dataset (N x D) with attributes ``name``, ``savetodir`` and
``encoder`` (its ``enc_name``), and a ``coords`` dataset (N x 2, level-0 top-left
corners) with ``patch_size`` (at the target magnification), ``patch_size_level0``,
``level0_magnification``, ``target_magnification``, ``overlap``, ``name``,
``savetodir``, ``level0_width`` and ``level0_height``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import h5py
import numpy as np

from her2viewer.errors import ModelError
from her2viewer.outputs import atomic_output, hdf5_output_error, prepare_output_dir

if TYPE_CHECKING:
    from her2viewer.features.store import FeatureFile

FOLDER_PREFIX = "features_"


def trident_encoder(h5: h5py.File) -> dict:
    """The encoder attributes of a TRIDENT file, in our ``FeatureFile.encoder`` form.

    The encoder is named by our registry name where TRIDENT's ``enc_name`` is
    registered (``uni_v1`` -> ``uni``), else by TRIDENT's own; {} when none is named.
    """
    name = h5["features"].attrs.get("encoder")
    name = name.decode() if isinstance(name, bytes) else name
    if not name or name == "None":
        return {}
    ours = our_name(str(name))
    description = {"name": ours, "dim": int(h5["features"].shape[1]), "trident_name": str(name)}
    return {"encoder": ours, "encoder_description": json.dumps(description, sort_keys=True)}


def our_name(trident_name: str) -> str:
    """Our registry name of a TRIDENT ``enc_name`` (itself when not registered)."""
    from her2viewer.features.registry import SPECS

    return next((s.name for s in SPECS.values() if s.trident_name == trident_name), trident_name)


def trident_name(name: str) -> str:
    """TRIDENT's ``enc_name`` of one of our encoders (our name when TRIDENT has none)."""
    from her2viewer.features.registry import SPECS

    spec = SPECS.get(name)
    return spec.trident_name if spec and spec.trident_name else name


def find_trident(root: Path, name: str) -> Path | None:
    """A slide's features in the ``features_<encoder>/`` folders of a TRIDENT job folder.

    Raises
    ------
    ModelError
        When several encoders' folders hold the slide (one model takes one encoder's).
    """
    found = sorted(root.glob(f"{FOLDER_PREFIX}*/{name}.h5"))
    if len(found) > 1:
        folders = ", ".join(p.parent.name for p in found)
        raise ModelError(
            f"{root} holds features of slide '{name}' from several encoders ({folders}); "
            "pass the folder of one."
        )
    return found[0] if found else None


def trident_path(out_dir: str | Path, encoder_name: str, slide: str) -> Path:
    """Where TRIDENT keeps a slide's features of an encoder under a job folder."""
    return Path(out_dir) / f"{FOLDER_PREFIX}{trident_name(encoder_name)}" / f"{slide}.h5"


def write_trident(path: str | Path, feats: FeatureFile, slide: str) -> Path:
    """Write a slide's features as TRIDENT does (atomic), keeping our encoder attributes.

    Raises
    ------
    ModelError
        Features without coordinates (a CLAM ``.pt``).
    OutputError
        When the file cannot be written.
    """
    path = Path(path)
    if feats.coords is None:
        raise ModelError(f"The features of {slide} have no coordinates; TRIDENT files need them.")
    prepare_output_dir(path.parent)
    encoder = trident_name(feats.encoder.get("encoder", ""))
    with atomic_output(path) as tmp:
        try:
            with h5py.File(tmp, "w") as h5:
                h5.attrs.update(feats.encoder)
                data = h5.create_dataset("features", data=feats.features.astype(np.float32))
                data.attrs.update(
                    {"name": slide, "savetodir": str(path.parent), "encoder": encoder}
                )
                coords = h5.create_dataset("coords", data=feats.coords.astype(np.int64))
                coords.attrs.update(_coords_attrs(feats.attrs, slide, path.parent))
        except OSError as exc:
            raise hdf5_output_error(path, exc) from exc
    return path


def _coords_attrs(attrs: dict, slide: str, folder: Path) -> dict:
    """TRIDENT's coords attributes from ours (CLAM's plus magnification and sizes)."""
    size = int(attrs.get("target_patch_size", attrs.get("patch_size", 0)))
    size0 = int(attrs.get("patch_size_level0", size))
    target = float(attrs.get("magnification", np.nan))
    level0 = np.asarray(attrs.get("level_dim", (0, 0))) * np.asarray(attrs.get("downsample", 1))
    level0_mag = target * size0 / size if size else np.nan
    return {
        "patch_size": size,
        "patch_size_level0": size0,
        "level0_magnification": level0_mag,
        "target_magnification": target,
        "overlap": 0,
        "name": slide,
        "savetodir": str(folder),
        "level0_width": round(float(level0[0])),
        "level0_height": round(float(level0[1])),
    }
