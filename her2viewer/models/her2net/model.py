"""A loaded HER2Net: tumor detector, five tile sub-classifiers and the integrated classifier.

Bundle layout (``model_kind`` ``"her2net"``): ``bundle.json`` with the tiling
(``magnification``, ``tile_size``, ``input_size``), the network configs, the
integrated classifier's spec and the thresholds; ``segmenter.safetensors``,
``classifier_0..4.safetensors`` and ``integrated.safetensors`` (the exported
arrays of :class:`~her2viewer.models.her2net.ensemble.IntegratedClassifier`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from her2viewer.devices import choose_device
from her2viewer.errors import ModelError
from her2viewer.models.bundle import load_bundle, save_bundle, shipped_bundle
from her2viewer.models.her2net.ensemble import N_INPUTS, IntegratedClassifier
from her2viewer.models.her2net.networks import build_segmenter, build_tile_classifier
from her2viewer.models.patch_cnn import load_weights, to_tensor
from her2viewer.paths import RESOURCES_DIR

MODEL_KIND = "her2net"
DEMO_BUNDLE = RESOURCES_DIR / "her2net_demo"


def demo_bundle_path() -> Path:
    """The HER2Net demo bundle shipped in ``resources/her2net_demo``."""
    return shipped_bundle(
        DEMO_BUNDLE, "HER2Net demo bundle", "python -m her2viewer.models.her2net.demo_bundle"
    )


@dataclass
class Her2NetModel:
    """Everything prediction needs, on one device.

    Attributes
    ----------
    meta : dict
        ``bundle.json``.
    segmenter : torch.nn.Module
        Tumor detector, two-class logits per pixel.
    classifiers : list of torch.nn.Module
        The five tile sub-classifiers.
    integrated : IntegratedClassifier
        Five outputs -> probability of *strong*.
    device : torch.device
    """

    meta: dict
    segmenter: nn.Module
    classifiers: list[nn.Module]
    integrated: IntegratedClassifier
    device: torch.device

    @property
    def magnification(self) -> float:
        """Objective magnification the tiles are cut at."""
        return float(self.meta["magnification"])

    @property
    def tile_size(self) -> int:
        """Tile side in pixels at :attr:`magnification` (512 in the seed)."""
        return int(self.meta["tile_size"])

    @property
    def input_size(self) -> int:
        """Side of the network input; smaller than ``tile_size`` for reduced-resolution models."""
        return int(self.meta["input_size"])

    def _inputs(self, tiles: np.ndarray) -> torch.Tensor:
        x = to_tensor(np.asarray(tiles, np.uint8))
        return x.to(self.device, non_blocking=True).contiguous(memory_format=torch.channels_last)

    @torch.no_grad()
    def tumor_probability(self, tiles: np.ndarray) -> np.ndarray:
        """Tumor probability per pixel, ``(N, s, s)`` float32, for RGB tiles ``(N, s, s, 3)``."""
        with _autocast(self.device):
            logits = self.segmenter(self._inputs(tiles))
        return torch.softmax(logits.float(), 1)[:, 1].cpu().numpy()

    @torch.no_grad()
    def tile_outputs(self, tiles: np.ndarray) -> np.ndarray:
        """The five sub-classifiers' probabilities of *strong*, ``(N, 5)``."""
        x = self._inputs(tiles)
        with _autocast(self.device):
            outs = [torch.softmax(m(x).float(), 1)[:, 1] for m in self.classifiers]
        return torch.stack(outs, 1).cpu().numpy().astype(np.float64)

    def strong_probability(self, tiles: np.ndarray) -> np.ndarray:
        """Integrated probability of *strong* per tile, ``(N,)``."""
        return self.integrated.predict_proba(self.tile_outputs(tiles))


def _autocast(device: torch.device):
    """Mixed precision on CUDA, nothing elsewhere."""
    return torch.autocast("cuda", dtype=torch.float16, enabled=device.type == "cuda")


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}


def _array_tensor(values) -> torch.Tensor:
    """Integers as int64 (tree indices), everything else as float64."""
    values = np.asarray(values)
    dtype = np.int64 if values.dtype.kind in "iu" else np.float64
    return torch.from_numpy(np.ascontiguousarray(values, dtype=dtype))


def save_her2net(
    path: str | Path,
    meta: dict,
    segmenter: nn.Module,
    classifiers: list[nn.Module],
    integrated: IntegratedClassifier,
) -> Path:
    """Write a HER2Net bundle.

    Parameters
    ----------
    path : path
        Bundle folder (or ``.zip``).
    meta : dict
        Must give ``magnification``, ``tile_size``, ``input_size``, ``segmenter`` and
        ``classifier`` configs; provenance and metrics are kept as given.
    segmenter, classifiers, integrated
        The trained parts; exactly five classifiers.
    """
    if len(classifiers) != N_INPUTS:
        raise ModelError(f"HER2Net needs {N_INPUTS} tile sub-classifiers, got {len(classifiers)}.")
    tensors = {"segmenter": _state(segmenter)}
    tensors |= {f"classifier_{i}": _state(m) for i, m in enumerate(classifiers)}
    tensors["integrated"] = {k: _array_tensor(v) for k, v in integrated.arrays.items()}
    meta = {"model_kind": MODEL_KIND, **meta, "integrated": integrated.meta()}
    return save_bundle(path, meta, tensors)


def load_her2net(path: str | Path | None = None, device: str = "auto") -> Her2NetModel:
    """Load a HER2Net bundle (the demo bundle when ``path`` is None).

    Raises
    ------
    ModelError
        Missing or wrong bundle, or weights that do not fit the recorded architectures.
    """
    path = demo_bundle_path() if path is None else Path(path)
    bundle = load_bundle(path, MODEL_KIND)
    meta = bundle.meta
    target = choose_device(device)
    segmenter = load_weights(
        build_segmenter(meta["segmenter"]), bundle.state_dict("segmenter"), f"{path.name} segmenter"
    )
    classifiers = [
        load_weights(
            build_tile_classifier(meta["classifier"]),
            bundle.state_dict(f"classifier_{i}"),
            f"{path.name} classifier {i}",
        )
        for i in range(N_INPUTS)
    ]
    info = meta["integrated"]
    arrays = {k: v.numpy() for k, v in bundle.state_dict("integrated").items()}
    integrated = IntegratedClassifier(
        info["kind"], info["spec"], arrays, info.get("params", {}), info.get("cv_auc", float("nan"))
    )
    for module in (segmenter, *classifiers):
        module.to(target).to(memory_format=torch.channels_last).eval()
    return Her2NetModel(dict(meta), segmenter, classifiers, integrated, target)
