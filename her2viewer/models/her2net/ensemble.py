"""HER2Net's integrated classifier: one model over exactly five sub-classifier outputs.

The five tile-level sub-classifiers each give a tile's probability of *strong*;
the integrated classifier maps those five numbers to the final probability. The
seed compared LR, DT, SVM, RF, AdaBoost, GBDT and soft voting, each grid-searched,
and chose the random forest (:data:`DEFAULT_KIND`).

A fitted scikit-learn model is exported to plain arrays (decision-tree nodes,
coefficients, support vectors) so that bundles hold only safetensors and JSON;
:class:`IntegratedClassifier` evaluates the arrays and reproduces scikit-learn's
``predict_proba`` exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.special import expit
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import (
    AdaBoostClassifier,
    GradientBoostingClassifier,
    RandomForestClassifier,
    VotingClassifier,
)
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.svm import SVC
from sklearn.tree import DecisionTreeClassifier

from her2viewer.errors import ModelError
from her2viewer.models.her2net.choices import DEFAULT_KIND, KINDS, N_INPUTS


def _calibrated_svm() -> CalibratedClassifierCV:
    """An RBF SVM with Platt (sigmoid) probabilities fitted on held-out folds."""
    return CalibratedClassifierCV(SVC(), method="sigmoid", ensemble=False)


def _voting(seed: int) -> VotingClassifier:
    members = [
        ("lr", LogisticRegression(max_iter=1000)),
        ("dt", DecisionTreeClassifier(max_depth=3, random_state=seed)),
        ("svm", _calibrated_svm()),
        ("rf", RandomForestClassifier(n_estimators=50, max_depth=5, random_state=seed)),
    ]
    return VotingClassifier(members, voting="soft")


def _candidates(kind: str, seed: int) -> tuple[object, dict]:
    """The estimator and its parameter grid for ``kind``."""
    table = {
        "rf": (
            RandomForestClassifier(random_state=seed),
            {"n_estimators": [25, 50, 100], "max_depth": [3, 5, None], "min_samples_leaf": [1, 5]},
        ),
        "lr": (LogisticRegression(max_iter=1000), {"C": [0.01, 0.1, 1.0, 10.0]}),
        "dt": (
            DecisionTreeClassifier(random_state=seed),
            {"max_depth": [2, 3, 5, None], "min_samples_leaf": [1, 5, 20]},
        ),
        "svm": (_calibrated_svm(), {"estimator__C": [0.1, 1.0, 10.0]}),
        "adaboost": (
            AdaBoostClassifier(random_state=seed),
            {"n_estimators": [25, 50, 100], "learning_rate": [0.1, 0.5, 1.0]},
        ),
        "gbdt": (
            GradientBoostingClassifier(random_state=seed),
            {"n_estimators": [25, 50, 100], "max_depth": [2, 3], "learning_rate": [0.05, 0.1]},
        ),
        "soft_voting": (_voting(seed), {"weights": [None, [1, 1, 1, 2]]}),
    }
    if kind not in table:
        raise ModelError(f"Unknown integrated classifier '{kind}'; choose from {', '.join(KINDS)}.")
    return table[kind]


def check_inputs(x) -> np.ndarray:
    """Return ``x`` as float64 ``(N, 5)``; anything else is a :class:`ModelError`."""
    x = np.asarray(x, np.float64)
    if x.ndim != 2 or x.shape[1] != N_INPUTS:
        raise ModelError(
            f"The integrated classifier takes exactly {N_INPUTS} sub-classifier outputs per "
            f"tile, got an array of shape {x.shape}."
        )
    return x


# --------------------------------------------------------------------------- export
def _pack_trees(trees: list, leaf_value) -> dict[str, np.ndarray]:
    """Concatenate sklearn trees into flat node arrays with per-tree roots."""
    parts, offset, roots = [], 0, []
    for tree in trees:
        t = tree.tree_
        left = np.where(t.children_left >= 0, t.children_left + offset, -1)
        right = np.where(t.children_right >= 0, t.children_right + offset, -1)
        parts.append((left, right, t.feature, t.threshold, leaf_value(t.value)))
        roots.append(offset)
        offset += t.node_count
    names = ("left", "right", "feature", "threshold", "value")
    out = {n: np.concatenate([p[i] for p in parts]) for i, n in enumerate(names)}
    out["roots"] = np.asarray(roots, np.int64)
    return out


def _positive_fraction(value: np.ndarray) -> np.ndarray:
    counts = value[:, 0, :]
    return counts[:, 1] / np.maximum(counts.sum(1), 1e-300)


def _export(model) -> tuple[dict, dict[str, np.ndarray]]:
    """``(spec, arrays)`` of a fitted sklearn model of one of :data:`KINDS`."""
    if isinstance(model, RandomForestClassifier | DecisionTreeClassifier):
        trees = model.estimators_ if isinstance(model, RandomForestClassifier) else [model]
        return {"type": "tree_mean"}, _pack_trees(trees, _positive_fraction)
    if isinstance(model, LogisticRegression):
        return {"type": "linear"}, {"coef": model.coef_[0], "intercept": model.intercept_}
    if isinstance(model, CalibratedClassifierCV):
        fitted = model.calibrated_classifiers_[0]
        svm, sigmoid = fitted.estimator, fitted.calibrators[0]
        return {"type": "svm_rbf", "gamma": float(svm._gamma)}, {
            "support": svm.support_vectors_,
            "dual_coef": svm.dual_coef_[0],
            "intercept": svm.intercept_,
            "sigmoid": np.array([sigmoid.a_, sigmoid.b_]),
        }
    if isinstance(model, AdaBoostClassifier):
        arrays = _pack_trees(model.estimators_, lambda v: v[:, 0, 1] > v[:, 0, 0])
        arrays["weights"] = model.estimator_weights_[: len(model.estimators_)]
        return {"type": "samme"}, arrays
    if isinstance(model, GradientBoostingClassifier):
        arrays = _pack_trees(model.estimators_[:, 0], lambda v: v[:, 0, 0])
        probe = np.zeros((1, N_INPUTS))
        tree_sum = _tree_values(arrays, probe).sum(1)[0]
        init = model.decision_function(probe)[0] - model.learning_rate * tree_sum
        return {"type": "gbdt", "learning_rate": float(model.learning_rate)}, arrays | {
            "init": np.array([init])
        }
    if isinstance(model, VotingClassifier):
        spec = {"type": "vote", "members": []}
        arrays = {"member_weights": np.asarray(model.weights or [1.0] * len(model.estimators_))}
        for i, member in enumerate(model.estimators_):
            sub_spec, sub_arrays = _export(member)
            spec["members"].append(sub_spec)
            arrays |= {f"m{i}.{k}": v for k, v in sub_arrays.items()}
        return spec, arrays
    raise ModelError(f"Cannot export a {type(model).__name__} as an integrated classifier.")


# --------------------------------------------------------------------------- evaluation
def _tree_values(arrays: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """Leaf value of every tree for every sample, ``(N, n_trees)``."""
    left, right = arrays["left"], arrays["right"]
    feature, threshold, value = arrays["feature"], arrays["threshold"], arrays["value"]
    node = np.broadcast_to(arrays["roots"], (len(x), len(arrays["roots"]))).copy()
    rows = np.arange(len(x))[:, None]
    while True:
        inner = left[node] >= 0
        if not inner.any():
            return value[node].astype(np.float64)
        go_left = x[rows, np.maximum(feature[node], 0)] <= threshold[node]
        node = np.where(inner, np.where(go_left, left[node], right[node]), node)


def _proba(spec: dict, arrays: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    kind = spec["type"]
    if kind == "tree_mean":
        return _tree_values(arrays, x).mean(1)
    if kind == "linear":
        return expit(x @ arrays["coef"] + arrays["intercept"][0])
    if kind == "svm_rbf":
        dist = ((x[:, None, :] - arrays["support"][None]) ** 2).sum(-1)
        decision = np.exp(-spec["gamma"] * dist) @ arrays["dual_coef"] + arrays["intercept"][0]
        a, b = arrays["sigmoid"]
        return expit(-(a * decision + b))
    if kind == "samme":
        votes = np.where(_tree_values(arrays, x) > 0, 1.0, -1.0)
        return expit(2.0 * (votes @ arrays["weights"]) / arrays["weights"].sum())
    if kind == "gbdt":
        raw = arrays["init"][0] + spec["learning_rate"] * _tree_values(arrays, x).sum(1)
        return expit(raw)
    if kind == "vote":
        probs = []
        for i, member in enumerate(spec["members"]):
            prefix = f"m{i}."
            sub = {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}
            probs.append(_proba(member, sub, x))
        return np.average(np.stack(probs, 1), axis=1, weights=arrays["member_weights"])
    raise ModelError(f"Unknown integrated-classifier type '{kind}' in the bundle.")


@dataclass
class IntegratedClassifier:
    """An exported integrated classifier: JSON ``spec`` plus numpy ``arrays``.

    Attributes
    ----------
    kind : str
        One of :data:`KINDS`.
    spec : dict
        How to evaluate the arrays (JSON-serialisable).
    arrays : dict
        Named numpy arrays (tree nodes, coefficients, ...).
    params : dict
        The grid-search winner's parameters.
    cv_auc : float
        Its cross-validated AUROC on the training outputs.
    """

    kind: str
    spec: dict
    arrays: dict[str, np.ndarray]
    params: dict = field(default_factory=dict)
    cv_auc: float = float("nan")

    def predict_proba(self, outputs) -> np.ndarray:
        """Probability of *strong* for ``(N, 5)`` sub-classifier outputs, ``(N,)``."""
        x = check_inputs(outputs)
        if len(x) == 0:
            return np.zeros(0)
        return np.clip(_proba(self.spec, self.arrays, x), 0.0, 1.0)

    def meta(self) -> dict:
        """JSON part for ``bundle.json``."""
        return {"kind": self.kind, "spec": self.spec, "params": self.params, "cv_auc": self.cv_auc}


def fit_integrated(
    outputs, labels, kind: str = DEFAULT_KIND, seed: int = 0, grid: dict | None = None
) -> IntegratedClassifier:
    """Grid-search and fit the integrated classifier on sub-classifier outputs.

    Parameters
    ----------
    outputs : array-like
        ``(N, 5)`` probabilities of *strong* from the five sub-classifiers.
    labels : array-like
        ``(N,)`` 1 = strong, 0 = weak.
    kind : str
        One of :data:`KINDS`.
    seed : int
        Seed of the models and of the 3-fold stratified grid-search split.
    grid : dict, optional
        Parameter grid replacing the default one of ``kind``.

    Raises
    ------
    ModelError
        Wrong input shape, or fewer than 3 tiles of a class.
    """
    x = check_inputs(outputs)
    y = np.asarray(labels).astype(int).ravel()
    if len(y) != len(x):
        raise ModelError(f"{len(x)} tiles of outputs but {len(y)} labels.")
    counts = np.bincount(y, minlength=2)
    if counts.min() < 3:
        raise ModelError(
            f"The integrated classifier needs at least 3 strong and 3 weak tiles, got "
            f"{counts[1]} strong and {counts[0]} weak."
        )
    estimator, default_grid = _candidates(kind, seed)
    grid = default_grid if grid is None else grid
    cv = StratifiedKFold(3, shuffle=True, random_state=seed)
    search = GridSearchCV(estimator, grid, scoring="roc_auc", cv=cv, n_jobs=1).fit(x, y)
    spec, arrays = _export(search.best_estimator_)
    params = {k: v for k, v in search.best_params_.items()}
    return IntegratedClassifier(kind, spec, arrays, params, float(search.best_score_))
