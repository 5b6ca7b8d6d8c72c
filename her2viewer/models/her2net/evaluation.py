"""HER2Net on a labelled cohort: status metrics with CIs, tumor-detector mIoU, P vs truth.

Status metrics come from :mod:`her2viewer.stats.metrics` (accuracy, sensitivity,
specificity with Clopper-Pearson intervals, AUROC of P with DeLong's interval,
confusion matrix). The tumor detector is compared with the cohort's tumor masks
(mIoU = mean of the tumor and non-tumor IoU, the seed's measure, and the tumor IoU
alone). Where cases have a ``truth.json`` with ``high_expression_fraction`` (the
synthetic cohort), P is correlated with it.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
from scipy.stats import pearsonr, spearmanr

from her2viewer.jobs import JobContext
from her2viewer.models.her2net.data import read_training_cohort
from her2viewer.models.her2net.model import Her2NetModel
from her2viewer.models.her2net.predict import Her2NetOptions, predict_her2net
from her2viewer.models.her2net.training import mean_iou
from her2viewer.slide import open_slide
from her2viewer.stats.metrics import auc_delong, binary_metrics, confusion_matrix
from her2viewer.tissue.masks import mask_iou, read_mask


def _resized(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    if mask.shape == shape:
        return mask
    return cv2.resize(mask.astype(np.uint8), shape[::-1], interpolation=cv2.INTER_NEAREST) > 0


def evaluate_cohort(
    labels_csv: str | Path,
    model: Her2NetModel,
    options: Her2NetOptions | None = None,
    context: JobContext | None = None,
) -> dict:
    """Predict every case of a cohort and measure HER2Net against its labels.

    Returns
    -------
    dict
        ``cases`` (per case: status, P, truth, tumor IoU), ``status`` (binary
        metrics), ``auc_p`` (AUROC of P), ``confusion_matrix`` (rows truth
        negative/positive), ``tumor_miou``, ``tumor_iou``, and ``p_correlation``
        (Pearson and Spearman, when truth fractions exist).
    """
    cases = read_training_cohort(labels_csv)
    rows = []
    for i, case in enumerate(cases):
        with open_slide(case.he_path) as slide:
            result = predict_her2net(slide, model, options)
        truth_mask = read_mask(case.tumor_mask_path)
        pred_mask = _resized(result.tumor_mask, truth_mask.shape)
        truth_json = case.he_path.parent / "truth.json"
        fraction = (
            json.loads(truth_json.read_text()).get("high_expression_fraction")
            if truth_json.is_file()
            else None
        )
        rows.append(
            {
                "case_id": case.case_id,
                "truth_positive": case.positive,
                "her2_status": result.her2_status,
                "high_expression_percent": result.high_expression_percent,
                "true_high_expression_fraction": fraction,
                "tumor_miou": mean_iou(pred_mask, truth_mask),
                "tumor_iou": mask_iou(pred_mask, truth_mask),
            }
        )
        if context is not None:
            context.report(i + 1, len(cases), case.case_id)
    return summarise(rows)


def summarise(rows: list[dict]) -> dict:
    """Cohort figures from per-case rows (see :func:`evaluate_cohort`)."""
    truth = [r["truth_positive"] for r in rows]
    pred = [r["her2_status"] == "positive" for r in rows]
    p = [r["high_expression_percent"] for r in rows]
    out = {
        "n_cases": len(rows),
        "cases": rows,
        "status": {k: v.to_dict() for k, v in binary_metrics(truth, pred).items()},
        "confusion_matrix": confusion_matrix(truth, pred, (False, True)).tolist(),
        "tumor_miou": float(np.mean([r["tumor_miou"] for r in rows])),
        "tumor_iou": float(np.mean([r["tumor_iou"] for r in rows])),
    }
    if 0 < sum(truth) < len(truth):
        out["auc_p"] = auc_delong(truth, p).to_dict()
    fractions = [r["true_high_expression_fraction"] for r in rows]
    if all(f is not None for f in fractions) and len(rows) > 2 and np.std(p) > 0:
        out["p_correlation"] = {
            "pearson": float(pearsonr(fractions, p)[0]),
            "spearman": float(spearmanr(fractions, p)[0]),
        }
    return out
