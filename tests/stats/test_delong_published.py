"""DeLong's structural components against values published for a public data set.

The Van Dyke et al. (1993) MRMC data (tests/data/mrmc) come with OR-DBM MRMC's printed
reader x modality AUCs and the Obuchowski-Rockette error covariances (Var, Cov1, Cov2, Cov3).
Those covariances are jackknife covariances of the AUCs, and the jackknife of a Mann-Whitney
AUC is an exact function of DeLong's structural components (V10, V01), so matching them to
the printed digits checks every component the DeLong variance is made of.
"""

from __future__ import annotations

import csv
from itertools import permutations
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from her2viewer.stats.delong import (
    auc_variance,
    delong_paired,
    jackknife_covariance,
    structural_components,
)

DATA = Path(__file__).resolve().parents[1] / "data" / "mrmc" / "vandyke.csv"

#: OR-DBM MRMC 2.5's printed AUCs, (reader, modality) -> AUC.
PUBLISHED_AUC = {
    (1, 1): 0.91964573, (1, 2): 0.94782609, (2, 1): 0.85877617, (2, 2): 0.90531401,
    (3, 1): 0.90386473, (3, 2): 0.92173913, (4, 1): 0.97310789, (4, 2): 0.99935588,
    (5, 1): 0.82979066, (5, 2): 0.92995169,
}  # fmt: skip
PUBLISHED_OR = {"var": 0.00080229, "cov1": 0.00034661, "cov2": 0.00034407, "cov3": 0.00023903}


def _readings() -> tuple[np.ndarray, dict[tuple[int, int], np.ndarray]]:
    rows = list(csv.DictReader(DATA.open()))
    cases = sorted({int(r["case"]) for r in rows})
    truth = np.zeros(len(cases), dtype=bool)
    ratings: dict[tuple[int, int], np.ndarray] = {}
    for row in rows:
        case = int(row["case"])
        truth[case] = row["truth"] == "1"
        key = (int(row["reader"]), int(row["modality"]))
        ratings.setdefault(key, np.zeros(len(cases)))[case] = float(row["rating"])
    return truth, ratings


def test_aucs_match_published_values():
    truth, ratings = _readings()
    assert (truth.sum(), (~truth).sum()) == (45, 69)
    for key, published in PUBLISHED_AUC.items():
        assert structural_components(truth, ratings[key]).auc == pytest.approx(published, abs=5e-9)


def test_or_covariances_match_published_values():
    truth, ratings = _readings()
    keys = sorted(ratings)
    cov = jackknife_covariance(truth, [ratings[k] for k in keys])
    at = {k: i for i, k in enumerate(keys)}
    readers = range(1, 6)
    found = {
        "var": np.mean([cov[at[k], at[k]] for k in keys]),
        "cov1": np.mean([cov[at[(r, 1)], at[(r, 2)]] for r in readers]),
        "cov2": np.mean(
            [cov[at[(r, t)], at[(s, t)]] for r, s in permutations(readers, 2) for t in (1, 2)]
        ),
        "cov3": np.mean([cov[at[(r, 1)], at[(s, 2)]] for r, s in permutations(readers, 2)]),
    }
    for name, published in PUBLISHED_OR.items():
        assert found[name] == pytest.approx(published, abs=5e-9), name


def test_jackknife_covariance_equals_refitting_leave_one_out():
    truth, ratings = _readings()
    scores = [ratings[(1, 1)], ratings[(1, 2)]]
    loo = np.array(
        [[roc_auc_score(np.delete(truth, k), np.delete(s, k)) for s in scores] for k in range(114)]
    )
    d = loo - loo.mean(axis=0)
    expected = 113 / 114 * d.T @ d
    np.testing.assert_allclose(jackknife_covariance(truth, scores), expected, rtol=1e-9)


def test_delong_on_published_data_is_consistent():
    truth, ratings = _readings()
    a, b = ratings[(1, 1)], ratings[(1, 2)]
    paired = delong_paired(truth, a, b)
    assert paired.difference == pytest.approx(
        PUBLISHED_AUC[(1, 1)] - PUBLISHED_AUC[(1, 2)], abs=1e-8
    )
    var_a, var_b = auc_variance(truth, a)[1], auc_variance(truth, b)[1]
    ca, cb = structural_components(truth, a), structural_components(truth, b)
    cov_ab = np.cov(ca.v10, cb.v10)[0, 1] / 45 + np.cov(ca.v01, cb.v01)[0, 1] / 69
    assert paired.se**2 == pytest.approx(var_a + var_b - 2 * cov_ab)
