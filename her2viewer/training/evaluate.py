"""Evaluate predictions against the truth: metrics with confidence intervals, curves, figures.

The library function :func:`evaluate_predictions` is what ``her2viewer evaluate`` prints;
every number comes from :mod:`her2viewer.stats.metrics`, and the figures are drawn by
the study report's plotting helpers.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score

from her2viewer.errors import EvaluationError
from her2viewer.models.checks import require_finite
from her2viewer.outputs import prepare_output_dir, write_text_atomic
from her2viewer.stats.figures import confusion_figure, roc_figure, save_figure
from her2viewer.stats.metrics import (
    auc_delong,
    binary_metrics,
    bootstrap_ci,
    confusion_matrix,
    multiclass_metrics,
    roc_curve,
)
from her2viewer.tables import read_csv_rows

N_BOOT = 2000


def _auc_with_bootstrap(truth: np.ndarray, score: np.ndarray, seed: int) -> dict:
    delong = auc_delong(truth, score).to_dict()
    low, high = bootstrap_ci(
        lambda t, s: roc_auc_score(t, s) if 0 < t.sum() < len(t) else np.nan,
        truth,
        score,
        n_boot=N_BOOT,
        seed=seed,
    )
    return delong | {"bootstrap_low": low, "bootstrap_high": high}


def _macro_auc(truth_codes: np.ndarray, probabilities: np.ndarray, seed: int) -> dict:
    classes = np.arange(probabilities.shape[1])
    totals = probabilities.sum(axis=1, keepdims=True)
    if np.any(totals <= 0):
        raise EvaluationError("every row of class probabilities needs a positive sum.")
    probabilities = probabilities / totals  # rounded CSV values need not sum to exactly 1

    def macro(t, p):
        if len(np.unique(t)) < len(classes):
            return np.nan
        return roc_auc_score(t, p, multi_class="ovr", average="macro", labels=classes)

    low, high = bootstrap_ci(macro, truth_codes, probabilities, n_boot=N_BOOT, seed=seed)
    return {"value": float(macro(truth_codes, probabilities)), "low": low, "high": high,
            "method": "bootstrap", "n": int(len(truth_codes))}  # fmt: skip


def evaluate_predictions(
    truth: Sequence[str],
    prediction: Sequence[str],
    labels: Sequence[str],
    probabilities: np.ndarray | None = None,
    positive: str | None = None,
    seed: int = 0,
) -> dict:
    """Metrics of predictions against the truth, with 95% confidence intervals.

    Parameters
    ----------
    truth, prediction : sequence of str
        Labels per case.
    labels : sequence of str
        The classes, in order.
    probabilities : numpy.ndarray, optional
        ``(N, len(labels))`` class probabilities (rows need not sum to 1), or ``(N,)``
        scores of the positive class for two classes.
    positive : str, optional
        The positive class for two classes (default: the last label).
    seed : int
        Seed of the bootstrap resampling.

    Returns
    -------
    dict
        ``confusion_matrix`` (truth in rows), ``metrics`` (accuracy, sensitivity,
        specificity, PPV, NPV, balanced accuracy, F1 for two classes; accuracy,
        balanced accuracy, kappa for more), ``auc`` with DeLong and bootstrap CIs and
        ``roc``/``pr`` curve data for two classes with scores, ``macro_auc`` for more.
    """
    labels = list(labels)
    unknown = sorted({*truth, *prediction} - set(labels))
    if unknown:
        raise EvaluationError(f"Labels {unknown} are not among the classes {labels}.")
    cm = confusion_matrix(truth, prediction, labels)
    result: dict = {"labels": labels, "n": len(truth), "confusion_matrix": cm.tolist()}
    if len(labels) == 2:
        positive = positive or labels[-1]
        t = np.array([v == positive for v in truth])
        p = np.array([v == positive for v in prediction])
        result["positive"] = positive
        result["metrics"] = {k: e.to_dict() for k, e in binary_metrics(t, p, seed=seed).items()}
        if probabilities is not None:
            score = (
                probabilities
                if probabilities.ndim == 1
                else probabilities[:, labels.index(positive)]
            )
            fpr, tpr, thresholds = roc_curve(t, score)
            precision, recall, _ = precision_recall_curve(t, score)
            result["auc"] = _auc_with_bootstrap(t, score, seed)
            result["roc"] = {"fpr": fpr.tolist(), "tpr": tpr.tolist(),
                             "thresholds": [float(x) for x in thresholds]}  # fmt: skip
            result["pr"] = {
                "precision": precision.tolist(),
                "recall": recall.tolist(),
                "average_precision": float(average_precision_score(t, score)),
            }
    else:
        metrics = multiclass_metrics(truth, prediction, labels, seed=seed)
        result["metrics"] = {k: e.to_dict() for k, e in metrics.items()}
        if probabilities is not None:
            codes = np.array([labels.index(v) for v in truth])
            result["macro_auc"] = _macro_auc(codes, probabilities, seed)
    return result


def read_predictions(path: str | os.PathLike, labels: Sequence[str] | None = None):
    """Read a predictions CSV: ``case_id, truth, prediction`` and optional probabilities.

    Probabilities come as one ``probability`` column (the positive class, two classes)
    or as ``prob_<label>`` columns, one per class.

    Returns
    -------
    (truth, prediction, labels, probabilities)
        Probabilities are ``None`` when the file has none.
    """
    rows = read_csv_rows(
        path, ("case_id", "truth", "prediction"), EvaluationError, "Predictions file"
    )
    truth = [r["truth"].strip() for r in rows]
    prediction = [r["prediction"].strip() for r in rows]
    labels = list(labels) if labels else sorted({*truth, *prediction})
    columns = rows[0].keys()
    try:
        if all(f"prob_{label}" in columns for label in labels):
            probabilities = np.array([[float(r[f"prob_{lb}"]) for lb in labels] for r in rows])
        elif "probability" in columns:
            probabilities = np.array([float(r["probability"]) for r in rows])
        else:
            probabilities = None
    except ValueError as exc:
        raise EvaluationError(
            f"{Path(path).name} has a probability that is not a number: {exc}."
        ) from exc
    if probabilities is not None:
        require_finite(probabilities, f"Predictions file {Path(path).name}", EvaluationError)
    return truth, prediction, labels, probabilities


def write_evaluation(result: dict, out_dir: str | os.PathLike) -> list[Path]:
    """Write ``metrics.json``, ``confusion.png`` and (with scores) ``roc.png``; return the paths."""
    out = prepare_output_dir(out_dir)
    written = [out / "metrics.json"]
    write_text_atomic(written[0], json.dumps(result, indent=2))
    confusion = confusion_figure(result["labels"], result["confusion_matrix"], "Confusion matrix")
    save_figure(confusion, out / "confusion.png")
    written.append(out / "confusion.png")
    if "roc" in result:
        roc = roc_figure(result["roc"]["fpr"], result["roc"]["tpr"], [], result["auc"]["value"])
        save_figure(roc, out / "roc.png")
        written.append(out / "roc.png")
    return written


def read_evaluation(path: str | os.PathLike) -> dict:
    """Read back an evaluation written by :func:`write_evaluation`, checking its shape.

    Parameters
    ----------
    path : str or path-like
        ``metrics.json``, or the report folder that holds it.

    Returns
    -------
    dict
        As returned by :func:`evaluate_predictions`.

    Raises
    ------
    EvaluationError
        When the file cannot be read or is not such an evaluation.
    """
    path = Path(path)
    path = path / "metrics.json" if path.is_dir() else path
    try:
        result = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise EvaluationError(f"{path.name} is not a readable evaluation JSON ({exc}).") from exc
    problem = _evaluation_problem(result)
    if problem:
        raise EvaluationError(
            f"{path.name} is not an evaluation written by 'her2viewer evaluate': {problem}."
        )
    return result


def _evaluation_problem(result) -> str | None:
    """Why ``result`` is not an evaluation dict, or None when it is one."""
    if not isinstance(result, dict) or not {"labels", "confusion_matrix", "metrics"} <= set(result):
        return "it lacks 'labels', 'confusion_matrix' or 'metrics'"
    labels, cm = result["labels"], np.asarray(result["confusion_matrix"], dtype=object)
    if not isinstance(labels, list) or len(labels) < 2:
        return "it needs at least two class labels"
    if cm.shape != (len(labels), len(labels)) or not all(
        isinstance(v, int) and v >= 0 for v in cm.ravel()
    ):
        return f"the confusion matrix is not {len(labels)} x {len(labels)} counts"
    curves = (("roc", ("fpr", "tpr")), ("pr", ("recall", "precision")))
    for key, (x, y) in curves:
        curve = result.get(key)
        if curve is None:
            continue
        if not isinstance(curve, dict) or len(curve.get(x, [])) != len(curve.get(y, [None])):
            return f"its '{key}' curve has no {x} and {y} of equal length"
    if len(labels) == 2 and "roc" in result and result.get("positive") not in labels:
        return "its positive class is not one of its labels"
    return None
