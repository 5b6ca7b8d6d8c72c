"""HER2Net's integrated classifier: exactly five inputs, exported arrays match scikit-learn."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from her2viewer.errors import ModelError
from her2viewer.models.her2net.ensemble import (
    KINDS,
    IntegratedClassifier,
    _candidates,
    _export,
    fit_integrated,
)


@pytest.fixture(scope="module")
def outputs():
    rng = np.random.default_rng(0)
    x = rng.random((240, 5))
    y = (x.mean(1) + 0.25 * rng.random(240) > 0.62).astype(int)
    return x, y


@pytest.mark.parametrize("kind", KINDS)
def test_exported_model_reproduces_sklearn(kind, outputs):
    x, y = outputs
    estimator, _ = _candidates(kind, 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        estimator.fit(x, y)
    spec, arrays = _export(estimator)
    exported = IntegratedClassifier(kind, spec, arrays)
    probe = np.random.default_rng(1).random((50, 5))
    np.testing.assert_allclose(
        exported.predict_proba(probe), estimator.predict_proba(probe)[:, 1], atol=1e-9
    )


@pytest.mark.parametrize("columns", [4, 6])
def test_integrated_classifier_takes_exactly_five_outputs(columns, outputs):
    x, y = outputs
    with pytest.raises(ModelError, match="exactly 5"):
        fit_integrated(np.zeros((20, columns)), np.arange(20) % 2)
    small = fit_integrated(x, y, "rf", grid={"n_estimators": [10], "max_depth": [3]})
    with pytest.raises(ModelError, match="exactly 5"):
        small.predict_proba(np.zeros((3, columns)))
    assert small.predict_proba(x).shape == (len(x),)


def test_grid_search_fits_a_random_forest(outputs):
    x, y = outputs
    fitted = fit_integrated(
        x, y, "rf", grid={"n_estimators": [10, 30], "max_depth": [2, None]}, seed=3
    )
    assert fitted.kind == "rf" and set(fitted.params) == {"n_estimators", "max_depth"}
    assert fitted.cv_auc > 0.7
    assert fitted.meta()["spec"] == {"type": "tree_mean"}


def test_bad_training_inputs_are_one_line_errors(outputs):
    x, _ = outputs
    with pytest.raises(ModelError, match="at least 3 strong"):
        fit_integrated(x[:10], np.zeros(10))
    with pytest.raises(ModelError, match="labels"):
        fit_integrated(x[:10], np.zeros(9))
    with pytest.raises(ModelError, match="Unknown integrated classifier"):
        fit_integrated(x, np.arange(len(x)) % 2, "xgboost")


def test_cohort_summary_uses_shared_metrics():
    from her2viewer.models.her2net.evaluation import summarise

    rows = [
        {
            "truth_positive": truth,
            "her2_status": "positive" if p >= 10 else "negative",
            "high_expression_percent": p,
            "true_high_expression_fraction": f,
            "tumor_miou": 0.9,
            "tumor_iou": 0.8,
        }
        for truth, p, f in [(True, 40, 0.5), (True, 5, 0.2), (False, 0, 0.0), (False, 12, 0.03)]
    ]
    report = summarise(rows)
    assert report["confusion_matrix"] == [[1, 1], [1, 1]]
    assert report["status"]["accuracy"]["value"] == 0.5
    assert report["status"]["sensitivity"]["method"] == "clopper-pearson"
    assert report["auc_p"]["value"] == 0.75 and report["auc_p"]["method"] == "delong"
    assert report["tumor_miou"] == pytest.approx(0.9)
    assert report["p_correlation"]["spearman"] == pytest.approx(0.8)
