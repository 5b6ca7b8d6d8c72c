"""Slide encoders: one embedding per slide from the patch features of a slide.

A :class:`SlideEncoderSpec` row says which patch encoder's features a slide encoder
takes (our registry name, e.g. ``conch_v1_5`` for TITAN), at which magnification and
tile size those were cut, how the network is built and run, and where its weights
come from. Weights are found exactly like the patch encoders' (:mod:`features.hub`:
``--weights`` file or folder, the environment variable, the Hugging Face cache,
``--download``) and checked key by key and shape by shape before loading
(:func:`features.registry.load_checked`).

The built-in encoders live in their own modules, which import this one; they are
registered lazily (:data:`BUILTIN`), the first time a slide encoder is asked for.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path

import h5py
import numpy as np
import torch
from torch import nn

from her2viewer.errors import ModelError
from her2viewer.features import hub
from her2viewer.features.encoders import _seeded, file_sha256
from her2viewer.features.registry import _check_checksum, load_checked
from her2viewer.features.store import FeatureFile, read_features
from her2viewer.outputs import atomic_output, hdf5_output_error

#: The built-in slide encoders, as (module, attribute of its spec); imported when first needed.
BUILTIN = (
    ("her2viewer.features.titan", "TITAN_SPEC"),
    ("her2viewer.features.gigapath_slide", "GIGAPATH_SLIDE_SPEC"),
)


@dataclass(frozen=True)
class SlideEncoderSpec:
    """One registered slide encoder.

    Attributes
    ----------
    name : str
        Our name (``embed --encoder``).
    architecture : str
        What the network is, in words.
    tile_encoder : str
        Our patch-encoder registry name whose features it takes.
    tile_dim : int
        Feature size it expects.
    dim : int
        Slide embedding size.
    magnification : str
        Magnification of the tiles its features were cut from (e.g. ``"20x"``).
    patch_size : int
        Side in px, at ``magnification``, of those tiles.
    licence : str
        Under which terms the weights are obtained.
    card : str
        The model card and code the constants come from (the citation).
    hf_repo : str
        Hugging Face repository of the weights.
    weights_files : tuple of str
        File names looked for in a weights folder, in order.
    build : callable
        ``build(small)`` -> the network with random initialisation; ``small`` is the
        reduced-depth CI variant (real widths).
    embed : callable
        ``embed(model, features [N, tile_dim] float32, coords [N, 2] level-0 (x, y)
        int64, patch_size_level0)`` -> the [dim] slide embedding.
    convert : callable, optional
        Official checkpoint state dict -> our module's keys (None: the same keys).
    sha256 : str
        The published checksum of the weights file, when known.
    """

    name: str
    architecture: str
    tile_encoder: str
    tile_dim: int
    dim: int
    magnification: str
    patch_size: int
    licence: str
    card: str
    hf_repo: str
    weights_files: tuple[str, ...]
    build: Callable[[bool], nn.Module]
    embed: Callable[[nn.Module, torch.Tensor, torch.Tensor, int], torch.Tensor]
    convert: Callable[[dict], dict] | None = None
    sha256: str = ""

    @property
    def env_var(self) -> str:
        """The environment variable naming this encoder's weights file or folder."""
        return hub.weights_env_var(self.name)

    def row(self) -> dict:
        """JSON-ready row for ``encoders list --slide --json``."""
        return {
            "name": self.name,
            "dim": self.dim,
            "architecture": self.architecture,
            "tile_encoder": self.tile_encoder,
            "tile_dim": self.tile_dim,
            "magnification": self.magnification,
            "patch_size": self.patch_size,
            "licence": self.licence,
            "card": self.card,
            "hf_repo": self.hf_repo,
            "weights_files": list(self.weights_files),
            "env_var": self.env_var,
        }


SLIDE_SPECS: dict[str, SlideEncoderSpec] = {}
_builtin_registered = False


def register_slide_encoder(spec: SlideEncoderSpec) -> None:
    """Add (or replace) a slide encoder under ``spec.name``."""
    SLIDE_SPECS[spec.name] = spec


def _register_builtin() -> None:
    """Register the built-in slide encoders (once; their modules import this one)."""
    global _builtin_registered
    if _builtin_registered:
        return
    _builtin_registered = True
    for module, attribute in BUILTIN:
        spec = getattr(import_module(module), attribute)
        SLIDE_SPECS.setdefault(spec.name, spec)


