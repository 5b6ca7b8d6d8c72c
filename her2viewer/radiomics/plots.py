"""Figures of a radiomics training report as PNG (OpenCV, like the study report)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from her2viewer.study.plots import (
    HEIGHT,
    MARGIN,
    PALETTE,
    WIDTH,
    _axes,
    _canvas,
    _text,
    confusion_figure,
    write_png,
)


def curves_figure(
    title: str, xlabel: str, ylabel: str, series: dict, ymax: float = 1.0
) -> np.ndarray:
    """Line plot of named ``(x, y)`` series with x in [0, 1] and y in [0, ymax]."""
    image = _canvas(title)
    to_px = _axes(image, xlabel, ylabel, ymax)
    for i, (name, (xs, ys)) in enumerate(series.items()):
        color = PALETTE[i % len(PALETTE)]
        pts = np.array([to_px(x, y) for x, y in zip(xs, ys, strict=True)], np.int32)
        cv2.polylines(image, [pts], False, color, 2, cv2.LINE_AA)
        _text(image, name, (WIDTH - 300, HEIGHT - MARGIN - 15 - 20 * i), color=color)
    return image


def write_report_figures(report: dict, out_dir: str | Path) -> list[Path]:
    """Write the PCA curve, ROC, PR, learning-curve and confusion-matrix PNGs."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    models = report["models"]
    cum = report["pca"]["cumulative_variance"]
    n = len(cum)
    figures = {
        "pca_variance.png": curves_figure(
            f"PCA: {report['pca']['components']} components kept",
            f"components / {n}",
            "cumulative explained variance",
            {"PCA": (np.arange(1, n + 1) / n, cum)},
        ),
        "roc.png": curves_figure(
            "ROC (test split)",
            "1 - specificity",
            "sensitivity",
            {
                f"{k} AUC {m['auc']:.2f}": (m["roc"]["fpr"], m["roc"]["tpr"])
                for k, m in models.items()
            },
        ),
        "precision_recall.png": curves_figure(
            "Precision-recall (test split)",
            "recall",
            "precision",
            {
                f"{k} AP {m['average_precision']:.2f}": (m["pr"]["recall"], m["pr"]["precision"])
                for k, m in models.items()
            },
        ),
    }
    for name, m in models.items():
        lc = m["learning_curve"]
        frac = np.array(lc["sizes"]) / max(lc["sizes"])
        figures[f"learning_curve_{name}.png"] = curves_figure(
            f"Learning curve: {name}",
            "training set fraction",
            "AUC",
            {"train": (frac, lc["train_auc"]), "validation": (frac, lc["validation_auc"])},
        )
        figures[f"confusion_{name}.png"] = confusion_figure(m["classes"], m["confusion"], name)
    paths = []
    for filename, image in figures.items():
        write_png(image, out_dir / filename)
        paths.append(out_dir / filename)
    return paths
