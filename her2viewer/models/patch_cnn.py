"""Patch-grading CNNs for HER2 IHC (seed 004): torchvision backbones with a grade head.

Six torchvision architectures (AlexNet, VGG16, ResNet34, DenseNet121, Inception v3,
Swin-T) get a new classifier head for the IHC grades (``1+``, ``2+``, ``3+``, and
optionally ``0``). Patches are 512 px RGB tiles from tissue with at most 60% white
background, Macenko-normalised with :class:`her2viewer.stain.MacenkoNormalizer`,
augmented with flips, right-angle rotations and brightness/contrast jitter during
training. Weights start random (``seed``) or come from a user file: a model bundle,
a ``.safetensors`` state dict, or a ``.pt``/``.pth`` state dict read with
``torch.load(weights_only=True)``. Nothing is downloaded.

The slide grade is the argmax of the mean patch probability (:func:`slide_grade`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from safetensors.torch import load_file as load_safetensors_file
from torch import nn
from torchvision import models as tvm

from her2viewer.errors import ModelError
from her2viewer.models.bundle import is_bundle, load_bundle, save_bundle
from her2viewer.stain import MacenkoNormalizer
from her2viewer.tissue.patching import WHITE_SATURATION, WHITE_VALUE

ARCHITECTURES = ("alexnet", "vgg16", "resnet34", "densenet121", "inception_v3", "swin_t")
DEFAULT_CLASSES = ("1+", "2+", "3+")
PATCH_SIZE = 512
MAX_BACKGROUND = 0.6
MODEL_KIND = "patch_cnn"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _check_arch(arch: str) -> str:
    name = str(arch).lower().replace("-", "_")
    if name not in ARCHITECTURES:
        raise ModelError(f"Unknown architecture '{arch}'; choose from {', '.join(ARCHITECTURES)}.")
    return name


def _replace_head(model: nn.Module, arch: str, n_classes: int) -> nn.Module:
    """Swap the ImageNet classifier for an ``n_classes`` linear layer."""
    if arch in ("alexnet", "vgg16"):
        model.classifier[-1] = nn.Linear(model.classifier[-1].in_features, n_classes)
    elif arch in ("resnet34", "inception_v3"):
        model.fc = nn.Linear(model.fc.in_features, n_classes)
    elif arch == "densenet121":
        model.classifier = nn.Linear(model.classifier.in_features, n_classes)
    else:  # swin_t
        model.head = nn.Linear(model.head.in_features, n_classes)
    return model


def build_patch_cnn(arch: str, n_classes: int = 3, seed: int | None = 0) -> nn.Module:
    """Build a backbone with random weights and a grade head.

    Parameters
    ----------
    arch : str
        One of :data:`ARCHITECTURES`.
    n_classes : int
        Number of IHC grades.
    seed : int or None
        Seed for the random initialisation (None leaves torch's RNG as it is).

    Returns
    -------
    torch.nn.Module
        In eval mode; Inception v3 without its auxiliary head.

    Raises
    ------
    ModelError
        For an unknown architecture or fewer than two classes.
    """
    arch = _check_arch(arch)
    if n_classes < 2:
        raise ModelError(f"A grading model needs at least two classes, got {n_classes}.")
    if seed is not None:
        torch.manual_seed(seed)
    if arch == "inception_v3":
        model = tvm.inception_v3(weights=None, aux_logits=False, init_weights=True)
    else:
        model = getattr(tvm, arch)(weights=None)
    return _replace_head(model, arch, n_classes).eval()


def target_layer(model: nn.Module, arch: str) -> tuple[nn.Module, bool]:
    """The Grad-CAM layer of a backbone and whether its output is channels-last.

    The last convolutional block (AlexNet/VGG/DenseNet ``features``, ResNet ``layer4``,
    Inception ``Mixed_7c``) or, for Swin-T, the last stage (``features``, NHWC).
    """
    arch = _check_arch(arch)
    layers = {
        "alexnet": "features",
        "vgg16": "features",
        "resnet34": "layer4",
        "densenet121": "features",
        "inception_v3": "Mixed_7c",
        "swin_t": "features",
    }
    return getattr(model, layers[arch]), arch == "swin_t"


# --------------------------------------------------------------------------- patches
def background_fraction(rgb: np.ndarray) -> float:
    """Fraction of white (bright, unsaturated) pixels, with the tissue module's thresholds."""
    hsv = cv2.cvtColor(np.ascontiguousarray(rgb[..., :3]), cv2.COLOR_RGB2HSV)
    return float(np.mean((hsv[..., 2] > WHITE_VALUE) & (hsv[..., 1] < WHITE_SATURATION)))


def keep_patches(patches: np.ndarray, max_background: float = MAX_BACKGROUND) -> np.ndarray:
    """Boolean mask of patches with at most ``max_background`` white pixels."""
    return np.array([background_fraction(p) <= max_background for p in patches], dtype=bool)


def to_tensor(patches: np.ndarray, normalizer: Callable | None = None) -> torch.Tensor:
    """RGB uint8 ``(N, H, W, 3)`` -> ImageNet-normalised float ``(N, 3, H, W)``.

    ``normalizer`` (e.g. a :class:`~her2viewer.stain.MacenkoNormalizer`) is applied
    to each patch first.
    """
    if normalizer is not None:
        patches = np.stack([normalizer(p) for p in patches])
    x = torch.from_numpy(np.ascontiguousarray(patches[..., :3])).permute(0, 3, 1, 2).float() / 255
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x - mean) / std


