"""Radiomics classifiers for HER2 status (seed 001): standardise -> PCA -> LR / RF / MLP.

The number of principal components is the smallest that reaches a cumulative
explained variance (95% by default) on the training set. Models are evaluated
on a random stratified 70/30 split (ROC with DeLong AUC CI, precision-recall with
average precision, confusion matrix) and by stratified k-fold cross-validation
on the training set, with a learning curve. Fitted models are written as plain
JSON (scaler, PCA, and each classifier's parameters) so that loading one never
unpickles anything; :func:`predict_saved` runs them with numpy.
"""

from __future__ import annotations

import csv
import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.decomposition import PCA
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, precision_recall_curve
from sklearn.model_selection import (
    StratifiedKFold,
    cross_val_score,
    learning_curve,
    train_test_split,
)
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from her2viewer.errors import RadiomicsError
from her2viewer.outputs import write_text_atomic
from her2viewer.stats.metrics import auc_delong, confusion_matrix, roc_curve

MODEL_NAMES = ("logistic_regression", "random_forest", "mlp")
FORMAT = "her2viewer-radiomics-model"


@dataclass
class FeatureTable:
    """Features and binary labels read from a CSV."""

    x: np.ndarray
    y: np.ndarray
    feature_names: list[str]
    classes: list[str]
    ids: list[str]


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def read_feature_table(
    path: str | Path, label: str = "label", id_column: str = "case_id"
) -> FeatureTable:
    """Read a features CSV: one row per case, numeric feature columns and a binary label.

    Non-numeric columns (other than the label and id) are ignored. Labels may be any two
    values (e.g. ``negative``/``positive`` or 0/1); the sorted second value is class 1.

    Raises
    ------
    RadiomicsError
        Missing file or label column, not exactly two label values, no numeric feature,
        or missing values.
    """
    path = Path(path)
    if not path.is_file():
        raise RadiomicsError(f"Features file not found: {path}")
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows or label not in rows[0]:
        raise RadiomicsError(f"{path.name} has no label column '{label}' (or no rows).")
    classes = sorted({r[label] for r in rows})
    if len(classes) != 2:
        raise RadiomicsError(f"Label '{label}' must have exactly two values, found {classes}.")
    names = [
        c
        for c in rows[0]
        if c not in (label, id_column) and all(_is_number(r[c]) for r in rows if r[c] != "")
    ]
    if not names:
        raise RadiomicsError(f"{path.name} has no numeric feature column.")
    x = np.array([[float(r[c]) if r[c] != "" else np.nan for c in names] for r in rows])
    if not np.isfinite(x).all():
        raise RadiomicsError(f"{path.name} has missing or infinite feature values.")
    y = np.array([classes.index(r[label]) for r in rows])
    ids = [r.get(id_column, str(i)) for i, r in enumerate(rows)]
    return FeatureTable(x, y, names, classes, ids)


def pca_curve(x: np.ndarray, variance: float = 0.95) -> tuple[np.ndarray, int]:
    """Cumulative explained variance of standardised features and the components to keep."""
    pca = PCA().fit(StandardScaler().fit_transform(x))
    cumulative = np.cumsum(pca.explained_variance_ratio_)
    return cumulative, int(min(len(cumulative), np.searchsorted(cumulative, variance - 1e-12) + 1))


def make_models(n_components: int, seed: int = 0) -> dict:
    """The three pipelines of the seed: scaler -> PCA -> classifier."""
    classifiers = {
        "logistic_regression": LogisticRegression(max_iter=2000),
        "random_forest": RandomForestClassifier(n_estimators=100, random_state=seed),
        "mlp": MLPClassifier(hidden_layer_sizes=(32,), max_iter=2000, random_state=seed),
    }
    return {
        name: make_pipeline(StandardScaler(), PCA(n_components, random_state=seed), clf)
        for name, clf in classifiers.items()
    }


def score_report(y_test: np.ndarray, score: np.ndarray, classes: list[str]) -> dict:
    """ROC (DeLong AUC CI), precision-recall (average precision), accuracy and confusion at 0.5."""
    auc = auc_delong(y_test, score)
    fpr, tpr, _ = roc_curve(y_test, score)
    precision, recall, _ = precision_recall_curve(y_test, score)
    pred = (score >= 0.5).astype(int)
    return {
        "auc": auc.value,
        "auc_ci": [auc.low, auc.high],
        "average_precision": float(average_precision_score(y_test, score)),
        "accuracy": float((pred == y_test).mean()),
        "confusion": confusion_matrix(y_test, pred, [0, 1]).tolist(),
        "classes": classes,
        "roc": {"fpr": fpr.tolist(), "tpr": tpr.tolist()},
        "pr": {"precision": precision.tolist(), "recall": recall.tolist()},
    }