def slide_encoder_names() -> list[str]:
    """The registered slide encoders' names, sorted."""
    _register_builtin()
    return sorted(SLIDE_SPECS)


def slide_specs() -> list[SlideEncoderSpec]:
    """The registered slide encoders, by name."""
    return [SLIDE_SPECS[name] for name in slide_encoder_names()]


def slide_spec_for(name: str) -> SlideEncoderSpec:
    """The spec of slide encoder ``name``.

    Raises
    ------
    ModelError
        When no slide encoder has that name (the sentence lists the known ones).
    """
    names = slide_encoder_names()
    if name not in SLIDE_SPECS:
        raise ModelError(f"Unknown slide encoder '{name}'; the known ones are {', '.join(names)}.")
    return SLIDE_SPECS[name]


def load_slide_encoder(
    name: str,
    weights: str | Path | None = None,
    small: bool = False,
    random_seed: int | None = None,
    download: bool = False,
) -> tuple[nn.Module, dict]:
    """Build slide encoder ``name`` with its weights (or seeded random ones).

    Parameters
    ----------
    name : str
        A registered slide encoder.
    weights : path, optional
        A weights file or folder (an HF snapshot too); else the environment variable,
        the HF cache, or a download when ``download`` is set.
    small : bool
        The reduced-depth CI variant (only with random weights).
    random_seed : int, optional
        Seeded random weights instead (tests, demos, benchmarks).
    download : bool
        Fetch the weights file with ``huggingface_hub`` when none is found locally.

    Returns
    -------
    tuple of (torch.nn.Module, dict)
        The module in eval mode and its provenance (``encoder``, ``weights``,
        ``sha256`` or ``seed``, ``variant``).

    Raises
    ------
    ModelError
        Unknown name, the small variant without a seed, no weights found, weights
        that do not fit, or a checksum that differs.
    """
    spec = slide_spec_for(name)
    if small and random_seed is None:
        raise ModelError(
            f"The small variant of {spec.name} exists only with random weights (--random-seed)."
        )
    provenance = {"encoder": spec.name, "variant": "small" if small else "full"}
    if random_seed is not None:
        module = _seeded(lambda: spec.build(small), random_seed)
        provenance |= {"weights": "random", "seed": int(random_seed)}
    else:  # the file is found and checked before the network is built
        path = hub.resolve_weights(spec, weights, download)
        digest = file_sha256(path)
        _check_checksum(path, digest, spec)
        module = spec.build(False)
        load_checked(module, path, spec, convert=spec.convert)
        provenance |= {"weights": path.name, "sha256": digest}
    return module.eval(), provenance


def tile_encoder_of(feats: FeatureFile) -> str | None:
    """Our registry name of the patch encoder a features file records (None if none)."""
    made = json.loads(feats.encoder.get("encoder_description") or "{}")
    return made.get("name") or feats.encoder.get("encoder") or None


def check_tile_features(spec: SlideEncoderSpec, feats: FeatureFile, source: Path) -> None:
    """Refuse features another patch encoder made, of another size, or without coordinates.

    Raises
    ------
    ModelError
        One sentence naming the file.
    """
    made = tile_encoder_of(feats)
    if made is not None and made != spec.tile_encoder:
        raise ModelError(
            f"{source} holds features from encoder {made}, but {spec.name} takes "
            f"{spec.tile_encoder} features; extract them with --encoder {spec.tile_encoder}."
        )
    if feats.features.shape[1] != spec.tile_dim:
        raise ModelError(
            f"{source} holds {feats.features.shape[1]}-d features, but {spec.name} takes "
            f"{spec.tile_dim}-d {spec.tile_encoder} features."
        )
    if feats.coords is None or len(feats) == 0:
        raise ModelError(f"{source} has no tile coordinates; {spec.name} places tiles by them.")


def patch_size_level0(feats: FeatureFile, source: Path) -> int:
    """The side of a tile in level-0 px, from the file's ``coords`` attributes.

    Ours and TRIDENT's record ``patch_size_level0``; CLAM's give ``patch_size`` at
    ``patch_level`` and that level's ``downsample``.

    Raises
    ------
    ModelError
        When the file records neither.
    """
    attrs = feats.attrs
    if "patch_size_level0" in attrs:
        size = int(attrs["patch_size_level0"])
    elif "patch_size" in attrs:
        size = round(int(attrs["patch_size"]) * float(np.ravel(attrs.get("downsample", 1))[0]))
    else:
        size = 0
    if size <= 0:
        raise ModelError(f"{source} does not record its tile size (coords attribute patch_size).")
    return size


