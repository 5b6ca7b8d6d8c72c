"""Shared metrics against scipy/sklearn and hand-computed values, and seed 000's McNemar claims."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from sklearn import metrics as skm

from her2viewer.stats import metrics as m

SCORES = ["0", "1+", "2+", "3+"]


def test_confusion_matrix_matches_sklearn():
    rng = np.random.default_rng(1)
    a = rng.choice(SCORES, 200)
    b = rng.choice(SCORES, 200)
    assert (m.confusion_matrix(a, b, SCORES) == skm.confusion_matrix(a, b, labels=SCORES)).all()


def test_confusion_matrix_rejects_unknown_label():
    with pytest.raises(ValueError, match="not one of the labels"):
        m.confusion_matrix(["0", "4+"], ["0", "0"], SCORES)


@pytest.mark.parametrize("weights", [None, "linear", "quadratic"])
def test_cohen_kappa_matches_sklearn(weights):
    rng = np.random.default_rng(2)
    a = rng.choice(SCORES, 150)
    b = np.where(rng.random(150) < 0.6, a, rng.choice(SCORES, 150))
    expected = skm.cohen_kappa_score(a, b, labels=SCORES, weights=weights)
    assert m.cohen_kappa(a, b, SCORES, weights) == pytest.approx(expected, abs=1e-12)


def test_quadratic_kappa_hand_computed():
    # 2 raters, 3 ordinal classes, 4 cases: a = 0,1,2,2 ; b = 0,2,2,1
    # cm = [[1,0,0],[0,0,1],[0,1,1]]; w = ((i-j)/2)^2 -> observed weighted sum 0.25 + 0.25 = 0.5
    # row sums = col sums = (1,1,2); expected_ij = r_i c_j / 4; sum w * expected
    # = (0.25 + 0.25 + 2 + 2 + 0.5 + 0.5) / 4 = 1.375 ; kappa = 1 - 0.5 / 1.375 = 7/11
    assert m.cohen_kappa([0, 1, 2, 2], [0, 2, 2, 1], [0, 1, 2], "quadratic") == pytest.approx(
        7 / 11
    )


def test_fleiss_kappa_wikipedia_example():
    # Fleiss (1971) worked example as given on Wikipedia: 10 items, 14 raters, 5 categories
    counts = np.array(
        [
            [0, 0, 0, 0, 14],
            [0, 2, 6, 4, 2],
            [0, 0, 3, 5, 6],
            [0, 3, 9, 2, 0],
            [2, 2, 8, 1, 1],
            [7, 7, 0, 0, 0],
            [3, 2, 6, 3, 0],
            [2, 5, 3, 2, 2],
            [6, 5, 2, 1, 0],
            [0, 2, 2, 3, 7],
        ]
    )
    assert m.fleiss_kappa(counts) == pytest.approx(0.20993, abs=1e-4)


def test_fleiss_kappa_two_raters_perfect_and_bad_input():
    assert m.fleiss_kappa(np.array([[2, 0], [0, 2], [2, 0]])) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="same number"):
        m.fleiss_kappa(np.array([[2, 0], [1, 2]]))


def test_mcnemar_exact_matches_scipy_binomtest():
    for b, c in [(5, 0), (7, 2), (12, 3), (10, 10), (0, 0), (1, 9)]:
        expected = 1.0 if b + c == 0 else stats.binomtest(b, b + c, 0.5).pvalue
        assert m.mcnemar_from_counts(b, c, "exact")[1] == pytest.approx(expected, rel=1e-12)


def test_mcnemar_chi2_hand_computed():
    # b=9, c=0: chi2 = 81/9 = 9 ; with continuity correction (9-1)^2/9 = 64/9
    stat, p = m.mcnemar_from_counts(9, 0, "chi2")
    assert stat == pytest.approx(9.0)
    assert p == pytest.approx(stats.chi2.sf(9.0, 1))
    stat, p = m.mcnemar_from_counts(9, 0, "chi2_cc")
    assert stat == pytest.approx(64 / 9)
    assert p == pytest.approx(0.0076608, abs=1e-6)
    with pytest.raises(ValueError):
        m.mcnemar_from_counts(1, 2, "fisher")


def test_mcnemar_auto_table_and_method():
    model = [True] * 18 + [False] * 3
    reader = [True] * 13 + [False] * 5 + [False] * 3
    result = m.mcnemar(model, reader)
    assert result.table == ((13, 5), (0, 3))
    assert result.method == "exact"
    assert result.p_value == pytest.approx(0.0625)
    big = m.mcnemar([True] * 30 + [False] * 5, [False] * 30 + [True] * 5)
    assert big.method == "chi2_cc"


def test_seed000_published_mcnemar_p_values():
    """Seed 000: 21 cases, model 18 correct, reader A 13 (p < 0.01), reader B 9 (p < 0.001).

    Over every 2x2 split consistent with those counts, the tool finds:
    - model vs reader A: the smallest two-sided p-value is 0.0625 (exact), 0.0253 (chi-square
      without correction), 0.0736 (chi-square with correction): "p < 0.01" is NOT attainable by
      any of the three tests, and only the uncorrected chi-square reaches p < 0.05;
    - model vs reader B: the smallest p is 0.0039 (exact), 0.0027 (chi-square), 0.0077 (corrected):
      "p < 0.01" is attainable (by every test, on the split with no case only B got right),
      "p < 0.001" is NOT attainable by any test.
    """
    a = m.mcnemar_splits(21, 18, 13)
    b = m.mcnemar_splits(21, 18, 9)
    assert len(a) == 4 and len(b) == 4  # the model's 3 errors split 0..3 ways
    min_a = {k: min(r[f"p_{k}"] for r in a) for k in ("exact", "chi2", "chi2_cc")}
    min_b = {k: min(r[f"p_{k}"] for r in b) for k in ("exact", "chi2", "chi2_cc")}
    assert min_a["exact"] == pytest.approx(0.0625)
    assert min_a["chi2"] == pytest.approx(0.025347, abs=1e-6)
    assert min_a["chi2_cc"] == pytest.approx(0.073638, abs=1e-6)
    assert all(p >= 0.01 for p in min_a.values())  # published p < 0.01: not attainable
    assert min_b["exact"] == pytest.approx(2 / 512)
    assert min_b["chi2"] == pytest.approx(0.0026998, abs=1e-6)
    assert min_b["chi2_cc"] == pytest.approx(0.0076608, abs=1e-6)
    assert all(p < 0.01 for p in min_b.values())  # p < 0.01: attainable
    assert all(p >= 0.001 for p in min_b.values())  # published p < 0.001: not attainable
    for row in a + b:
        assert row["both"] + row["only_a"] + row["only_b"] + row["neither"] == 21


def test_clopper_pearson_matches_scipy():
    for k, n in [(13, 21), (0, 10), (10, 10), (18, 21)]:
        ci = stats.binomtest(k, n).proportion_ci(0.95, method="exact")
        assert m.clopper_pearson(k, n) == pytest.approx((ci.low, ci.high), abs=1e-10)
    low, high = m.clopper_pearson(0, 0)
    assert np.isnan(low) and np.isnan(high)


def test_binary_metrics_match_sklearn():
    rng = np.random.default_rng(3)
    t = rng.random(300) < 0.4
    p = np.where(rng.random(300) < 0.75, t, ~t)
    result = m.binary_metrics(t, p, n_boot=500)
    assert result["accuracy"].value == pytest.approx(skm.accuracy_score(t, p))
    assert result["sensitivity"].value == pytest.approx(skm.recall_score(t, p))
    assert result["specificity"].value == pytest.approx(skm.recall_score(~t, ~p))
    assert result["ppv"].value == pytest.approx(skm.precision_score(t, p))
    assert result["balanced_accuracy"].value == pytest.approx(skm.balanced_accuracy_score(t, p))
    assert result["f1"].value == pytest.approx(skm.f1_score(t, p))
    for est in result.values():
        assert est.low <= est.value <= est.high
    again = m.binary_metrics(t, p, n_boot=500)
    assert again["f1"] == result["f1"]  # seeded bootstrap: reproducible


def test_bootstrap_cm_matches_generic_bootstrap():
    rng = np.random.default_rng(4)
    t = rng.choice(SCORES, 80)
    p = np.where(rng.random(80) < 0.7, t, rng.choice(SCORES, 80))

    def kappa(tt, pp):
        return m.cohen_kappa(tt, pp, SCORES, "quadratic")

    slow = m.bootstrap_ci(kappa, t, p, n_boot=300, seed=5)
    fast = m.bootstrap_cm_ci(
        lambda cm: m.kappa_from_cm(cm, "quadratic"), t, p, SCORES, n_boot=300, seed=5
    )
    assert fast == pytest.approx(slow, abs=1e-12)


def _delong_naive(truth, score):
    pos, neg = score[truth], score[~truth]
    psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    v10, v01 = psi.mean(axis=1), psi.mean(axis=0)
    return psi.mean(), v10.var(ddof=1) / pos.size + v01.var(ddof=1) / neg.size


def test_auc_delong_against_sklearn_and_naive_variance():
    rng = np.random.default_rng(6)
    t = rng.random(120) < 0.35
    s = np.round(rng.normal(t * 1.0, 1.0), 1)  # rounded: ties on purpose
    est = m.auc_delong(t, s)
    auc, var = _delong_naive(t, s)
    assert est.value == pytest.approx(skm.roc_auc_score(t, s))
    assert est.value == pytest.approx(auc)
    half = stats.norm.ppf(0.975) * np.sqrt(var)
    assert (est.low, est.high) == pytest.approx((auc - half, min(1.0, auc + half)))
    fpr, tpr, _ = m.roc_curve(t, s)
    assert np.trapezoid(tpr, fpr) == pytest.approx(est.value)


def test_auc_single_class_is_nan():
    est = m.auc_delong([1, 1, 1], [0.1, 0.5, 0.9])
    assert np.isnan(est.value)
    assert est.to_dict()["value"] is None


def test_multiclass_metrics_match_sklearn():
    rng = np.random.default_rng(7)
    t = rng.choice(SCORES, 120, p=[0.4, 0.3, 0.2, 0.1])
    p = np.where(rng.random(120) < 0.6, t, rng.choice(SCORES, 120))
    result = m.multiclass_metrics(t, p, SCORES, "quadratic", n_boot=300)
    assert result["accuracy"].value == pytest.approx(skm.accuracy_score(t, p))
    assert result["balanced_accuracy"].value == pytest.approx(skm.balanced_accuracy_score(t, p))
    assert result["kappa"].value == pytest.approx(
        skm.cohen_kappa_score(t, p, labels=SCORES, weights="quadratic")
    )
    for est in result.values():
        assert est.low <= est.value <= est.high
