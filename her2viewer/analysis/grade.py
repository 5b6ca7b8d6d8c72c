"""Grade (seed 004): per-patch IHC grades of a slide with a patch CNN, and Grad-CAM maps.

:func:`analyse_grade` takes an open slide and a model (bundle or weights file; the demo
bundle by default) and returns plain data with level-0 coordinates. Patches are the
tumor-enriched ones of :func:`~her2viewer.models.patch_data.slide_patches`; the slide
grade is the argmax of the mean patch probability
(:func:`~her2viewer.models.patch_cnn.slide_grade`). :meth:`GradeResult.layers` and
:func:`gradcam_layer` turn results into the viewer's layers. Results save to JSON /
``.npy`` so the GUI and later runs reuse them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from torch import nn

from her2viewer.analysis.gradcam import GradCamMap, slide_gradcam
from her2viewer.annotations.roi import Region, region_summary, summary_region
from her2viewer.devices import choose_device
from her2viewer.errors import ModelError
from her2viewer.jobs import JobContext
from her2viewer.models.checks import (
    apply_pixel_size,
    check_slide_scope,
    demo_notice,
    require_finite,
)
from her2viewer.models.patch_cnn import (
    PATCH_SIZE,
    default_grading_bundle,
    input_transform,
    load_patch_cnn,
    predict_proba,
    slide_grade,
    target_layer,
)
from her2viewer.models.patch_data import slide_patches
from her2viewer.outputs import write_text_atomic
from her2viewer.overlay.layers import HeatmapLayer, MaskLayer
from her2viewer.slide import Slide, open_slide

#: Colour of each grade in the per-patch layer (RGB).
GRADE_COLORS = {"0": (70, 130, 180), "1+": (250, 210, 0), "2+": (245, 130, 0), "3+": (200, 0, 0)}
#: Grid step of grading, px at the patch magnification: half-overlapping patches (training
#: overlaps them too), so small tumor regions still hold whole patches.
GRADING_STEP = PATCH_SIZE // 2
#: Most patches a Grad-CAM of the visible region may take (about a minute on a CPU).
MAX_VIEW_PATCHES = 256
#: The counted phase of grading (the model's pass over the patches follows it).
PHASE = "reading patches"


@dataclass
class GradeResult:
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
    rule : str
        How the patches were chosen (``"tumor mask"``, ``"stain density"``, ...).
    step_level0 : int
        Grid step in level-0 pixels.
    notice : str or None
        :data:`~her2viewer.models.checks.DEMO_NOTICE` for a synthetic demo bundle.
    warning : str or None
        The sentence of :func:`~her2viewer.models.checks.check_slide_scope` when the
        slide is outside what the bundle accepts.
    roi : dict
        The region graded and its area (:func:`~her2viewer.annotations.roi.region_summary`).
    """

    coords: np.ndarray
    probs: np.ndarray
    classes: list[str]
    grade: str
    mean_probability: np.ndarray
    patch_size_level0: int
    slide_size: tuple[int, int]
    rule: str
    step_level0: int
    notice: str | None = None
    warning: str | None = None
    roi: dict = field(default_factory=dict)

    def layers(self) -> list[MaskLayer]:
        """Per-patch grade layer: the grid cell around each patch centre in its grade's colour.

        Cells are ``step_level0`` wide, so half-overlapping patches tile the tissue.
        """
        cell = self.step_level0 / 2
        width, height = (int(np.ceil(s / cell)) for s in self.slide_size)
        labels = np.zeros((height, width), np.uint8)
        starts = (self.coords + (self.patch_size_level0 - self.step_level0) / 2) / cell
        for (c0, r0), grade in zip(np.round(starts).astype(int), self.probs.argmax(1), strict=True):
            labels[max(r0, 0) : r0 + 2, max(c0, 0) : c0 + 2] = grade + 1
        names = {k + 1: f"IHC {name} (patch grade)" for k, name in enumerate(self.classes)}
        colors = {
            k + 1: GRADE_COLORS.get(name, (255, 0, 255)) for k, name in enumerate(self.classes)
        }
        layer = MaskLayer(
            f"Patch grades ({', '.join(self.classes)})",
            labels=labels,
            downsample=cell,
            class_names=names,
            colors=colors,
            mode="both",
        )
        return [layer]

    def summary(self) -> dict:
        """JSON-ready figures: grade, class probabilities, patch counts, notice and warning."""
        counts = np.bincount(self.probs.argmax(1), minlength=len(self.classes))
        return {
            "grade": self.grade,
            "patches": int(len(self.probs)),
            "patch_choice": self.rule,
            "mean_probability": dict(
                zip(self.classes, np.round(self.mean_probability, 4).tolist(), strict=True)
            ),
            "patch_grades": dict(zip(self.classes, counts.tolist(), strict=True)),
            "notice": self.notice,
            "warning": self.warning,
            **self.roi,
        }

    def save(self, path: str | Path) -> Path:
        """Write the result as JSON, atomically (an :class:`OutputError` when it cannot)."""
        return write_text_atomic(
            path,
            json.dumps(
                {
                    "classes": self.classes,
                    "grade": self.grade,
                    "notice": self.notice,
                    "warning": self.warning,
                    "mean_probability": self.mean_probability.tolist(),
                    "aggregation": "mean patch probability, argmax",
                    "patch_choice": self.rule,
                    "patch_size_level0": self.patch_size_level0,
                    "step_level0": self.step_level0,
                    "slide_size": list(self.slide_size),
                    "coords": self.coords.tolist(),
                    "probs": self.probs.tolist(),
                    **self.roi,
                }
            ),
        )

    @classmethod
    def load(cls, path: str | Path) -> GradeResult:
        """Read a result written by :meth:`save` (a :class:`ModelError` when unreadable)."""
        try:
            data = json.loads(Path(path).read_text())
            return cls(
                np.asarray(data["coords"], dtype=np.int64).reshape(-1, 2),
                np.asarray(data["probs"], dtype=np.float64).reshape(-1, len(data["classes"])),
                list(data["classes"]), data["grade"], np.asarray(data["mean_probability"]),
                int(data["patch_size_level0"]), tuple(data["slide_size"]),
                data["patch_choice"], int(data["step_level0"]), data["notice"], data["warning"],
                summary_region(data),
            )  # fmt: skip
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ModelError(f"No readable grading result in {path}.") from exc


