"""Patch-grading CNNs for HER2 IHC (seed 004): torchvision backbones with a grade head.

Six torchvision architectures (AlexNet, VGG16, ResNet34, DenseNet121, Inception v3,
Swin-T) get a new classifier head for the IHC grades (``1+``, ``2+``, ``3+``, and
optionally ``0``). Patches are 512 px RGB tiles from tumor regions with at most 60%
white background, Macenko-normalised (stain vectors and hematoxylin range; DAB
amounts kept, see :func:`keep_dab_macenko`), augmented with flips, right-angle
rotations and brightness/contrast jitter during training.

Two training recipes: the whole network (:func:`train_patch_cnn`, for a GPU), or --
fast on a CPU -- a backbone with fixed seeded random weights used as a frozen feature
extractor and a trained linear grade head (:func:`head_inputs`,
:func:`fit_linear_head`); such a bundle stores only the head plus the backbone's seed
and checksum (:func:`seeded_backbone`). Other weights come from a user file: a model
bundle, a ``.safetensors`` state dict, or a ``.pt``/``.pth`` state dict read with
:func:`her2viewer.weights.load_tensors` (tensors only). Nothing is downloaded.

The slide grade is the argmax of the mean patch probability (:func:`slide_grade`).
"""

from __future__ import annotations

import hashlib
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

from her2viewer.errors import ModelError, StainError
from her2viewer.models.bundle import is_bundle, load_bundle, save_bundle, shipped_bundle
from her2viewer.models.checks import refuse_pickle, require_finite
from her2viewer.paths import RESOURCES_DIR
from her2viewer.stain import (
    MacenkoNormalizer,
    combine_stains,
    estimate_stain_matrix,
    separate_stains,
)
from her2viewer.stain.macenko import MACENKO_BETA, MAX_PERCENTILE
from her2viewer.stain.macenko import MIN_PIXELS as MIN_STAINED_PIXELS
from her2viewer.tissue.patching import MAX_BACKGROUND, white_pixels
from her2viewer.weights import load_tensors

ARCHITECTURES = ("alexnet", "vgg16", "resnet34", "densenet121", "inception_v3", "swin_t")
DEFAULT_CLASSES = ("1+", "2+", "3+")
PATCH_SIZE = 512
MODEL_KIND = "patch_cnn"
#: Demo bundle trained on the synthetic cohort by ``scripts/train_grading_demo.py``.
DEMO_GRADING_BUNDLE = RESOURCES_DIR / "models" / "patch_grading_demo"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _check_arch(arch: str) -> str:
    name = str(arch).lower().replace("-", "_")
    if name not in ARCHITECTURES:
        raise ModelError(f"Unknown architecture '{arch}'; choose from {', '.join(ARCHITECTURES)}.")
    return name


#: The final linear layer of each backbone (the grade head), as a submodule path.
HEAD_PATHS = {
    "alexnet": "classifier.6",
    "vgg16": "classifier.6",
    "resnet34": "fc",
    "inception_v3": "fc",
    "densenet121": "classifier",
    "swin_t": "head",
}


def head_layer(model: nn.Module, arch: str) -> nn.Linear:
    """The grade head (final linear layer) of a backbone built by :func:`build_patch_cnn`."""
    return model.get_submodule(HEAD_PATHS[_check_arch(arch)])


def _replace_head(model: nn.Module, arch: str, n_classes: int) -> nn.Module:
    """Swap the ImageNet classifier for an ``n_classes`` linear layer."""
    parent, _, name = HEAD_PATHS[arch].rpartition(".")
    old = head_layer(model, arch)
    setattr(model.get_submodule(parent), name, nn.Linear(old.in_features, n_classes))
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
    return float(np.mean(white_pixels(rgb)))


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