def scale_warning(spec: SlideEncoderSpec, attrs: dict, source: Path) -> str | None:
    """One sentence when a file's tiles are not of the size and magnification ``spec`` was
    trained on (its embedding is then outside the training scale), else None.

    Ours record ``target_patch_size`` and ``magnification``, TRIDENT's ``patch_size`` and
    ``target_magnification``; a file recording neither (CLAM's) is not judged.
    """
    size = attrs.get("target_patch_size", attrs.get("patch_size"))
    mag = attrs.get("magnification", attrs.get("target_magnification"))
    if size is None or mag is None or not np.isfinite(float(mag)):
        return None
    trained = float(re.match(r"[\d.]+", spec.magnification).group())  # "20x (0.5 um/px)"
    if int(size) == spec.patch_size and abs(float(mag) - trained) < 0.01 * trained:
        return None
    return (
        f"{source.name} holds features of {int(size)} px tiles at {float(mag):g}x, but "
        f"{spec.name} was trained on {spec.patch_size} px tiles at {trained:g}x: "
        "its embedding is outside the scale the model knows."
    )


def embed_slide(
    spec: SlideEncoderSpec,
    model: nn.Module,
    features_file: str | Path,
    device: torch.device | str = "cpu",
) -> tuple[np.ndarray, dict]:
    """Embed one slide from its features file (ours, CLAM's or TRIDENT's).

    Parameters
    ----------
    spec : SlideEncoderSpec
    model : torch.nn.Module
        From :func:`load_slide_encoder`, already on ``device``.
    features_file : path
        The slide's features ``.h5``.
    device : torch.device or str

    Returns
    -------
    tuple of (np.ndarray, dict)
        The float32 [dim] embedding, and what it was made from (``slide``, ``features``,
        ``tiles``, ``patch_size_level0``, ``tile_encoder``, and ``warning`` when the tiles
        are not of the size or magnification the encoder was trained on).

    Raises
    ------
    ModelError
        An unreadable file, or features the encoder does not take.
    """
    path = Path(features_file)
    feats = read_features(path)
    check_tile_features(spec, feats, path)
    size = patch_size_level0(feats, path)
    features = torch.from_numpy(feats.features).to(device)
    coords = torch.from_numpy(feats.coords).to(device)
    with torch.inference_mode():
        embedding = spec.embed(model, features, coords, size)
    record = {
        "slide": path.stem,
        "features": path.name,
        "tiles": len(feats),
        "patch_size_level0": size,
        "tile_encoder": tile_encoder_of(feats) or "unrecorded",
    }
    if warning := scale_warning(spec, feats.attrs, path):
        record["warning"] = warning
    return embedding.float().cpu().numpy(), record


def write_embeddings(
    path: str | Path,
    spec: SlideEncoderSpec,
    provenance: dict,
    embeddings: list[tuple[np.ndarray, dict]],
) -> Path:
    """Write slide embeddings to one h5 file, atomically: a [dim] dataset per slide.

    Each dataset is named by its slide and carries ``encoder``, ``provenance`` (JSON)
    and the record :func:`embed_slide` returned; the file carries ``encoder``,
    ``dim``, ``tile_encoder`` and ``provenance``.

    Raises
    ------
    OutputError
        One sentence when the file cannot be written (full disk, no permission).
    """
    path = Path(path)
    made = json.dumps(provenance, sort_keys=True)
    with atomic_output(path) as tmp:
        try:
            with h5py.File(tmp, "w") as h5:
                h5.attrs.update(
                    {"encoder": spec.name, "dim": spec.dim, "tile_encoder": spec.tile_encoder}
                )
                h5.attrs["provenance"] = made
                for embedding, record in embeddings:
                    data = h5.create_dataset(record["slide"], data=embedding.astype(np.float32))
                    data.attrs.update({**record, "encoder": spec.name, "provenance": made})
        except OSError as exc:
            raise hdf5_output_error(path, exc) from exc
    return path