def _slide_size(slide_path: str | Path) -> tuple[int, int]:
    with open_slide(slide_path) as slide:
        return slide.info.width, slide.info.height


def _model(model_path, arch):
    return load_patch_cnn(model_path or default_grading_bundle(), arch=arch)


def _scope(slide: Slide, meta: dict, model_path, mpp: float | None) -> str | None:
    """Check the slide against the bundle's ``accepts``; return the warning, if any."""
    name = f"the grading model {Path(model_path or default_grading_bundle()).name}"
    return check_slide_scope(meta, apply_pixel_size(slide, mpp).info, name)


@dataclass(frozen=True)
class GradeOptions:
    """Options of :func:`analyse_grade`.

    Attributes
    ----------
    arch : str, optional
        Architecture of a plain weights file.
    limit : int, optional
        Grade a random (seeded) subset of at most this many patches.
    device : str
        ``auto``, ``cuda``, ``mps`` or ``cpu``.
    tumor : str
        Patch rule of :func:`~her2viewer.models.patch_data.slide_patches`.
    step : int
        Grid step (px at 20x); half the patch by default.
    mpp : float, optional
        Pixel size (um/px) for a slide that records none.
    region : Region, optional
        Grade only the patches whose centre lies in this region (level-0 pixels).
    """

    arch: str | None = None
    limit: int | None = None
    device: str = "auto"
    tumor: str = "auto"
    step: int = GRADING_STEP
    mpp: float | None = None
    region: Region | None = None


