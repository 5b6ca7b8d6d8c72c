"""Patch encoders: CLAM's truncated ResNet-50, TorchScript files and foundation-model hooks.

An :class:`Encoder` bundles a network with its preprocessing: tiles are resized
(on the CPU, with PIL bilinear + antialias exactly like ``torchvision``'s
``Resize`` in CLAM's ``get_eval_transforms``) and then normalised on the device.
Weights never download: they come from torchvision's local cache, a file the user
names, a model bundle, or explicitly random weights with a seed.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import import_module
from importlib.metadata import entry_points
from pathlib import Path

import numpy as np
import torch
import torchvision
from PIL import Image
from safetensors.torch import load_file as load_safetensors_file
from torch import nn

from her2viewer.errors import ModelError
from her2viewer.weights import load_tensors, load_torchscript

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: torchvision's ImageNet-1k V1 ResNet-50 weights (timm ``resnet50.tv_in1k``, used by CLAM).
TORCHVISION_RESNET50_FILE = "resnet50-0676ba61.pth"
#: The variable naming resnet50_trunc's weights file (as features.registry names them all).
RESNET50_ENV = "HER2VIEWER_WEIGHTS_RESNET50_TRUNC"
ENTRY_POINT_GROUP = "her2viewer.encoders"
_PIL_MODES = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}


@dataclass
class Encoder:
    """A patch encoder and its preprocessing.

    Attributes
    ----------
    name : str
        Registry name (e.g. ``"resnet50_trunc"``).
    module : torch.nn.Module
        Maps a normalised float batch (B, 3, S, S) to features (B, dim).
    dim : int
        Feature size.
    input_size : int or None
        Side the tiles are resized to; None keeps the tile size (CLAM's legacy mode).
    mean, std : tuple of float
        Per-channel normalisation of [0, 1] RGB.
    provenance : dict
        Where the weights came from (recorded in feature files and bundles).
    resize_to : int or None
        Side tiles are resized to before a centre crop of ``input_size`` (None: no crop).
    interpolation : str
        ``"bilinear"`` or ``"bicubic"`` (antialiased, on the CPU by PIL).
    pooling, magnification : str
        How tokens become a vector, and the magnification the model was trained at
        (recorded; "" when not stated).
    """

    name: str
    module: nn.Module
    dim: int
    input_size: int | None = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    provenance: dict = field(default_factory=dict)
    resize_to: int | None = None
    interpolation: str = "bilinear"
    pooling: str = ""
    magnification: str = ""

    def prepare_tile(self, tile: np.ndarray) -> np.ndarray:
        """Resize an RGB uint8 tile (PIL, antialiased) and centre-crop it to ``input_size``."""
        size = self.input_size
        if size is None or tile.shape[:2] == (size, size):
            return tile
        side = self.resize_to or size
        image = Image.fromarray(tile).resize((side, side), _PIL_MODES[self.interpolation])
        start = (side - size) // 2
        return np.asarray(image)[start : start + size, start : start + size]

    def resize_batch(self, x: torch.Tensor) -> torch.Tensor:
        """Resize and centre-crop a float (B, 3, S, S) batch on its device (antialiased)."""
        size = self.input_size
        if size is None or x.shape[-1] == size:
            return x
        side = self.resize_to or size
        x = torch.nn.functional.interpolate(
            x, size=(side, side), mode=self.interpolation, antialias=True, align_corners=False
        )
        start = (side - size) // 2
        return x[..., start : start + size, start : start + size]

    @property
    def preprocessing(self) -> dict:
        """The resize rule, pooling and magnification where they differ from CLAM's."""
        extra = {
            "resize_to": self.resize_to,
            "interpolation": None if self.interpolation == "bilinear" else self.interpolation,
            "pooling": self.pooling or None,
            "magnification": self.magnification or None,
        }
        return {k: v for k, v in extra.items() if v is not None}

    def normalise(self, batch: torch.Tensor) -> torch.Tensor:
        """Turn a uint8 (B, S, S, 3) batch into a normalised float (B, 3, S, S) batch."""
        x = batch.permute(0, 3, 1, 2).float().div_(255.0)
        mean = torch.tensor(self.mean, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(1, 3, 1, 1)
        return (x - mean) / std

    @property
    def identity(self) -> str:
        """A string that changes whenever the features would change."""
        key = {"name": self.name, "input_size": self.input_size, "mean": self.mean}
        key |= self.preprocessing
        return json.dumps({**key, "std": self.std, **self.provenance}, sort_keys=True)

    def describe(self) -> dict:
        """JSON-ready description for ``bundle.json`` and feature-file attributes."""
        return {
            "name": self.name,
            "dim": self.dim,
            "input_size": self.input_size,
            "mean": list(self.mean),
            "std": list(self.std),
            "provenance": self.provenance,
            **self.preprocessing,
        }


class ResNet50Trunc(nn.Module):
    """CLAM's ``resnet50_trunc``: ResNet-50 stem + layer1-3, global average pool -> 1024."""

    def __init__(self) -> None:
        super().__init__()
        base = torchvision.models.resnet50(weights=None)
        self.conv1, self.bn1, self.relu, self.maxpool = (
            base.conv1,
            base.bn1,
            base.relu,
            base.maxpool,
        )
        self.layer1, self.layer2, self.layer3 = base.layer1, base.layer2, base.layer3
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer3(self.layer2(self.layer1(x)))
        return torch.flatten(self.pool(x), 1)


def load_weights_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict from ``.safetensors`` or a PyTorch file (``weights_only=True``).

    Raises
    ------
    ModelError
        When the file is missing or holds anything but tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"Encoder weights file not found: {path}.")
    if path.suffix == ".safetensors":
        state = _load_safetensors(path)
    else:
        state = load_tensors(path, "encoder weights")
    for wrapper in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"{path.name} does not hold a state dict of tensors.")
    return state


