"""DeLong's nonparametric AUC interval and the paired test of two AUCs on the same cases.

No maintained Python library implements DeLong, so it lives here, written with the
structural components of DeLong et al. (1988) computed from ranks (Sun and Xu, 2014).

References
----------
DeLong E.R., DeLong D.M., Clarke-Pearson D.L. (1988) Comparing the areas under two or more
correlated receiver operating characteristic curves. Biometrics 44:837-845.
Sun X., Xu W. (2014) Fast implementation of DeLong's algorithm. IEEE Signal Proc. Letters 21:1389.
Hillis S.L. (2007) A comparison of denominator degrees of freedom methods for multiple observer
ROC analysis. Statistics in Medicine 26:596-619.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

__all__ = [
    "Components",
    "DelongPaired",
    "as_bool",
    "auc_variance",
    "delong_paired",
    "jackknife_covariance",
    "structural_components",
]


@dataclass(frozen=True)
class DelongPaired:
    """DeLong's test of two correlated AUCs (same cases, two scores).

    Attributes
    ----------
    auc_a, auc_b : float
        The two areas under the ROC curve.
    difference : float
        ``auc_a - auc_b``.
    se : float
        Standard error of the difference.
    z, p_value : float
        Normal statistic ``difference / se`` and its two-sided p-value
        (NaN when ``se`` is 0, e.g. identical scores).
    low, high : float
        Confidence interval of the difference (``difference +- z_level * se``).
    n : int
        Number of cases.
    """

    auc_a: float
    auc_b: float
    difference: float
    se: float
    z: float
    p_value: float
    low: float
    high: float
    n: int

    def to_dict(self) -> dict:
        """Return the fields as a JSON-ready dict (NaN becomes None)."""
        return {k: (None if np.isnan(v) else v) for k, v in asdict(self).items()}


@dataclass(frozen=True)
class Components:
    """The AUC of one score and DeLong's structural components.

    Attributes
    ----------
    auc : float
        Area under the ROC curve (Mann-Whitney, ties count one half).
    v10 : numpy.ndarray
        One value per positive case: the fraction of negatives it outranks.
    v01 : numpy.ndarray
        One value per negative case: the fraction of positives that outrank it.
    """

    auc: float
    v10: np.ndarray
    v01: np.ndarray


def structural_components(truth: Sequence, score: Sequence) -> Components:
    """Return the AUC and its structural components V10 and V01 (DeLong et al. 1988).

    Computed from ranks (Sun and Xu 2014) instead of every positive/negative pair.

    Parameters
    ----------
    truth : sequence of bool or 0/1
        True status per case; both classes must be present.
    score : sequence of float
        Higher means more likely positive.

    Returns
    -------
    Components
        ``v10`` in the order of the positive cases, ``v01`` of the negative ones.
    """
    t = as_bool(truth)
    values = np.asarray(score, dtype=float)
    pos, neg = values[t], values[~t]
    m, n = pos.size, neg.size
    if m == 0 or n == 0:
        raise ValueError("structural components need positive and negative cases")
    ranks = stats.rankdata(np.concatenate([pos, neg]))
    auc = (ranks[:m].sum() - m * (m + 1) / 2) / (m * n)
    v10 = (ranks[:m] - stats.rankdata(pos)) / n
    v01 = 1.0 - (ranks[m:] - stats.rankdata(neg)) / m
    return Components(float(auc), v10, v01)


def jackknife_covariance(truth: Sequence, scores: Sequence[Sequence]) -> np.ndarray:
    """Jackknife covariance matrix of the AUCs of several scores of the same cases.

    Deleting positive case ``i`` changes the AUC to ``(m A - V10_i) / (m - 1)`` (and a
    negative one likewise), so the jackknife needs no refitting: it is exactly
    ``(N - 1) / N * sum_k d_k d_k^T`` over the N cases, with ``d_k`` the deviations of the
    leave-one-out AUCs. This is the covariance that the Obuchowski-Rockette MRMC analysis
    uses (Hillis 2007), checked against OR-DBM MRMC's output for the Van Dyke data.

    Parameters
    ----------
    truth : sequence of bool or 0/1
        True status per case.
    scores : sequence of sequences of float
        One score per case for each of K readings (e.g. reader x modality).

    Returns
    -------
    numpy.ndarray
        ``(K, K)`` covariance of the K AUCs.
    """
    deviations = []
    for score in scores:
        c = structural_components(truth, score)
        m, n = c.v10.size, c.v01.size
        deviations.append(np.concatenate([(c.v10 - c.auc) / (m - 1), (c.v01 - c.auc) / (n - 1)]))
    d = np.stack(deviations)
    cases = d.shape[1]
    return (cases - 1) / cases * d @ d.T


def as_bool(values) -> np.ndarray:
    """Return binary labels (booleans or 0/1) as a boolean array; anything else raises."""
    array = np.asarray(values)
    if array.dtype != bool and not np.isin(array, (0, 1)).all():
        raise ValueError("binary labels must be booleans or 0/1")
    return array.astype(bool)


def auc_variance(truth: Sequence, score: Sequence) -> tuple[float, float]:
    """Area under the ROC curve and DeLong's estimate of its variance.

    Parameters
    ----------
    truth : sequence of bool or 0/1
        True status per case.
    score : sequence of float
        Higher means more likely positive.

    Returns
    -------
    (auc, variance) : tuple of float
        AUC NaN when a class is absent; variance NaN when a class has fewer than 2 cases.
    """
    t = as_bool(truth)
    m, n = int(t.sum()), int((~t).sum())
    if m == 0 or n == 0:
        return float("nan"), float("nan")
    c = structural_components(t, score)
    if m < 2 or n < 2:
        return c.auc, float("nan")
    return c.auc, float(c.v10.var(ddof=1) / m + c.v01.var(ddof=1) / n)


def delong_paired(
    truth: Sequence, score_a: Sequence, score_b: Sequence, level: float = 0.95
) -> DelongPaired:
    """DeLong's test of whether two scores of the same cases have equal AUCs.

    The variance of the difference uses the covariance of the two scores'
    structural components (DeLong et al. 1988, eq. 3), as in pROC's
    ``roc.test(method="delong", paired=TRUE)``.

    Parameters
    ----------
    truth : sequence of bool or 0/1
        True status per case.
    score_a, score_b : sequence of float
        Two scores of the same cases (e.g. the model and a reader); higher means positive.
    level : float
        Coverage of the interval of the difference.

    Returns
    -------
    DelongPaired

    Raises
    ------
    ValueError
        When the lengths differ or a class has fewer than 2 cases.
    """
    t = as_bool(truth)
    a, b = np.asarray(score_a, dtype=float), np.asarray(score_b, dtype=float)
    if not t.shape == a.shape == b.shape:
        raise ValueError("truth and both scores must describe the same cases")
    m, n = int(t.sum()), int((~t).sum())
    if m < 2 or n < 2:
        raise ValueError("the paired DeLong test needs at least 2 positive and 2 negative cases")
    ca, cb = structural_components(t, a), structural_components(t, b)
    auc_a, auc_b = ca.auc, cb.auc
    s10, s01 = np.cov(ca.v10, cb.v10), np.cov(ca.v01, cb.v01)
    variance = (s10[0, 0] + s10[1, 1] - 2 * s10[0, 1]) / m
    variance += (s01[0, 0] + s01[1, 1] - 2 * s01[0, 1]) / n
    se = float(np.sqrt(max(variance, 0.0)))
    difference = auc_a - auc_b
    z = difference / se if se > 0 else float("nan")
    p = float(2 * stats.norm.sf(abs(z))) if se > 0 else float("nan")
    half = stats.norm.ppf(0.5 + level / 2) * se
    return DelongPaired(
        auc_a, auc_b, difference, se, z, p, difference - half, difference + half, int(t.size)
    )