def analyse_grade(
    slide: Slide,
    bundle: str | Path | None = None,
    options: GradeOptions | None = None,
    context: JobContext | None = None,
    model: tuple[nn.Module, dict] | None = None,
) -> GradeResult:
    """Grade the tumor-enriched tissue patches (512 px, 20x, <= 60% white) of a slide.

    Parameters
    ----------
    slide : Slide
        An open IHC slide.
    bundle : path, optional
        Patch CNN bundle, or weights file with ``options.arch``; the demo bundle by default.
    options : GradeOptions, optional
    context : JobContext, optional
        Progress (while patches are read) and cancellation of a background job.
    model : tuple, optional
        ``(network, metadata)`` already loaded from ``bundle`` by
        :func:`~her2viewer.models.patch_cnn.load_patch_cnn` (a cohort run loads it once
        per worker); loaded from ``bundle`` when omitted.

    Raises
    ------
    ModelError
        When the bundle needs a pixel size the slide lacks, the model's output is not
        finite, or no tissue patch lies in the region.
    RoiError
        When the region lies outside the slide.
    """
    options = options or GradeOptions()
    region = options.region.on_slide(slide.info) if options.region is not None else None
    network, meta = model or _model(bundle, options.arch)
    warning = _scope(slide, meta, bundle, options.mpp)
    progress = (lambda done, total: context.report(done, total, PHASE)) if context else None
    chosen = slide_patches(
        slide.info.path, limit=options.limit, tumor=options.tumor, step=options.step,
        progress=progress, mpp=options.mpp, roi=region,
    )  # fmt: skip
    probs = predict_proba(
        network, input_transform(meta)(chosen.patches), device=choose_device(options.device)
    )
    name = Path(slide.info.path).name
    require_finite(probs, f"The grading output on {name}")
    index, mean = slide_grade(probs)
    classes = list(meta["classes"])
    return GradeResult(
        chosen.coords, probs, classes, classes[index], mean, chosen.patch_size_level0,
        (slide.info.width, slide.info.height), chosen.rule, chosen.step_level0,
        demo_notice(meta), warning, region_summary(region, slide.info.mpp_x),
    )  # fmt: skip


def gradcam_slide(
    slide_path: str | Path,
    model_path: str | Path | None = None,
    grade: str | None = None,
    arch: str | None = None,
    limit: int | None = None,
    downsample: float = 16.0,
    device: str = "auto",
    progress: Callable[[int, int], None] | None = None,
    tumor: str = "auto",
    rect: tuple[float, float, float, float] | None = None,
    mpp: float | None = None,
    model: tuple[nn.Module, dict] | None = None,
) -> GradCamMap:
    """Grad-CAM of a grade (each patch's predicted one by default) over a slide's patches.

    Parameters
    ----------
    rect : tuple, optional
        Level-0 ``(x0, y0, x1, y1)``, e.g. the region on screen: only the patches
        overlapping it, at most :data:`MAX_VIEW_PATCHES`.
    tumor : str
        Patch rule (``"none"``: every tissue patch).
    mpp : float, optional
        Pixel size (um/px) for a slide that records none.
    model : tuple, optional
        ``(network, metadata)`` already loaded from ``model_path`` (as in
        :func:`analyse_grade`); loaded from ``model_path`` when omitted.

    Returns a level-0-aligned :class:`~her2viewer.analysis.gradcam.GradCamMap`.

    Raises
    ------
    ModelError
        When ``grade`` is not one of the model's classes, or the region is too large.
    """
    model, meta = model or _model(model_path, arch)
    classes = list(meta["classes"])
    if grade is not None and grade not in classes:
        raise ModelError(f"Grade '{grade}' is not one of the model's {', '.join(classes)}.")
    most = MAX_VIEW_PATCHES if rect is not None else None
    with open_slide(slide_path) as slide:
        _scope(slide, meta, model_path, mpp)
    chosen = slide_patches(slide_path, limit=limit, tumor=tumor, rect=rect, most=most, mpp=mpp)
    torch_device = choose_device(device)
    layer, channels_last = target_layer(model.to(torch_device), meta["arch"])
    transform = input_transform(meta)
    return slide_gradcam(
        lambda i: chosen.patches[i],
        chosen.coords,
        chosen.patch_size_level0,
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
