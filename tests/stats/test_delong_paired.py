"""DeLong's AUC variance and paired test against a brute-force structural-components computation.

The reference here is DeLong et al. (1988) computed literally: the pairwise kernel psi(X, Y)
over every positive/negative pair, its structural components V10 and V01, and their covariance
matrices S10, S01 (eq. 3 of the paper). test_delong_published.py checks the same components
against values published for the Van Dyke data.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from sklearn import metrics as skm

from her2viewer.stats import metrics as m
from her2viewer.stats.delong import auc_variance, delong_paired


def _psi(truth, score):
    pos, neg = score[truth], score[~truth]
    return (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])


def _brute_paired(truth, a, b):
    """Return (auc_a, auc_b, var(auc_a - auc_b)) from DeLong et al. (1988) directly."""
    psi_a, psi_b = _psi(truth, a), _psi(truth, b)
    v10 = np.stack([psi_a.mean(axis=1), psi_b.mean(axis=1)])
    v01 = np.stack([psi_a.mean(axis=0), psi_b.mean(axis=0)])
    s = np.cov(v10) / v10.shape[1] + np.cov(v01) / v01.shape[1]
    contrast = np.array([1.0, -1.0])
    return psi_a.mean(), psi_b.mean(), contrast @ s @ contrast


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_delong_paired_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    n = 40 + 17 * seed
    truth = rng.random(n) < 0.4
    a = np.round(rng.normal(truth * 1.2, 1.0), 1)  # rounded: ties on purpose
    b = np.round(0.6 * a + rng.normal(truth * 0.5, 1.0), 1)  # correlated with a
    result = delong_paired(truth, a, b)
    auc_a, auc_b, var = _brute_paired(truth, a, b)
    assert result.auc_a == pytest.approx(skm.roc_auc_score(truth, a))
    assert (result.auc_a, result.auc_b) == pytest.approx((auc_a, auc_b))
    assert result.difference == pytest.approx(auc_a - auc_b)
    assert result.se == pytest.approx(np.sqrt(var))
    assert result.z == pytest.approx((auc_a - auc_b) / np.sqrt(var))
    assert result.p_value == pytest.approx(2 * stats.norm.sf(abs(result.z)))
    half = stats.norm.ppf(0.975) * np.sqrt(var)
    assert (result.low, result.high) == pytest.approx((auc_a - auc_b - half, auc_a - auc_b + half))
    assert result.n == n


def test_auc_variance_matches_brute_force_single_curve():
    rng = np.random.default_rng(9)
    truth = rng.random(70) < 0.5
    score = np.round(rng.normal(truth * 0.8, 1.0), 1)
    psi = _psi(truth, score)
    expected = psi.mean(axis=1).var(ddof=1) / psi.shape[0]
    expected += psi.mean(axis=0).var(ddof=1) / psi.shape[1]
    assert auc_variance(truth, score) == pytest.approx((psi.mean(), expected))


def test_paired_hand_computed_small_example():
    # truth 1,1,0,0 ; a ranks both positives above both negatives except 0.4 < 0.5: AUC_a = 3/4
    # b: 0.8 beats 0.3, 0.6; 0.7 beats 0.3, 0.6 -> AUC_b = 1. V10_a = (1, 1/2), V10_b = (1, 1);
    # V01_a = (1/2, 1), V01_b = (1, 1): only a varies, so var(diff) = var(V10_a)/2 + var(V01_a)/2
    # = (1/8)/2 + (1/8)/2 = 1/8.
    result = delong_paired([1, 1, 0, 0], [0.9, 0.4, 0.5, 0.1], [0.8, 0.7, 0.3, 0.6])
    assert (result.auc_a, result.auc_b) == pytest.approx((0.75, 1.0))
    assert result.se == pytest.approx(np.sqrt(1 / 8))


def test_reversed_score_has_complementary_auc_and_doubled_se():
    rng = np.random.default_rng(5)
    truth = rng.random(60) < 0.5
    score = rng.normal(truth * 1.0, 1.0)
    result = delong_paired(truth, score, -score)
    auc, var = auc_variance(truth, score)
    assert result.auc_b == pytest.approx(1 - auc)
    assert result.se == pytest.approx(2 * np.sqrt(var))


def test_identical_scores_have_no_test_and_bad_input_raises():
    truth, score = [1, 1, 0, 0, 1], [0.9, 0.3, 0.4, 0.1, 0.8]
    same = delong_paired(truth, score, score)
    assert same.difference == 0 and same.se == 0
    assert same.to_dict()["p_value"] is None
    with pytest.raises(ValueError, match="same cases"):
        delong_paired(truth, score, score[:-1])
    with pytest.raises(ValueError, match="at least 2 positive"):
        delong_paired([1, 0, 0], [0.2, 0.1, 0.3], [0.3, 0.2, 0.1])


def test_metrics_reexports_the_paired_test():
    assert m.delong_paired is delong_paired
    assert "delong_paired" in m.__all__
