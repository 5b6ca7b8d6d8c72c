"""Classification metrics with confidence intervals, shared by training and reader studies.

A thin layer over scikit-learn (confusion matrix, ROC, Cohen's kappa), SciPy (exact
binomial intervals, bootstrap resampling) and statsmodels (McNemar, Fleiss' kappa),
plus DeLong's AUC interval from :mod:`her2viewer.stats.delong`. Every function takes
plain numpy-compatible arrays and returns plain numbers or small frozen dataclasses,
so that results serialise to JSON with ``asdict``.

Conventions
-----------
- Binary labels are booleans or 0/1 integers; ``1``/``True`` is the positive class.
- Confusion matrices have the truth in rows and the prediction in columns.
- Proportions (accuracy, sensitivity, specificity, PPV, NPV) get exact
  Clopper-Pearson intervals; derived measures (balanced accuracy, F1, kappa)
  get percentile bootstrap intervals over cases; AUC gets DeLong's interval.

The bootstrap statistics of a confusion matrix (:func:`balanced_accuracy_from_cm`,
:func:`f1_from_cm`, :func:`kappa_from_cm`) stay here because they evaluate thousands of
resampled matrices in one array operation, which scikit-learn's per-sample scorers cannot.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats
from sklearn import metrics as skm
from sklearn.exceptions import UndefinedMetricWarning
from statsmodels.stats import contingency_tables, inter_rater

from her2viewer.stats.delong import DelongPaired, auc_variance, delong_paired
from her2viewer.stats.delong import as_bool as _as_bool

__all__ = [
    "DelongPaired",
    "Estimate",
    "McNemarResult",
    "auc_delong",
    "balanced_accuracy_from_cm",
    "binary_metrics",
    "bootstrap_ci",
    "bootstrap_cm_ci",
    "cm_estimate",
    "clopper_pearson",
    "cohen_kappa",
    "confusion_matrix",
    "delong_paired",
    "f1_from_cm",
    "fleiss_kappa",
    "kappa_from_cm",
    "mcnemar",
    "mcnemar_from_counts",
    "mcnemar_splits",
    "multiclass_metrics",
    "roc_curve",
]

#: Discordant-pair count below which :func:`mcnemar` uses the exact binomial test.
EXACT_MCNEMAR_BELOW = 25


@dataclass(frozen=True)
class Estimate:
    """A point estimate with a confidence interval.

    Attributes
    ----------
    value, low, high : float
        Estimate and interval bounds (NaN where undefined, e.g. no positive cases).
    method : str
        How the interval was computed ("clopper-pearson", "bootstrap", "delong").
    n : int
        Number of observations the estimate rests on.
    """

    value: float
    low: float
    high: float
    method: str
    n: int

    def to_dict(self) -> dict:
        """Return the fields as a JSON-ready dict (NaN becomes None)."""
        return {
            k: (None if isinstance(v, float) and np.isnan(v) else v)
            for k, v in asdict(self).items()
        }


@dataclass(frozen=True)
class McNemarResult:
    """Two-sided McNemar test of two paired binary outcomes.

    Attributes
    ----------
    table : tuple of tuple of int
        2x2 table ``[[both correct, only A correct], [only B correct, both wrong]]``.
    b, c : int
        Discordant counts: A correct and B wrong (b), A wrong and B correct (c).
    method : str
        "exact" (binomial), "chi2" (no continuity correction) or "chi2_cc" (Edwards' correction).
    statistic : float
        Chi-square statistic, or ``min(b, c)`` for the exact test.
    p_value : float
        Two-sided p-value.
    """

    table: tuple[tuple[int, int], tuple[int, int]]
    b: int
    c: int
    method: str
    statistic: float
    p_value: float

    def to_dict(self) -> dict:
        """Return the fields as a JSON-ready dict."""
        return {**asdict(self), "table": [list(row) for row in self.table]}


@contextmanager
def _undefined_is_nan():
    """Silence scikit-learn's warning for a measure it sets to NaN (e.g. one class only)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        yield


def confusion_matrix(truth: Sequence, pred: Sequence, labels: Sequence) -> np.ndarray:
    """Count (truth, prediction) pairs.

    Parameters
    ----------
    truth, pred : sequence
        Labels of the same length; every value must be one of ``labels``.
    labels : sequence
        Class labels in the order of the rows and columns.

    Returns
    -------
    ndarray of int64, shape (k, k)
        ``cm[i, j]`` is the number of cases of true class ``labels[i]`` predicted ``labels[j]``.
    """
    if len(truth) != len(pred):
        raise ValueError("truth and prediction differ in length")
    _codes(truth, labels), _codes(pred, labels)
    if len(truth) == 0:
        return np.zeros((len(labels), len(labels)), dtype=np.int64)
    return skm.confusion_matrix(truth, pred, labels=labels).astype(np.int64)


def _codes(values: Sequence, labels: Sequence) -> np.ndarray:
    """Return the index in ``labels`` of every value (vectorised); unknown values raise."""
    values, labels = np.asarray(values), np.asarray(labels)
    if values.size == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.argsort(labels, kind="stable")
    found = np.clip(np.searchsorted(labels[order], values), 0, len(labels) - 1)
    unknown = labels[order][found] != values
    if unknown.any():
        raise ValueError(f"value {values[unknown][0]!r} is not one of the labels")
    return order[found].astype(np.int64)


def clopper_pearson(successes: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper-Pearson) confidence interval of a binomial proportion.

    Returns ``(nan, nan)`` when ``n`` is 0.
    """
    if n == 0:
        return float("nan"), float("nan")
    ci = stats.binomtest(int(successes), int(n)).proportion_ci(level, method="exact")
    return float(ci.low), float(ci.high)


def _proportion(successes: int, n: int, level: float) -> Estimate:
    value = successes / n if n else float("nan")
    low, high = clopper_pearson(successes, n, level)
    return Estimate(float(value), low, high, "clopper-pearson", int(n))


def bootstrap_ci(
    statistic: Callable[..., float],
    *arrays: np.ndarray,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``statistic(*arrays)``, resampling cases.

    Parameters
    ----------
    statistic : callable
        Takes the arrays (resampled together along axis 0) and returns a float.
    *arrays : ndarray
        Arrays of equal length, one row per case.
    n_boot : int
        Number of resamples.
    level : float
        Coverage of the interval.
    seed : int
        Seed of the resampling, so that reports are reproducible.

    Returns
    -------
    (low, high) : tuple of float
        NaN when fewer than 2 cases or no resample gives a finite statistic.
    """
    arrays = tuple(np.asarray(a) for a in arrays)

    def resampled(idx: np.ndarray) -> np.ndarray:
        return np.array([statistic(*(a[row] for a in arrays)) for row in idx])

    return _percentile_interval(resampled, len(arrays[0]), n_boot, level, seed)


def _percentile_interval(
    statistic: Callable[[np.ndarray], np.ndarray], n: int, n_boot: int, level: float, seed: int
) -> tuple[float, float]:
    """Percentile interval of ``statistic`` over ``scipy.stats.bootstrap`` resamples of cases.

    ``statistic`` maps case indices of shape (n_boot, n) to n_boot values. Resamples
    whose statistic is not finite (e.g. F1 with no positive case drawn) are left out,
    which scipy's own percentile does not do, so the interval is taken here from
    the bootstrap distribution. NaN when fewer than 2 cases or no finite resample.
    """
    if n < 2:
        return float("nan"), float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        result = stats.bootstrap(
            (np.arange(n),),
            lambda idx, axis=-1: statistic(idx),
            n_resamples=n_boot,
            vectorized=True,
            method="percentile",
            rng=np.random.default_rng(seed),
        )
    values = np.asarray(result.bootstrap_distribution, dtype=float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return float("nan"), float("nan")
    alpha = 1.0 - level
    low, high = np.quantile(values, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def balanced_accuracy_from_cm(cm: np.ndarray) -> np.ndarray:
    """Mean recall over the classes present, from confusion matrices of shape (..., k, k).

    Classes without true cases are left out; NaN when there is none.
    """
    cm = np.asarray(cm, dtype=float)
    support = cm.sum(axis=-1)
    recall = np.divide(
        np.diagonal(cm, axis1=-2, axis2=-1), support, out=np.zeros_like(support), where=support > 0
    )
    present = (support > 0).sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(present > 0, recall.sum(axis=-1) / present, np.nan)


def f1_from_cm(cm: np.ndarray) -> np.ndarray:
    """F1 of the positive class (index 1) from binary confusion matrices of shape (..., 2, 2)."""
    cm = np.asarray(cm, dtype=float)
    tp, fn, fp = cm[..., 1, 1], cm[..., 1, 0], cm[..., 0, 1]
    denominator = 2 * tp + fn + fp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, 2 * tp / denominator, np.nan)


def kappa_from_cm(cm: np.ndarray, weights: str | None = None) -> np.ndarray:
    """Cohen's kappa from confusion matrices of shape (..., k, k); see :func:`cohen_kappa`."""
    cm = np.asarray(cm, dtype=float)
    w = _kappa_weights(cm.shape[-1], weights)
    n = cm.sum(axis=(-2, -1))
    with np.errstate(invalid="ignore", divide="ignore"):
        expected = (
            cm.sum(axis=-1)[..., :, None] * cm.sum(axis=-2)[..., None, :] / n[..., None, None]
        )
        chance = (w * expected).sum(axis=(-2, -1))
        observed = (w * cm).sum(axis=(-2, -1))
        return np.where(chance > 0, 1.0 - observed / chance, np.nan)


def bootstrap_cm_ci(
    statistic: Callable[[np.ndarray], np.ndarray],
    truth: Sequence,
    pred: Sequence,
    labels: Sequence,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of a statistic of the confusion matrix, resampling cases.

    Fast form of :func:`bootstrap_ci` for measures that depend only on the
    confusion matrix (accuracy, balanced accuracy, F1, kappa): all resamples are
    counted at once.

    Parameters
    ----------
    statistic : callable
        Maps confusion matrices of shape (n_boot, k, k) to n_boot values, e.g.
        :func:`balanced_accuracy_from_cm` or ``lambda cm: kappa_from_cm(cm, "quadratic")``.
    truth, pred, labels : sequence
        As for :func:`confusion_matrix`.
    n_boot, level, seed
        As for :func:`bootstrap_ci`.
    """
    k = len(labels)
    codes = _codes(truth, labels) * k + _codes(pred, labels)

    def resampled(idx: np.ndarray) -> np.ndarray:
        offsets = (np.arange(len(idx)) * k * k)[:, None]
        counts = np.bincount((codes[idx] + offsets).ravel(), minlength=len(idx) * k * k)
        return np.asarray(statistic(counts.reshape(len(idx), k, k)), dtype=float)

    return _percentile_interval(resampled, codes.size, n_boot, level, seed)


def cm_estimate(
    statistic: Callable[[np.ndarray], np.ndarray],
    truth: Sequence,
    pred: Sequence,
    labels: Sequence,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> Estimate:
    """A confusion-matrix statistic with its bootstrap interval, as an :class:`Estimate`."""
    value = float(statistic(confusion_matrix(truth, pred, labels)[None])[0])
    low, high = bootstrap_cm_ci(statistic, truth, pred, labels, n_boot, level, seed)
    return Estimate(value, low, high, "bootstrap", len(truth))


def binary_metrics(
    truth: Sequence, pred: Sequence, level: float = 0.95, n_boot: int = 2000, seed: int = 0
) -> dict[str, Estimate]:
    """Accuracy, sensitivity, specificity, PPV, NPV, balanced accuracy and F1 with CIs.

    Parameters
    ----------
    truth, pred : sequence of bool or 0/1
        True and predicted status per case (1 = positive).
    level : float
        Coverage of the intervals.
    n_boot, seed : int
        Bootstrap resamples and seed for balanced accuracy and F1.

    Returns
    -------
    dict of str to Estimate
        Keys ``accuracy``, ``sensitivity``, ``specificity``, ``ppv``, ``npv``
        (Clopper-Pearson) and ``balanced_accuracy``, ``f1`` (bootstrap).
    """
    t, p = _as_bool(truth), _as_bool(pred)
    if t.shape != p.shape:
        raise ValueError("truth and prediction differ in length")
    tp, tn = int((t & p).sum()), int((~t & ~p).sum())
    fp, fn = int((~t & p).sum()), int((t & ~p).sum())
    result = {
        "accuracy": _proportion(tp + tn, t.size, level),
        "sensitivity": _proportion(tp, tp + fn, level),
        "specificity": _proportion(tn, tn + fp, level),
        "ppv": _proportion(tp, tp + fp, level),
        "npv": _proportion(tn, tn + fn, level),
    }
    for name, func in (("balanced_accuracy", balanced_accuracy_from_cm), ("f1", f1_from_cm)):
        result[name] = cm_estimate(func, t, p, (False, True), n_boot, level, seed)
    return result


def multiclass_metrics(
    truth: Sequence,
    pred: Sequence,
    labels: Sequence,
    weights: str | None = None,
    level: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
) -> dict[str, Estimate]:
    """Accuracy, balanced accuracy and Cohen's kappa against the truth for k classes, with CIs.

    Parameters
    ----------
    truth, pred : sequence
        True and predicted labels per case, each one of ``labels``.
    labels : sequence
        Classes in order (the order matters for weighted kappa).
    weights : {None, "linear", "quadratic"}
        Kappa weights; "quadratic" for ordinal scores such as IHC 0/1+/2+/3+.
    level, n_boot, seed
        Interval coverage, bootstrap resamples and seed.

    Returns
    -------
    dict of str to Estimate
        ``accuracy`` (Clopper-Pearson), ``balanced_accuracy`` (mean recall over the
        classes present) and ``kappa`` (both bootstrap).
    """
    cm = confusion_matrix(truth, pred, labels)
    return {
        "accuracy": _proportion(int(np.trace(cm)), int(cm.sum()), level),
        "balanced_accuracy": cm_estimate(
            balanced_accuracy_from_cm, truth, pred, labels, n_boot, level, seed
        ),
        "kappa": cm_estimate(
            lambda c: kappa_from_cm(c, weights), truth, pred, labels, n_boot, level, seed
        ),
    }


def roc_curve(truth: Sequence, score: Sequence) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Receiver operating characteristic over every distinct score threshold.

    Returns
    -------
    fpr, tpr, thresholds : ndarray
        Starting at (0, 0) with threshold ``+inf`` and ending at (1, 1); a case is
        called positive when its score is >= the threshold.
    """
    t = _as_bool(truth)
    with _undefined_is_nan():
        fpr, tpr, thresholds = skm.roc_curve(
            t, np.asarray(score, dtype=float), pos_label=True, drop_intermediate=False
        )
    return np.nan_to_num(fpr), np.nan_to_num(tpr), thresholds


def auc_delong(truth: Sequence, score: Sequence, level: float = 0.95) -> Estimate:
    """Area under the ROC curve with DeLong's confidence interval.

    Ties count one half (the Mann-Whitney definition, equal to the trapezoidal
    area under :func:`roc_curve`). The interval is ``auc +- z * se`` clipped to [0, 1].

    Parameters
    ----------
    truth : sequence of bool or 0/1
        True status per case.
    score : sequence of float
        Higher means more likely positive.
    level : float
        Coverage of the interval.

    Returns
    -------
    Estimate
        NaN when a class is absent; NaN bounds when a class has fewer than 2 cases.
    """
    auc, variance = auc_variance(truth, score)
    n = len(_as_bool(truth))
    if np.isnan(variance):
        return Estimate(auc, float("nan"), float("nan"), "delong", n)
    half = stats.norm.ppf(0.5 + level / 2) * np.sqrt(variance)
    return Estimate(auc, max(0.0, auc - half), min(1.0, auc + half), "delong", n)


def _kappa_weights(k: int, weights: str | None) -> np.ndarray:
    i, j = np.meshgrid(np.arange(k), np.arange(k), indexing="ij")
    if weights is None:
        return (i != j).astype(float)
    scale = max(k - 1, 1)
    if weights == "linear":
        return np.abs(i - j) / scale
    if weights == "quadratic":
        return ((i - j) / scale) ** 2
    raise ValueError(f"weights must be None, 'linear' or 'quadratic', not {weights!r}")


def cohen_kappa(a: Sequence, b: Sequence, labels: Sequence, weights: str | None = None) -> float:
    """Cohen's kappa between two raters, optionally weighted for ordinal labels.

    Parameters
    ----------
    a, b : sequence
        Ratings of the same cases by two raters.
    labels : sequence
        Categories, in order (the order matters for weighted kappa).
    weights : {None, "linear", "quadratic"}
        Disagreement weights; ``None`` is the unweighted kappa.

    Returns
    -------
    float
        Same value as ``sklearn.metrics.cohen_kappa_score``; NaN when chance
        disagreement is zero (both raters always give one and the same category).
    """
    if len(a) != len(b):
        raise ValueError("the two raters must rate the same cases")
    _codes(a, labels), _codes(b, labels)
    with _undefined_is_nan():
        return float(skm.cohen_kappa_score(a, b, labels=labels, weights=weights))


def fleiss_kappa(counts: np.ndarray) -> float:
    """Fleiss' kappa for many raters.

    Parameters
    ----------
    counts : ndarray, shape (n_items, n_categories)
        ``counts[i, j]`` raters put item ``i`` in category ``j``; every row sums
        to the same number of raters (at least 2).

    Returns
    -------
    float
        NaN when chance agreement is 1 (every rating in one category).
    """
    counts = np.asarray(counts, dtype=float)
    raters = counts.sum(axis=1)
    if counts.shape[0] == 0 or not np.allclose(raters, raters[0]) or raters[0] < 2:
        raise ValueError("every item needs the same number (>= 2) of ratings")
    with np.errstate(invalid="ignore", divide="ignore"):
        kappa = float(inter_rater.fleiss_kappa(counts, method="fleiss"))
    return kappa if np.isfinite(kappa) else float("nan")


def mcnemar_from_counts(b: int, c: int, method: str) -> tuple[float, float]:
    """McNemar statistic and two-sided p-value from the discordant counts.

    Parameters
    ----------
    b, c : int
        Discordant pair counts.
    method : {"exact", "chi2", "chi2_cc"}
        Exact binomial test (``p = min(1, 2 * P[X <= min(b, c)])``, X ~ Bin(b + c, 1/2)),
        chi-square with 1 degree of freedom, or chi-square with Edwards' continuity correction.

    Returns
    -------
    (statistic, p_value) : tuple of float
        For no discordant pairs the p-value is 1.
    """
    if method not in ("exact", "chi2", "chi2_cc"):
        raise ValueError(f"method must be 'exact', 'chi2' or 'chi2_cc', not {method!r}")
    if method != "exact" and b == c:  # no evidence either way (statsmodels would divide by 0)
        return 0.0, 1.0
    result = contingency_tables.mcnemar(
        [[0, b], [c, 0]], exact=method == "exact", correction=method == "chi2_cc"
    )
    return float(result.statistic), float(result.pvalue)


def mcnemar(correct_a: Sequence, correct_b: Sequence, method: str = "auto") -> McNemarResult:
    """Two-sided McNemar test of whether two raters are equally often correct on the same cases.

    Parameters
    ----------
    correct_a, correct_b : sequence of bool
        Per case, whether rater A (e.g. the model) and rater B (a reader) were correct.
    method : {"auto", "exact", "chi2", "chi2_cc"}
        "auto" uses the exact binomial test when fewer than
        :data:`EXACT_MCNEMAR_BELOW` pairs are discordant, else the chi-square test
        with continuity correction.

    Returns
    -------
    McNemarResult
    """
    a, b_ = _as_bool(correct_a), _as_bool(correct_b)
    if a.shape != b_.shape:
        raise ValueError("the two raters must be compared on the same cases")
    both, only_a = int((a & b_).sum()), int((a & ~b_).sum())
    only_b, neither = int((~a & b_).sum()), int((~a & ~b_).sum())
    if method == "auto":
        method = "exact" if only_a + only_b < EXACT_MCNEMAR_BELOW else "chi2_cc"
    statistic, p = mcnemar_from_counts(only_a, only_b, method)
    return McNemarResult(((both, only_a), (only_b, neither)), only_a, only_b, method, statistic, p)


def mcnemar_splits(n: int, correct_a: int, correct_b: int) -> list[dict]:
    """Every 2x2 table consistent with two accuracies on the same cases, with its p-values.

    Published comparisons often give only each rater's number of correct cases;
    the McNemar p-value depends on how the disagreements split. This lists every
    possible split so that a published p-value can be checked for attainability.

    Parameters
    ----------
    n : int
        Number of cases both raters read.
    correct_a, correct_b : int
        Cases rater A and rater B got right.

    Returns
    -------
    list of dict
        One dict per feasible table with keys ``both``, ``only_a``, ``only_b``,
        ``neither`` and ``p_exact``, ``p_chi2``, ``p_chi2_cc``.
    """
    if not (0 <= correct_a <= n and 0 <= correct_b <= n):
        raise ValueError("correct counts must lie between 0 and n")
    rows = []
    for both in range(max(0, correct_a + correct_b - n), min(correct_a, correct_b) + 1):
        only_a, only_b = correct_a - both, correct_b - both
        row = {"both": both, "only_a": only_a, "only_b": only_b}
        row["neither"] = n - both - only_a - only_b
        for method in ("exact", "chi2", "chi2_cc"):
            row[f"p_{method}"] = mcnemar_from_counts(only_a, only_b, method)[1]
        rows.append(row)
    return rows
