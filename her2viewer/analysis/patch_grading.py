"""Slide analyses with a patch-grading CNN: per-patch IHC grades and Grad-CAM score maps.

Each function takes a slide path and a model (bundle or weights file) and returns
plain data with level-0 coordinates; :meth:`PatchGrading.layer` and
:func:`gradcam_layer` turn results into the viewer's heatmap layers. Results save
to JSON / ``.npy`` so the GUI and later runs reuse them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from her2viewer.analysis.gradcam import GradCamMap, slide_gradcam
from her2viewer.devices import choose_device
from her2viewer.errors import ModelError
from her2viewer.models.patch_cnn import (
    input_transform,
    load_patch_cnn,
    predict_proba,
    slide_grade,
    target_layer,
)
from her2viewer.models.patch_data import slide_patches
from her2viewer.overlay.layers import HeatmapLayer
from her2viewer.slide import open_slide


@dataclass
class PatchGrading:
    """Per-patch grades of one slide and the slide-level grade.

    Attributes
    ----------
    coords : numpy.ndarray
        ``(N, 2)`` level-0 top-left corners.
    probs : numpy.ndarray
        ``(N, C)`` class probabilities.
    classes : list of str
    grade : str
        Slide grade: argmax of the mean patch probability.
    mean_probability : numpy.ndarray
        ``(C,)``.
    patch_size_level0 : int
    slide_size : tuple of int
        Level-0 ``(width, height)``.
    """

    coords: np.ndarray
    probs: np.ndarray
    classes: list[str]
    grade: str
    mean_probability: np.ndarray
    patch_size_level0: int
    slide_size: tuple[int, int]

    def layer(self) -> HeatmapLayer:
        """Per-patch grade layer (class index, 0 .. C-1) for the viewer."""
        return HeatmapLayer.from_patches(
            f"Patch CNN grade ({', '.join(self.classes)})",
            self.coords,
            self.probs.argmax(1),
            self.patch_size_level0,
            self.slide_size,
            vmin=0.0,
            vmax=float(len(self.classes) - 1),
            colormap="turbo",
        )

    def save(self, path: str | Path) -> Path:
        """Write the result as JSON."""
        path = Path(path)
        path.write_text(
            json.dumps(
                {
                    "classes": self.classes,
                    "grade": self.grade,
                    "mean_probability": self.mean_probability.tolist(),
                    "patch_size_level0": self.patch_size_level0,
                    "slide_size": list(self.slide_size),
                    "coords": self.coords.tolist(),
                    "probs": np.round(self.probs, 6).tolist(),
                }
            )
        )
        return path


def _slide_size(slide_path: str | Path) -> tuple[int, int]:
    with open_slide(slide_path) as slide:
        return slide.info.width, slide.info.height


def grade_slide(
    slide_path: str | Path,
    model_path: str | Path,
    arch: str | None = None,
    limit: int | None = None,
    device: str = "auto",
) -> PatchGrading:
    """Grade every tissue patch (512 px, 20x, <= 60% background) of a slide.

    Parameters
    ----------
    slide_path : path
        IHC slide.
    model_path : path
        Patch CNN bundle, or weights file with ``arch``.
    arch : str, optional
        Architecture of a plain weights file.
    limit : int, optional
        Grade a random (seeded) subset of at most this many patches.
    device : str
        ``auto``, ``cuda``, ``mps`` or ``cpu``.
    """
    model, meta = load_patch_cnn(model_path, arch=arch)
    patches, coords, size0 = slide_patches(slide_path, limit=limit)
    probs = predict_proba(model, input_transform(meta)(patches), device=choose_device(device))
    index, mean = slide_grade(probs)
    classes = list(meta["classes"])
    return PatchGrading(
        coords, probs, classes, classes[index], mean, size0, _slide_size(slide_path)
    )


def gradcam_slide(
    slide_path: str | Path,
    model_path: str | Path,
    grade: str | None = None,
    arch: str | None = None,
    limit: int | None = None,
    downsample: float = 16.0,
    device: str = "auto",
    progress: Callable[[int, int], None] | None = None,
) -> GradCamMap:
    """Grad-CAM of a grade (the predicted one by default) over a slide's tissue patches.

    Returns a level-0-aligned :class:`~her2viewer.analysis.gradcam.GradCamMap`.

    Raises
    ------
    ModelError
        When ``grade`` is not one of the model's classes.
    """
    model, meta = load_patch_cnn(model_path, arch=arch)
    classes = list(meta["classes"])
    if grade is not None and grade not in classes:
        raise ModelError(f"Grade '{grade}' is not one of the model's {', '.join(classes)}.")
    patches, coords, size0 = slide_patches(slide_path, limit=limit)
    torch_device = choose_device(device)
    layer, channels_last = target_layer(model.to(torch_device), meta["arch"])
    transform = input_transform(meta)
    return slide_gradcam(
        lambda i: patches[i],
        coords,
        size0,
        _slide_size(slide_path),
        model,
        layer,
        lambda p: transform(p).to(torch_device),
        classes.index(grade) if grade else None,
        channels_last,
        downsample,
        progress=progress,
    )


def gradcam_layer(result: GradCamMap, name: str = "Grad-CAM") -> HeatmapLayer:
    """The viewer's heatmap layer for a Grad-CAM map (values 0-1, NaN outside patches)."""
    return HeatmapLayer(name, values=result.values, downsample=result.downsample, smooth=True)
