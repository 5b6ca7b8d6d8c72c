"""Data and evaluation for the patch-grading CNNs: tumor patches, patient splits, macro-AUC.

A cohort is a ``labels.csv`` with ``case_id``, ``ihc_path`` (relative to the CSV),
``ihc_score`` (0-3) and ``patient_id`` columns, as written by
:func:`her2viewer.slide.synthetic.write_cohort`. Patches come from the tissue
module's grid (512 px at 20x, patches with more than 60% white dropped) and are
tumor-enriched (:func:`slide_patches`: inside the tumor mask when the slide has one,
else the more cell-dense half by :func:`stain_density`); every patch inherits its
slide's IHC score.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from sklearn.metrics import roc_auc_score

from her2viewer.annotations.roi import Region
from her2viewer.errors import ModelError
from her2viewer.models.checks import apply_pixel_size
from her2viewer.models.patch_cnn import PATCH_SIZE, keep_patches
from her2viewer.slide import open_slide
from her2viewer.stain import HDAB, separate_stains
from her2viewer.stats.metrics import auc_delong, confusion_matrix
from her2viewer.tables import read_csv_rows
from her2viewer.tissue import make_patch_grid, segment_tissue
from her2viewer.tissue.masks import read_mask
from her2viewer.tissue.patching import MAX_BACKGROUND

SCORE_NAMES = {0: "0", 1: "1+", 2: "2+", 3: "3+"}
REQUIRED_COLUMNS = ("case_id", "ihc_path", "ihc_score", "patient_id")
#: How patches are chosen: see :func:`slide_patches`.
TUMOR_RULES = ("auto", "mask", "stain", "none")
#: A patch counts as tumor when at least this fraction of it lies in the tumor mask.
MIN_TUMOR_FRACTION = 0.5


@dataclass
class CohortCase:
    """One IHC slide of a cohort."""

    case_id: str
    path: Path
    score: int
    patient_id: str


def read_cohort(labels_csv: str | Path) -> list[CohortCase]:
    """Read a cohort ``labels.csv``.

    Raises
    ------
    ModelError
        When the file is missing or lacks a required column.
    """
    labels_csv = Path(labels_csv)
    rows = read_csv_rows(labels_csv, REQUIRED_COLUMNS, ModelError, "Labels file")
    return [
        CohortCase(
            r["case_id"], labels_csv.parent / r["ihc_path"], int(r["ihc_score"]), r["patient_id"]
        )
        for r in rows
    ]


@dataclass
class TumorRegion:
    """A tumor mask and how a slide's level-0 pixels map onto it.

    Attributes
    ----------
    mask : numpy.ndarray
        Boolean tumor mask.
    downsample : float
        Level-0 pixels (of the mask's frame) per mask pixel.
    to_mask_frame : numpy.ndarray
        ``(3, 3)`` map from the slide's level-0 pixels to the mask frame's level-0 pixels.
    source : str
        Where the mask came from.
    """

    mask: np.ndarray
    downsample: float
    to_mask_frame: np.ndarray
    source: str


def tumor_region(slide_path: str | Path) -> TumorRegion | None:
    """The tumor mask of a synthetic case's slide, from the ``truth.json`` beside it.

    The mask is in the H&E frame; for the IHC slide the case's
    ``transform_ihc_to_he`` maps IHC level-0 pixels onto it. Returns None for a slide
    without such a record (a real slide).
    """
    slide_path = Path(slide_path)
    record = slide_path.parent / "truth.json"
    if not record.is_file():
        return None
    truth = json.loads(record.read_text())
    frames = {
        truth.get("he_path"): np.eye(3),
        truth.get("ihc_path"): truth.get("transform_ihc_to_he"),
    }
    matrix = frames.get(slide_path.name)
    tumor = truth.get("masks", {}).get("tumor")
    if matrix is None or tumor is None:
        return None
    return TumorRegion(
        read_mask(slide_path.parent / tumor),
        float(truth["mask_downsample"]),
        np.asarray(matrix, float),
        str(record),
    )


def region_fraction(
    region: TumorRegion, coords: np.ndarray, size0: int, samples: int = 8
) -> np.ndarray:
    """Fraction of each patch inside the region, from ``samples`` x ``samples`` points."""
    offsets = (np.arange(samples) + 0.5) * size0 / samples
    ox, oy = (a.ravel() for a in np.meshgrid(offsets, offsets))
    xs = np.asarray(coords, float)[:, :1] + ox  # (N, samples^2)
    ys = np.asarray(coords, float)[:, 1:2] + oy
    m = region.to_mask_frame
    cols = np.floor((m[0, 0] * xs + m[0, 1] * ys + m[0, 2]) / region.downsample).astype(int)
    rows = np.floor((m[1, 0] * xs + m[1, 1] * ys + m[1, 2]) / region.downsample).astype(int)
    h, w = region.mask.shape
    inside = (rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)
    hits = np.zeros(xs.shape, bool)
    hits[inside] = region.mask[rows[inside], cols[inside]]
    return hits.mean(1) if len(xs) else np.zeros(0)


def stain_density(patches: np.ndarray) -> np.ndarray:
    """Cellularity score of each patch: spread of hematoxylin + DAB optical density at 128 px.

    Tumor is cell-dense: nuclei (hematoxylin) and, in HER2 IHC, membranes (DAB)
    alternate with cytoplasm at a high rate, so the stained optical density varies
    more than in sparse stroma (colour deconvolution with the default H-DAB vectors).
    """
    small = [cv2.resize(p, (128, 128), interpolation=cv2.INTER_AREA) for p in patches]
    return np.array([separate_stains(p, HDAB)[..., :2].sum(-1).std() for p in small])


@dataclass
class SlidePatches:
    """Patches read from a slide and how they were chosen.

    Attributes
    ----------
    patches : numpy.ndarray
        ``(N, size, size, 3)`` uint8.
    coords : numpy.ndarray
        ``(N, 2)`` level-0 top-left corners.
    patch_size_level0 : int
    rule : str
        ``"tumor mask"``, ``"stain density"`` or ``"all tissue"``.
    step_level0 : int
        Grid step in level-0 pixels (smaller than the patch when they overlap).
    """

    patches: np.ndarray
    coords: np.ndarray
    patch_size_level0: int
    rule: str
    step_level0: int


def _grid(slide, patch_size, magnification, max_background, step, rect):
    grid = make_patch_grid(
        slide, segment_tissue(slide), magnification, patch_size, step, max_background=max_background
    )
    index = np.arange(len(grid))
    if rect is not None:
        x0, y0, x1, y1 = rect
        x, y, size = grid.coords[:, 0], grid.coords[:, 1], grid.patch_size_level0
        index = index[(x < x1) & (x + size > x0) & (y < y1) & (y + size > y0)]
    return grid, index


def slide_patches(
    path: str | Path,
    patch_size: int = PATCH_SIZE,
    magnification: float | None = 20.0,
    max_background: float = MAX_BACKGROUND,
    limit: int | None = None,
    seed: int = 0,
    tumor: str = "auto",
    step: int | None = None,
    rect: tuple[float, float, float, float] | None = None,
    progress: Callable[[int, int], None] | None = None,
    most: int | None = None,
    mpp: float | None = None,
    roi: Region | None = None,
) -> SlidePatches:
    """Read the tumor-enriched tissue patches of one slide.

    The rule (seed 004 grades tumor regions): the tissue module's grid (``patch_size``
    px at ``magnification``, grid ``step``, patches over ``max_background`` white
    dropped); with ``tumor="auto"`` the patches at least :data:`MIN_TUMOR_FRACTION`
    inside the tumor mask when the slide has one (:func:`tumor_region`), otherwise
    the denser half by :func:`stain_density`; ``"mask"`` requires a mask, ``"stain"``
    forces the density rule, ``"none"`` keeps all tissue patches. Patches read are
    checked again at full resolution with
    :func:`~her2viewer.models.patch_cnn.keep_patches`.

    Parameters
    ----------
    path : path
        Slide file.
    limit : int, optional
        Read a random (seeded) subset of at most this many candidate patches.
    rect : tuple, optional
        Level-0 ``(x0, y0, x1, y1)``: only patches overlapping it.
    progress : callable, optional
        ``progress(done, total)`` after each patch read (may raise to cancel).
    most : int, optional
        Refuse (before reading) more than this many candidate patches.
    mpp : float, optional
        Pixel size (um/px) for a slide that records none (``--mpp``).
    roi : Region, optional
        Only patches whose centre lies in this annotated region (level-0 pixels).

    Raises
    ------
    ModelError
        For an unknown rule, ``tumor="mask"`` without a mask, too many patches, or no
        patch left.
    """
    if tumor not in TUMOR_RULES:
        raise ModelError(f"Unknown tumor rule '{tumor}'; choose from {', '.join(TUMOR_RULES)}.")
    region = tumor_region(path) if tumor in ("auto", "mask") else None
    if tumor == "mask" and region is None:
        raise ModelError(f"{Path(path).name} has no tumor mask (truth.json) beside it.")
    with open_slide(path) as slide:
        apply_pixel_size(slide, mpp)
        grid, index = _grid(slide, patch_size, magnification, max_background, step, rect)
        if roi is not None:
            index = index[roi.contains_patches(grid.coords[index], grid.patch_size_level0)]
        if region is not None:
            fraction = region_fraction(region, grid.coords[index], grid.patch_size_level0)
            index = index[fraction >= MIN_TUMOR_FRACTION]
        if limit is not None and len(index) > limit:
            index = np.sort(np.random.default_rng(seed).choice(index, limit, replace=False))
        if most is not None and len(index) > most:
            raise ModelError(f"The region holds {len(index)} patches; zoom in to at most {most}.")
        patches = np.zeros((len(index), patch_size, patch_size, 3), np.uint8)
        for k, i in enumerate(index):
            patches[k] = grid.read_patch(slide, int(i))
            if progress is not None:
                progress(k + 1, len(index))
    keep = keep_patches(patches, max_background)  # exact check at full resolution
    rule = "tumor mask" if region is not None else "all tissue"
    if region is None and tumor in ("auto", "stain") and keep.any():
        density = stain_density(patches)
        keep &= density >= np.median(density[keep])
        rule = "stain density"
    if not keep.any():
        where = (
            "in the view"
            if rect is not None
            else f"inside the region ({roi.description})"
            if roi is not None
            else "on the slide"
        )
        raise ModelError(f"No tissue patch ({rule}) {where} of {Path(path).name} to grade.")
    size0 = grid.patch_size_level0
    step0 = max(1, int(round((step or patch_size) * size0 / patch_size)))
    return SlidePatches(patches[keep], grid.coords[index][keep], size0, rule, step0)


@dataclass
class GradingMetrics:
    """Multi-class grading metrics.

    Attributes
    ----------
    macro_auc : float
        Mean of the one-vs-rest AUCs of the classes present in the truth.
    per_class_auc : dict
        Class name -> {"auc", "ci_low", "ci_high"} (DeLong 95% CI), one-vs-rest.
    accuracy : float
    confusion : list of list of int
        Truth in rows, prediction in columns, in class order.
    classes : list of str
    adjacent_confusions : int
        Errors between neighbouring grades (e.g. 2+ called 3+).
    """

    macro_auc: float
    per_class_auc: dict
    accuracy: float
    confusion: list
    classes: list
    adjacent_confusions: int = 0
    n: int = field(default=0)


def grading_metrics(truth, probs, classes) -> GradingMetrics:
    """Macro-averaged one-vs-rest AUC with per-class AUCs, accuracy and confusion matrix.

    Parameters
    ----------
    truth : array-like of int
        True class indices.
    probs : array-like
        ``(N, C)`` predicted probabilities.
    classes : sequence of str
        Class names, in index order.
    """
    truth = np.asarray(truth, dtype=int)
    probs = np.asarray(probs, dtype=float)
    if probs.ndim != 2 or probs.shape != (len(truth), len(classes)):
        raise ModelError(
            f"Probabilities of shape {probs.shape} do not match {len(truth)} cases "
            f"and {len(classes)} classes."
        )
    per_class = {}
    for k, name in enumerate(classes):
        positive = truth == k
        if 0 < positive.sum() < len(truth):
            est = auc_delong(positive, probs[:, k])
            per_class[name] = {"auc": est.value, "ci_low": est.low, "ci_high": est.high}
    pred = probs.argmax(1)
    matrix = confusion_matrix(truth, pred, list(range(len(classes))))
    adjacent = int(sum(matrix[i, i + 1] + matrix[i + 1, i] for i in range(len(classes) - 1)))
    macro = float(np.mean([v["auc"] for v in per_class.values()])) if per_class else float("nan")
    return GradingMetrics(
        macro,
        per_class,
        float((pred == truth).mean()),
        matrix.tolist(),
        list(classes),
        adjacent,
        len(truth),
    )


def sklearn_macro_auc(truth, probs) -> float:
    """scikit-learn's macro one-vs-rest AUC (the reference :func:`grading_metrics` matches)."""
    probs = np.asarray(probs, dtype=float)
    return float(roc_auc_score(truth, probs / probs.sum(1, keepdims=True), multi_class="ovr"))