def _learning_curve(model, x, y, cv, seed, n_components) -> dict:
    """Train/validation AUC for growing training sets (each large enough for the PCA)."""
    fold_size = len(y) * (cv.n_splits - 1) // cv.n_splits
    start = min(1.0, max(0.3, (n_components + 2) / fold_size))
    with warnings.catch_warnings():  # small sets round fractions to one size: harmless
        warnings.filterwarnings("ignore", "Removed duplicate entries", RuntimeWarning)
        sizes, train, valid = learning_curve(
            model,
            x,
            y,
            cv=cv,
            scoring="roc_auc",
            train_sizes=np.linspace(start, 1.0, 3),
            shuffle=True,
            random_state=seed,
        )
    return {
        "sizes": sizes.tolist(),
        "train_auc": train.mean(1).tolist(),
        "validation_auc": valid.mean(1).tolist(),
    }


def train_models(
    table: FeatureTable,
    test_size: float = 0.3,
    variance: float = 0.95,
    folds: int = 5,
    seed: int = 0,
) -> tuple[dict, dict]:
    """Fit and evaluate LR, RF and MLP on a random stratified split.

    Returns
    -------
    (dict, dict)
        Fitted pipelines by name, and a JSON-ready report (PCA curve, per model:
        test ROC/PR/confusion with AUC CI, cross-validated AUC, learning curve).
    """
    counts = np.bincount(table.y, minlength=2)
    if counts.min() < folds or len(table.y) < 10:
        raise RadiomicsError(
            f"Too few cases to train ({counts.tolist()} per class); need at least {folds} of each."
        )
    x_train, x_test, y_train, y_test = train_test_split(
        table.x, table.y, test_size=test_size, stratify=table.y, random_state=seed
    )
    curve, n_comp = pca_curve(x_train, variance)
    n_comp = min(n_comp, int(len(y_train) * (folds - 1) / folds) - 1)
    cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
    fitted, report = (
        {},
        {
            "pca": {
                "cumulative_variance": curve.tolist(),
                "components": n_comp,
                "variance_target": variance,
            },
            "models": {},
        },
    )
    for name, model in make_models(n_comp, seed).items():
        cv_auc = cross_val_score(model, x_train, y_train, cv=cv, scoring="roc_auc")
        fitted[name] = model.fit(x_train, y_train)
        report["models"][name] = {
            **score_report(y_test, model.predict_proba(x_test)[:, 1], table.classes),
            "cv_auc_mean": float(cv_auc.mean()),
            "cv_auc_std": float(cv_auc.std()),
            "learning_curve": _learning_curve(
                make_models(n_comp, seed)[name], x_train, y_train, cv, seed, n_comp
            ),
        }
    report |= {"n_train": len(y_train), "n_test": len(y_test), "classes": table.classes}
    return fitted, report


# ----------------------------------------------------------------------- JSON model files
def _tree_dict(tree) -> dict:
    t = tree.tree_
    return {
        "left": t.children_left.tolist(),
        "right": t.children_right.tolist(),
        "feature": t.feature.tolist(),
        "threshold": t.threshold.tolist(),
        "value": (t.value[:, 0, :] / t.value[:, 0, :].sum(1, keepdims=True)).tolist(),
    }


def _classifier_dict(clf) -> dict:
    if isinstance(clf, LogisticRegression):
        return {
            "type": "logistic_regression",
            "coef": clf.coef_[0].tolist(),
            "intercept": float(clf.intercept_[0]),
        }
    if isinstance(clf, RandomForestClassifier):
        return {"type": "random_forest", "trees": [_tree_dict(t) for t in clf.estimators_]}
    return {
        "type": "mlp",
        "weights": [w.tolist() for w in clf.coefs_],
        "biases": [b.tolist() for b in clf.intercepts_],
        "activation": clf.activation,
    }


