"""Data and evaluation for the patch-grading CNNs: cohort patches, patient splits, macro-AUC.

A cohort is a ``labels.csv`` with ``case_id``, ``ihc_path`` (relative to the CSV),
``ihc_score`` (0-3) and ``patient_id`` columns, as written by
:func:`her2viewer.slide.synthetic.write_cohort`. Patches come from the tissue
module's grid (512 px at 20x, patches with more than 60% white dropped); every
patch inherits its slide's IHC score.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from her2viewer.errors import ModelError
from her2viewer.models.patch_cnn import MAX_BACKGROUND, PATCH_SIZE, keep_patches
from her2viewer.slide import open_slide
from her2viewer.tables import read_csv_rows
from her2viewer.tissue import make_patch_grid, segment_tissue
from her2viewer.training.metrics import auc_delong, confusion_matrix

SCORE_NAMES = {0: "0", 1: "1+", 2: "2+", 3: "3+"}
REQUIRED_COLUMNS = ("case_id", "ihc_path", "ihc_score", "patient_id")


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


def patient_split(
    cases: list[CohortCase], fractions=(0.6, 0.2, 0.2), seed: int = 0
) -> dict[str, list[CohortCase]]:
    """Split cases into train/validation/test by patient, so no patient spans two sets.

    Every set gets at least one patient when there are three or more patients.
    """
    patients = sorted({c.patient_id for c in cases})
    if len(patients) < 3:
        raise ModelError(
            f"A train/validation/test split needs 3 or more patients, got {len(patients)}."
        )
    order = np.random.default_rng(seed).permutation(patients)
    n_val = max(1, int(round(fractions[1] * len(order))))
    n_test = max(1, int(round(fractions[2] * len(order))))
    n_train = len(order) - n_val - n_test
    groups = {
        "train": order[:n_train],
        "validation": order[n_train : n_train + n_val],
        "test": order[n_train + n_val :],
    }
    return {name: [c for c in cases if c.patient_id in set(ids)] for name, ids in groups.items()}


def slide_patches(
    path: str | Path,
    patch_size: int = PATCH_SIZE,
    magnification: float | None = 20.0,
    max_background: float = MAX_BACKGROUND,
    limit: int | None = None,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Read the tissue patches of one slide.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray, int)
        Patches ``(N, patch_size, patch_size, 3)`` uint8, their level-0 coordinates
        ``(N, 2)`` and the patch side in level-0 pixels. With ``limit`` a random
        subset (seeded) is read. The grid drops patches over ``max_background`` white
        on the low-resolution segmentation image; the patches read are checked again
        at full resolution with :func:`~her2viewer.models.patch_cnn.keep_patches`.
    """
    with open_slide(path) as slide:
        grid = make_patch_grid(
            slide, segment_tissue(slide), magnification, patch_size, max_background=max_background
        )
        index = np.arange(len(grid))
        if limit is not None and len(index) > limit:
            index = np.sort(np.random.default_rng(seed).choice(index, limit, replace=False))
        patches = np.zeros((len(index), patch_size, patch_size, 3), np.uint8)
        for k, i in enumerate(index):
            patches[k] = grid.read_patch(slide, int(i))
    keep = keep_patches(patches, max_background)  # exact check at full resolution
    return patches[keep], grid.coords[index][keep], grid.patch_size_level0


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