def input_transform(meta: dict) -> Callable[[np.ndarray], torch.Tensor]:
    """The patch -> model-input function a bundle's metadata describes.

    Patches are resized to ``meta["input_size"]`` (when given and different), Macenko
    normalised with ``meta["normalizer"]`` (when given) and ImageNet-normalised.
    """
    normalizer = MacenkoNormalizer.from_dict(meta["normalizer"]) if meta.get("normalizer") else None
    size = meta.get("input_size")

    def transform(patches: np.ndarray) -> torch.Tensor:
        if size and patches.shape[1] != size:
            patches = np.stack(
                [cv2.resize(p, (size, size), interpolation=cv2.INTER_AREA) for p in patches]
            )
        return to_tensor(patches, normalizer)

    return transform


def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random flips, right-angle rotation and brightness/contrast jitter of a batch."""
    if torch.rand(1, generator=generator) < 0.5:
        x = x.flip(3)
    if torch.rand(1, generator=generator) < 0.5:
        x = x.flip(2)
    x = torch.rot90(x, int(torch.randint(0, 4, (1,), generator=generator)), (2, 3))
    scale = 1 + 0.2 * (torch.rand(x.shape[0], 1, 1, 1, generator=generator) - 0.5)
    shift = 0.2 * (torch.rand(x.shape[0], 1, 1, 1, generator=generator) - 0.5)
    return x * scale + shift


# --------------------------------------------------------------------------- training
@dataclass
class TrainResult:
    """Loss per epoch and the wall time of a training run."""

    losses: list[float]
    seconds: float


def train_patch_cnn(
    model: nn.Module,
    x: torch.Tensor,
    y: np.ndarray,
    epochs: int = 5,
    batch_size: int = 16,
    lr: float = 1e-3,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> TrainResult:
    """Train in place with Adam and cross-entropy on augmented batches.

    Parameters
    ----------
    model : torch.nn.Module
        From :func:`build_patch_cnn`.
    x : torch.Tensor
        ``(N, 3, H, W)`` from :func:`to_tensor`.
    y : numpy.ndarray
        ``(N,)`` class indices.
    epochs, batch_size, lr, seed, device
        The usual.
    """
    generator = torch.Generator().manual_seed(seed)
    model.to(device).train()
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    target = torch.as_tensor(np.asarray(y), dtype=torch.long)
    losses, start = [], time.perf_counter()
    for _ in range(epochs):
        order, total = torch.randperm(len(x), generator=generator), 0.0
        for batch in order.split(batch_size):
            optimiser.zero_grad()
            logits = model(augment(x[batch], generator).to(device))
            loss = nn.functional.cross_entropy(logits, target[batch].to(device))
            loss.backward()
            optimiser.step()
            total += loss.item() * len(batch)
        losses.append(total / len(x))
    model.eval()
    return TrainResult(losses, time.perf_counter() - start)


@torch.no_grad()
def predict_proba(
    model: nn.Module, x: torch.Tensor, batch_size: int = 16, device: torch.device | str = "cpu"
) -> np.ndarray:
    """Softmax class probabilities ``(N, C)`` for a batch tensor."""
    model.to(device).eval()
    out = [torch.softmax(model(b.to(device)), 1).cpu() for b in x.split(batch_size)]
    return torch.cat(out).numpy() if out else np.zeros((0, 0), np.float32)


def slide_grade(patch_probs: np.ndarray) -> tuple[int, np.ndarray]:
    """Slide-level grade: argmax of the mean patch probability.

    Returns
    -------
    (int, numpy.ndarray)
        Class index and the mean probability per class.
    """
    if len(patch_probs) == 0:
        raise ModelError("No tissue patch to grade; check the slide and the background limit.")
    mean = np.asarray(patch_probs, dtype=np.float64).mean(0)
    return int(mean.argmax()), mean


# --------------------------------------------------------------------------- weights
def save_patch_cnn(path: str | Path, model: nn.Module, meta: dict) -> Path:
    """Save a bundle (``bundle.json`` + ``model.safetensors``).

    ``meta`` must give ``arch`` and ``classes``; it may add ``normalizer``
    (``MacenkoNormalizer.to_dict()``), ``patch_size``, metrics and provenance.
    """
    meta = {"model_kind": MODEL_KIND, "patch_size": PATCH_SIZE, **meta}
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    return save_bundle(path, meta, {"model": state})


def _read_state(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        return load_safetensors_file(str(path))
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is the user's file
        raise ModelError(
            f"Cannot read weights from {path.name}: {str(exc).splitlines()[0]}"
        ) from exc
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ModelError(f"{path.name} holds no state dict.")
    return {k.removeprefix("module."): v for k, v in state.items()}


def load_weights(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> nn.Module:
    """Load a state dict strictly; a mismatch is a one-line :class:`ModelError`."""
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        missing = set(model.state_dict()) - set(state)
        raise ModelError(
            f"{source} does not fit this architecture ({len(missing)} missing tensors, "
            "or tensor shapes differ); check --arch and the number of classes."
        ) from exc
    return model.eval()


def load_patch_cnn(
    path: str | Path, arch: str | None = None, classes: tuple[str, ...] | None = None
) -> tuple[nn.Module, dict]:
    """Load a patch CNN from a bundle, a ``.safetensors`` file or a ``.pt``/``.pth`` state dict.

    Parameters
    ----------
    path : path
        Bundle folder/zip, or weights file.
    arch, classes : optional
        Required for plain weights files; taken from ``bundle.json`` for bundles.

    Returns
    -------
    (torch.nn.Module, dict)
        The model in eval mode and its metadata (arch, classes, ...).

    Raises
    ------
    ModelError
        Missing file, wrong model kind, unknown architecture, or weights that do not fit.
    """
    path = Path(path)
    if is_bundle(path):
        bundle = load_bundle(path)
        if bundle.kind != MODEL_KIND:
            raise ModelError(f"{path.name} is a '{bundle.kind}' bundle, not a patch CNN.")
        meta, state = dict(bundle.meta), bundle.state_dict("model")
    elif path.is_file():
        if arch is None:
            raise ModelError(f"{path.name} is a plain weights file; give its architecture.")
        meta = {"arch": arch, "classes": list(classes or DEFAULT_CLASSES)}
        state = _read_state(path)
    else:
        raise ModelError(f"Model file not found: {path}")
    model = build_patch_cnn(meta["arch"], len(meta["classes"]), seed=None)
    return load_weights(model, state, path.name), meta