def keep_dab_macenko(normalizer: MacenkoNormalizer) -> Callable[[np.ndarray], np.ndarray]:
    """Macenko normalisation that keeps the DAB amounts as measured.

    The stain vectors are mapped onto the reference's and the hematoxylin range is
    scaled to the reference's 99th percentile, as Macenko does; the DAB amounts are
    not rescaled, because DAB intensity is what an IHC grade reads (rescaling each
    patch's DAB maximum would draw a faint 1+ membrane as dark as a 3+ one).
    """

    def normalise(rgb: np.ndarray) -> np.ndarray:
        try:
            source = estimate_stain_matrix(rgb, normalizer.default)
        except StainError:
            return np.asarray(rgb)[..., :3].copy()
        stains = separate_stains(rgb, source)
        hematoxylin = stains[..., 0]
        stained = hematoxylin[hematoxylin > MACENKO_BETA]
        if stained.size >= MIN_STAINED_PIXELS:
            hematoxylin *= normalizer.max_amounts[0] / max(
                np.percentile(stained, MAX_PERCENTILE), 1e-3
            )
        stains[..., 2] = 0.0
        return combine_stains(stains, normalizer.matrix)

    return normalise


def input_transform(meta: dict) -> Callable[[np.ndarray], torch.Tensor]:
    """The patch -> model-input function a bundle's metadata describes.

    Patches are resized to ``meta["input_size"]`` (when given and different), Macenko
    normalised with ``meta["normalizer"]`` (when given; with ``"keep_dab": true`` by
    :func:`keep_dab_macenko`) and ImageNet-normalised.
    """
    described = meta.get("normalizer")
    normalizer = MacenkoNormalizer.from_dict(described) if described else None
    if normalizer is not None and described.get("keep_dab"):
        normalizer = keep_dab_macenko(normalizer)
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
    progress: Callable[[int, int], None] | None = None,
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
    progress : callable, optional
        ``progress(done, total)`` after each epoch.
    """
    generator = torch.Generator().manual_seed(seed)
    model.to(device).train()
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    target = torch.as_tensor(np.asarray(y), dtype=torch.long)
    losses, start = [], time.perf_counter()
    for epoch in range(epochs):
        order, total = torch.randperm(len(x), generator=generator), 0.0
        for batch in order.split(batch_size):
            optimiser.zero_grad()
            logits = model(augment(x[batch], generator).to(device))
            loss = nn.functional.cross_entropy(logits, target[batch].to(device))
            loss.backward()
            optimiser.step()
            total += loss.item() * len(batch)
        losses.append(total / len(x))
        if progress is not None:
            progress(epoch + 1, epochs)
    model.eval()
    return TrainResult(losses, time.perf_counter() - start)


@torch.no_grad()
def head_inputs(
    model: nn.Module,
    arch: str,
    x: torch.Tensor,
    batch_size: int = 16,
    device: torch.device | str = "cpu",
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """The features the grade head sees (its input), ``(N, D)`` float32.

    ``progress(done, total)`` is called after each batch.
    """
    captured: list[torch.Tensor] = []
    handle = head_layer(model, arch).register_forward_pre_hook(
        lambda _module, args: captured.append(args[0].detach().cpu())
    )
    model.to(device).eval()
    try:
        for start in range(0, len(x), batch_size):
            model(x[start : start + batch_size].to(device))
            if progress is not None:
                progress(min(len(x), start + batch_size), len(x))
    finally:
        handle.remove()
    return torch.cat(captured).numpy() if captured else np.zeros((0, 0), np.float32)


def fit_linear_head(
    model: nn.Module, arch: str, features: np.ndarray, y: np.ndarray, c: float = 0.1
) -> nn.Module:
    """Train the grade head on frozen features and fold the standardisation into it.

    A multinomial logistic regression (L2, inverse strength ``c``) is fitted on
    standardised features; its weights divided by the feature scale become the
    head's weights, so the network maps patches to the same probabilities end to end
    (and Grad-CAM runs through it unchanged).

    Raises
    ------
    ModelError
        When the training labels hold fewer than two classes.
    """
    from sklearn.linear_model import LogisticRegression  # training only: keeps imports light
    from sklearn.preprocessing import StandardScaler

    y = np.asarray(y, dtype=int)
    head = head_layer(model, arch)
    if len(np.unique(y)) < 2:
        raise ModelError("The training patches hold one grade only; a grade head needs two.")
    scaler = StandardScaler().fit(features)
    classifier = LogisticRegression(C=c, max_iter=2000, class_weight="balanced")
    classifier.fit(scaler.transform(features), y)
    rows, offsets = classifier.coef_, classifier.intercept_
    if len(classifier.classes_) == 2:  # one logit for the second class: softmax([0, z])
        rows, offsets = np.vstack([np.zeros_like(rows[0]), rows[0]]), np.r_[0.0, offsets]
    coef = np.zeros((head.out_features, features.shape[1]))
    intercept = np.full(head.out_features, -1e4)  # a grade absent from training is never called
    coef[classifier.classes_], intercept[classifier.classes_] = rows, offsets
    weight = coef / scaler.scale_
    bias = intercept - weight @ scaler.mean_
    with torch.no_grad():
        head.weight.copy_(torch.as_tensor(weight, dtype=head.weight.dtype))
        head.bias.copy_(torch.as_tensor(bias, dtype=head.bias.dtype))
    return model.eval()


def backbone_digest(model: nn.Module, arch: str) -> str:
    """SHA-256 of every tensor of the network except the grade head (fixed-order bytes)."""
    prefix = HEAD_PATHS[_check_arch(arch)] + "."
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        if not name.startswith(prefix):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


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
def seeded_backbone(arch: str, seed: int, n_classes: int) -> tuple[nn.Module, dict]:
    """A backbone with fixed random weights regenerated from ``seed``, and its record.

    The record (``weights``, ``seed``, ``sha256`` of the non-head tensors, torch
    version) goes into ``bundle.json`` so a bundle stores only the trained head.
    """
    model = build_patch_cnn(arch, n_classes, seed=seed)
    record = {
        "weights": "random",
        "seed": int(seed),
        "sha256": backbone_digest(model, arch),
        "torch": torch.__version__,
    }
    return model, record


def save_patch_cnn(path: str | Path, model: nn.Module, meta: dict) -> Path:
    """Save a bundle (``bundle.json`` + ``model.safetensors`` or ``head.safetensors``).

    ``meta`` must give ``arch`` and ``classes``; it may add ``normalizer``
    (``MacenkoNormalizer.to_dict()``), ``patch_size``, metrics and provenance. With a
    ``backbone`` record from :func:`seeded_backbone` only the grade head is stored.
    """
    meta = {"model_kind": MODEL_KIND, "patch_size": PATCH_SIZE, **meta}
    if meta.get("backbone", {}).get("weights") == "random":
        tensors = {"head": head_layer(model, meta["arch"]).state_dict()}
    else:
        tensors = {"model": model.state_dict()}
    return save_bundle(path, meta, tensors)


def _from_seeded_backbone(bundle, meta: dict, source: str) -> nn.Module:
    """Rebuild a head-only bundle's network: seeded backbone, checked, plus the stored head."""
    record = meta["backbone"]
    model = build_patch_cnn(meta["arch"], len(meta["classes"]), seed=int(record["seed"]))
    if backbone_digest(model, meta["arch"]) != record.get("sha256"):
        raise ModelError(
            f"{source}: the backbone regenerated from seed {record['seed']} differs from the "
            f"one it was trained with (torch {record.get('torch')}, here {torch.__version__})."
        )
    head = head_layer(model, meta["arch"])
    load_weights(head, bundle.state_dict("head"), source)
    return model.eval()