def save_models(path: str | Path, fitted: dict, table: FeatureTable, report: dict) -> Path:
    """Write fitted pipelines as JSON (no pickles) with the feature names and report."""
    models = {}
    for name, pipe in fitted.items():
        scaler, pca, clf = (step for _, step in pipe.steps)
        models[name] = {
            "mean": scaler.mean_.tolist(),
            "scale": scaler.scale_.tolist(),
            "pca_mean": pca.mean_.tolist(),
            "components": pca.components_.tolist(),
            "classifier": _classifier_dict(clf),
        }
    payload = {
        "format": FORMAT,
        "features": table.feature_names,
        "classes": table.classes,
        "models": models,
        "report": report,
    }
    return write_text_atomic(path, json.dumps(payload))


def _tree_proba(tree: dict, x: np.ndarray) -> np.ndarray:
    node = np.zeros(len(x), dtype=int)
    left, right = np.array(tree["left"]), np.array(tree["right"])
    feature, threshold = np.array(tree["feature"]), np.array(tree["threshold"])
    while (active := left[node] >= 0).any():
        go_left = x[np.arange(len(x)), feature[node]] <= threshold[node]
        node = np.where(active, np.where(go_left, left[node], right[node]), node)
    return np.array(tree["value"])[node, 1]


def _classifier_proba(clf: dict, z: np.ndarray) -> np.ndarray:
    if clf["type"] == "logistic_regression":
        return 1 / (1 + np.exp(-(z @ np.array(clf["coef"]) + clf["intercept"])))
    if clf["type"] == "random_forest":
        return np.mean([_tree_proba(t, z) for t in clf["trees"]], axis=0)
    act = {
        "relu": lambda a: np.maximum(a, 0),
        "tanh": np.tanh,
        "identity": lambda a: a,
        "logistic": lambda a: 1 / (1 + np.exp(-a)),
    }[clf["activation"]]
    h = z
    for k, (w, b) in enumerate(zip(clf["weights"], clf["biases"], strict=True)):
        h = h @ np.array(w) + np.array(b)
        if k < len(clf["weights"]) - 1:
            h = act(h)
    return 1 / (1 + np.exp(-h[:, 0]))


def load_models(path: str | Path) -> dict:
    """Read a JSON model file written by :func:`save_models`."""
    path = Path(path)
    try:
        payload = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise RadiomicsError(f"Cannot read radiomics model {path.name}: {exc}") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise RadiomicsError(f"{path.name} is not a her2viewer radiomics model file.")
    if not _all_finite(payload.get("models")):
        raise RadiomicsError(f"{path.name} holds non-finite (NaN or infinite) model weights.")
    return payload


def _all_finite(value: object) -> bool:
    """Return True when every number nested in ``value`` (dicts, lists) is finite."""
    if isinstance(value, dict):
        return all(_all_finite(v) for v in value.values())
    if isinstance(value, list):
        return all(_all_finite(v) for v in value)
    return not isinstance(value, float) or math.isfinite(value)


def predict_saved(payload: dict, features: dict[str, float] | np.ndarray, model: str) -> np.ndarray:
    """Probability of class 1 from a loaded model file for feature rows.

    ``features`` is a ``(N, F)`` array in the file's feature order, or one dict of
    named features (as :func:`~her2viewer.radiomics.features.extract_features` returns).
    """
    if model not in payload["models"]:
        raise RadiomicsError(
            f"Unknown model '{model}'; the file has {', '.join(payload['models'])}."
        )
    if isinstance(features, dict):
        missing = [f for f in payload["features"] if f not in features]
        if missing:
            raise RadiomicsError(
                f"Feature '{missing[0]}' is missing; extract with the same settings."
            )
        features = np.array([[features[f] for f in payload["features"]]])
    features = np.asarray(features, float)
    bad = ~np.isfinite(features).all(axis=0)
    if bad.any():
        raise RadiomicsError(
            f"Feature '{payload['features'][int(np.argmax(bad))]}' is NaN or infinite; "
            "the model cannot score it."
        )
    spec = payload["models"][model]
    z = (features - np.array(spec["mean"])) / np.array(spec["scale"])
    z = (z - np.array(spec["pca_mean"])) @ np.array(spec["components"]).T
    with np.errstate(over="ignore"):  # a saturated logistic is 0 or 1, still finite
        proba = _classifier_proba(spec["classifier"], z)
    if not np.isfinite(proba).all():
        raise RadiomicsError(f"Model '{model}' gives a non-finite probability for these features.")
    return proba
