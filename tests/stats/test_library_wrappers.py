"""Each statistic of her2viewer.stats.metrics equals the library call it wraps, on random data."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import stats
from sklearn import metrics as skm
from statsmodels.stats import contingency_tables, inter_rater, proportion

from her2viewer.stats import metrics as m

SEEDS = [0, 1, 2]
SCORES = ["0", "1+", "2+", "3+"]


def _binary(seed, n=90):
    rng = np.random.default_rng(seed)
    truth = rng.random(n) < 0.4
    pred = np.where(rng.random(n) < 0.7, truth, ~truth)
    score = np.round(rng.normal(truth * 1.0, 1.0), 1)
    return truth, pred, score


def _ordinal(seed, n=110):
    rng = np.random.default_rng(seed)
    a = rng.choice(SCORES, n)
    return a, np.where(rng.random(n) < 0.6, a, rng.choice(SCORES, n))


@pytest.mark.parametrize("seed", SEEDS)
def test_confusion_matrix_and_cm_statistics_equal_sklearn(seed):
    a, b = _ordinal(seed)
    cm = m.confusion_matrix(a, b, SCORES)
    assert (cm == skm.confusion_matrix(a, b, labels=SCORES)).all()
    assert m.balanced_accuracy_from_cm(cm[None])[0] == pytest.approx(
        skm.balanced_accuracy_score(a, b)
    )
    for weights in (None, "linear", "quadratic"):
        expected = skm.cohen_kappa_score(a, b, labels=SCORES, weights=weights)
        assert m.cohen_kappa(a, b, SCORES, weights) == pytest.approx(expected, abs=1e-12)
        assert m.kappa_from_cm(cm[None], weights)[0] == pytest.approx(expected, abs=1e-12)
    truth, pred, _ = _binary(seed)
    binary_cm = m.confusion_matrix(truth, pred, (False, True))
    assert m.f1_from_cm(binary_cm[None])[0] == pytest.approx(skm.f1_score(truth, pred))


@pytest.mark.parametrize("seed", SEEDS)
def test_roc_curve_equals_sklearn(seed):
    truth, _, score = _binary(seed)
    fpr, tpr, thresholds = m.roc_curve(truth, score)
    expected = skm.roc_curve(truth, score, drop_intermediate=False)
    for ours, theirs in zip((fpr, tpr, thresholds), expected, strict=True):
        np.testing.assert_array_equal(ours, theirs)
    assert m.auc_delong(truth, score).value == pytest.approx(skm.roc_auc_score(truth, score))


def test_roc_curve_of_one_class_is_flat_not_nan():
    fpr, tpr, _ = m.roc_curve([0, 0, 0], [0.2, 0.5, 0.9])
    assert np.isfinite(tpr).all() and (tpr == 0).all()
    assert fpr[-1] == 1.0


@pytest.mark.parametrize("seed", SEEDS)
def test_clopper_pearson_equals_scipy_and_statsmodels(seed):
    rng = np.random.default_rng(seed)
    for n in rng.integers(1, 60, 8):
        k = int(rng.integers(0, n + 1))
        for level in (0.9, 0.95):
            ci = stats.binomtest(k, int(n)).proportion_ci(level, method="exact")
            low, high = proportion.proportion_confint(k, int(n), 1 - level, method="beta")
            assert m.clopper_pearson(k, int(n), level) == pytest.approx((ci.low, ci.high))
            assert m.clopper_pearson(k, int(n), level) == pytest.approx((low, high), abs=1e-12)


@pytest.mark.parametrize("seed", SEEDS)
def test_mcnemar_equals_statsmodels(seed):
    rng = np.random.default_rng(seed)
    for b, c in rng.integers(0, 40, (10, 2)):
        if b == c:
            continue
        table = [[5, b], [c, 7]]
        for method, kwargs in (
            ("exact", {"exact": True}),
            ("chi2", {"exact": False, "correction": False}),
            ("chi2_cc", {"exact": False, "correction": True}),
        ):
            expected = contingency_tables.mcnemar(table, **kwargs)
            statistic, p = m.mcnemar_from_counts(int(b), int(c), method)
            assert (statistic, p) == pytest.approx((expected.statistic, expected.pvalue))


def test_mcnemar_without_evidence_is_p_one():
    for method in ("exact", "chi2", "chi2_cc"):
        assert m.mcnemar_from_counts(4, 4, method)[1] == pytest.approx(1.0)
        assert m.mcnemar_from_counts(0, 0, method)[1] == 1.0


@pytest.mark.parametrize("seed", SEEDS)
def test_fleiss_kappa_equals_statsmodels(seed):
    rng = np.random.default_rng(seed)
    ratings = rng.integers(0, 4, (30, 5))  # 30 items, 5 raters, 4 categories
    counts, _ = inter_rater.aggregate_raters(ratings, n_cat=4)
    assert m.fleiss_kappa(counts) == pytest.approx(inter_rater.fleiss_kappa(counts))


def test_fleiss_kappa_of_one_category_is_nan():
    assert np.isnan(m.fleiss_kappa(np.array([[3, 0], [3, 0]])))


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n", [31, 40])  # odd n: scipy draws all resamples in one call
def test_bootstrap_is_scipy_bootstrap_percentile(seed, n):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    ours = m.bootstrap_ci(lambda v: float(np.mean(v)), x, n_boot=400, level=0.9, seed=seed)
    theirs = stats.bootstrap(
        (x,),
        np.mean,
        n_resamples=400,
        confidence_level=0.9,
        method="percentile",
        rng=np.random.default_rng(seed),
    ).confidence_interval
    assert ours == pytest.approx((theirs.low, theirs.high), abs=1e-12)


@pytest.mark.parametrize("seed", SEEDS)
def test_bootstrap_cm_is_scipy_bootstrap_of_sklearn_f1(seed):
    truth, pred, _ = _binary(seed, n=45)

    def f1(idx, axis=-1):
        return np.array([skm.f1_score(truth[i], pred[i], zero_division=np.nan) for i in idx])

    theirs = stats.bootstrap(
        (np.arange(truth.size),),
        f1,
        n_resamples=300,
        method="percentile",
        rng=np.random.default_rng(seed),
    ).confidence_interval
    ours = m.bootstrap_cm_ci(m.f1_from_cm, truth, pred, (False, True), n_boot=300, seed=seed)
    assert ours == pytest.approx((theirs.low, theirs.high), abs=1e-12)


def test_undefined_measures_are_nan_without_library_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isnan(m.cohen_kappa([1, 1, 1], [1, 1, 1], [0, 1]))
        assert np.isnan(m.fleiss_kappa(np.array([[3, 0], [3, 0]])))
        assert (m.roc_curve([1, 1], [0.2, 0.3])[0] == 0).all()