def default_grading_bundle() -> Path:
    """The demo grading bundle shipped in ``resources/`` (synthetic, no clinical claim)."""
    return shipped_bundle(
        DEMO_GRADING_BUNDLE, "patch-grading demo bundle", "python scripts/train_grading_demo.py"
    )


def _read_state(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix != ".safetensors":
        state = load_tensors(path)
    else:
        try:
            state = load_safetensors_file(str(path))
        except Exception as exc:  # noqa: BLE001 - any reading failure is the user's file
            raise refuse_pickle(path, exc) from exc
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ModelError(f"{path.name} holds no state dict.")
    for tensor in state.values():
        require_finite(tensor, f"Weights file {path.name}")
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
        bundle = load_bundle(path, MODEL_KIND)
        meta = dict(bundle.meta)
        if meta.get("backbone", {}).get("weights") == "random":
            return _from_seeded_backbone(bundle, meta, path.name), meta
        state = bundle.state_dict("model")
    elif path.is_file():
        if arch is None:
            raise ModelError(f"{path.name} is a plain weights file; give its architecture.")
        meta = {"arch": arch, "classes": list(classes or DEFAULT_CLASSES)}
        state = _read_state(path)
    else:
        raise ModelError(f"Model file not found: {path}")
    model = build_patch_cnn(meta["arch"], len(meta["classes"]), seed=None)
    return load_weights(model, state, path.name), meta