def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_safetensors_file(str(path))
    except Exception as exc:  # any unreadable file is the user's to fix
        raise ModelError(
            f"Cannot read encoder weights from {path.name}: it is not a safetensors file."
        ) from exc


#: SHA-256 digests already computed in this run, by (resolved path, size, mtime in ns).
_DIGESTS: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str | Path) -> str:
    """Return the hex SHA-256 of a file, read once per run (cached by path, size and mtime)."""
    stat = os.stat(path)
    key = (str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _DIGESTS:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        _DIGESTS[key] = digest.hexdigest()
    return _DIGESTS[key]


def torchvision_cache_file() -> Path:
    """Where torchvision keeps the ImageNet ResNet-50 weights (never downloaded here)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / TORCHVISION_RESNET50_FILE


def resnet50_trunc(
    weights: str | Path | dict | None = None,
    random_seed: int | None = None,
    legacy_256: bool = False,
) -> Encoder:
    """Build CLAM's truncated ResNet-50 encoder.

    Parameters
    ----------
    weights : path or state dict, optional
        A torchvision/timm ResNet-50 state dict (full or truncated; ``fc`` and
        ``layer4`` are ignored). When omitted, torchvision's cache is used.
    random_seed : int, optional
        Use seeded random weights instead (tests and demos only; recorded).
    legacy_256 : bool
        CLAM's earlier preprocessing: no resize (256 px patches in).

    Raises
    ------
    ModelError
        When no weights are available and no random seed was given.
    """
    module = _seeded(ResNet50Trunc, random_seed)
    if random_seed is not None:
        provenance = {"weights": "random", "seed": int(random_seed)}
    else:
        state, provenance = _resnet_weights(weights)
        kept = {k: v for k, v in state.items() if not k.startswith(("fc.", "layer4."))}
        try:
            module.load_state_dict(kept, strict=True)
        except RuntimeError as exc:
            raise ModelError(
                "The encoder weights are not a torchvision ResNet-50 state dict "
                f"(keys conv1, bn1, layer1-3): {str(exc).splitlines()[0]}"
            ) from exc
    return Encoder(
        name="resnet50_trunc",
        module=module.eval(),
        dim=1024,
        input_size=None if legacy_256 else 224,
        provenance=provenance,
    )


def _seeded(build: Callable[[], nn.Module], seed: int | None) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0 if seed is None else int(seed))
        return build()


def _resnet_weights(weights) -> tuple[dict, dict]:
    if isinstance(weights, dict):
        return weights, {"weights": "bundle"}
    named = weights if weights is not None else os.environ.get(RESNET50_ENV)
    path = Path(named) if named else torchvision_cache_file()
    if not named and not path.is_file():
        raise ModelError(
            f"No ImageNet weights for resnet50_trunc: put {TORCHVISION_RESNET50_FILE} in "
            f"{path.parent}, pass --encoder-weights FILE (or set {RESNET50_ENV}), or use a bundle "
            "with encoder weights (--random-weights SEED only for tests and demos)."
        )
    return load_weights_file(path), {"weights": path.name, "sha256": file_sha256(path)}


def torchscript_encoder(
    path: str | Path,
    input_size: int | None = 224,
    mean: tuple[float, float, float] = IMAGENET_MEAN,
    std: tuple[float, float, float] = IMAGENET_STD,
) -> Encoder:
    """Use any TorchScript file mapping (B, 3, S, S) normalised images to (B, D) as an encoder.

    Raises
    ------
    ModelError
        When the file is missing, not TorchScript, or does not return (B, D) features.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"TorchScript encoder not found: {path}.")
    try:
        module = load_torchscript(path).eval()
    except Exception as exc:  # torch raises several types for a bad archive
        raise ModelError(f"{path.name} is not a TorchScript file ({exc}).") from exc
    side = input_size or 224
    with torch.inference_mode():
        try:
            out = module(torch.zeros(1, 3, side, side))
        except Exception as exc:  # the scripted code may raise anything
            raise ModelError(f"{path.name} failed on a {side}px test image ({exc}).") from exc
    if not isinstance(out, torch.Tensor) or out.ndim != 2:
        raise ModelError(f"{path.name} must return a (batch, features) tensor.")
    return Encoder(
        name=f"torchscript:{path.name}",
        module=module,
        dim=int(out.shape[1]),
        input_size=input_size,
        mean=tuple(mean),
        std=tuple(std),
        provenance={"weights": path.name, "sha256": file_sha256(path)},
    )


