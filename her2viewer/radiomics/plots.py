"""Figures of a radiomics training report, drawn by :mod:`her2viewer.stats.figures`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from her2viewer.outputs import prepare_output_dir
from her2viewer.stats.figures import confusion_figure, curves_figure, save_figure


def write_report_figures(report: dict, out_dir: str | Path) -> list[Path]:
    """Write the PCA curve, ROC, PR, learning-curve and confusion-matrix PNGs; return the paths."""
    out_dir = prepare_output_dir(out_dir)
    models = report["models"]
    cum = report["pca"]["cumulative_variance"]
    n = len(cum)
    figures = {
        "pca_variance.png": curves_figure(
            f"PCA: {report['pca']['components']} components kept",
            "principal components",
            "cumulative explained variance",
            {"PCA": (np.arange(1, n + 1), cum)},
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
    return [save_figure(figure, out_dir / filename) for filename, figure in figures.items()]