#: Factories by name; each takes ``weights`` (path or None) and ``random_seed`` keywords.
_REGISTRY: dict[str, Callable[..., Encoder]] = {}


def register_encoder(name: str, factory: Callable[..., Encoder]) -> None:
    """Add an encoder factory (the hook for UNI/CONCH-style foundation models).

    The factory is called as ``factory(weights=PATH_OR_NONE, random_seed=SEED_OR_NONE)``
    and must load its weights from local files only, e.g. with
    :func:`load_weights_file`. Packages can also register factories through the
    ``her2viewer.encoders`` entry-point group.
    """
    _REGISTRY[name] = factory


def encoder_names() -> list[str]:
    """Names accepted by :func:`build_encoder` (plus ``torchscript:PATH``)."""
    _load_entry_points()
    return sorted(_REGISTRY)


def _load_entry_points() -> None:
    """Register the built-in foundation models (features.registry) and plug-ins' encoders."""
    import_module("her2viewer.features.registry")
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        if entry.name not in _REGISTRY:
            _REGISTRY[entry.name] = entry.load()


def build_encoder(
    name: str = "resnet50_trunc",
    weights: str | Path | None = None,
    random_seed: int | None = None,
    **options,
) -> Encoder:
    """Build an encoder by registry name, or ``torchscript:PATH`` for a TorchScript file.

    Raises
    ------
    ModelError
        Unknown name, or no usable weights.
    """
    if name.startswith("torchscript:"):
        return torchscript_encoder(name.split(":", 1)[1], **options)
    _load_entry_points()
    if name not in _REGISTRY:
        known = ", ".join([*sorted(_REGISTRY), "torchscript:PATH"])
        raise ModelError(f"Unknown encoder '{name}'; available: {known}.")
    return _REGISTRY[name](weights=weights, random_seed=random_seed, **options)


register_encoder("resnet50_trunc", resnet50_trunc)


def encoder_for_bundle(meta: dict, tensors: dict[str, dict] | None = None) -> Encoder:
    """Rebuild the encoder a bundle was trained with.

    Random encoders are rebuilt from their recorded seed, encoders with an
    ``encoder.safetensors`` from those weights, others from the local cache.

    Raises
    ------
    ModelError
        When the bundle names no encoder, or its weights are not available here.
    """
    desc = meta.get("encoder")
    if not isinstance(desc, dict) or "name" not in desc:
        raise ModelError("The model bundle does not say which encoder made its features.")
    options = (
        {"legacy_256": desc.get("input_size") is None} if desc["name"] == "resnet50_trunc" else {}
    )
    provenance = desc.get("provenance", {})
    if provenance.get("weights") == "random":
        options |= {"small": True} if provenance.get("variant") == "small" else {}
        return build_encoder(desc["name"], random_seed=int(provenance["seed"]), **options)
    weights = (tensors or {}).get("encoder")
    encoder = build_encoder(desc["name"], weights=weights, **options)
    recorded, local = provenance.get("sha256"), encoder.provenance.get("sha256")
    if recorded and local and recorded != local:
        raise ModelError(
            f"The {desc['name']} weights found here ({encoder.provenance['weights']}) are not "
            "those the model was trained with (their SHA-256 differs); use the same weights."
        )
    return encoder


def check_same_encoder(model_encoder: dict | None, features: dict, source: str) -> None:
    """Refuse features made by another encoder than the model's (when both say which).

    Parameters
    ----------
    model_encoder : dict or None
        The ``encoder`` record of a bundle.
    features : dict
        A features file's encoder attributes (``FeatureFile.encoder``).
    source : str
        The features file, named in the sentence.

    Raises
    ------
    ModelError
        When the names differ, or the weights (hash, random seed, variant) where the
        file records them.
    """
    made = json.loads(features.get("encoder_description", "{}"))
    if not model_encoder or not made.get("name"):
        return
    mine, theirs = model_encoder.get("provenance") or {}, made.get("provenance") or {}
    # A file that records no weights (TRIDENT's) is judged by the encoder's name alone.
    keys = [k for k in ("sha256", "seed", "variant") if k in mine or k in theirs] if theirs else []
    if made["name"] != model_encoder.get("name") or any(mine.get(k) != theirs.get(k) for k in keys):
        raise ModelError(
            f"{source} holds features from encoder {made['name']} {_weights_label(theirs)}, "
            f"but the model was trained on {model_encoder.get('name')} {_weights_label(mine)}; "
            "extract the features with the model's encoder."
        )


def _weights_label(provenance: dict) -> str:
    if provenance.get("weights") == "random":
        return f"(random weights, seed {provenance.get('seed')})"
    return f"({provenance.get('weights', 'weights not recorded')})"
