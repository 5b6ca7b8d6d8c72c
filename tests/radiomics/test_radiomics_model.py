"""PCA -> LR / RF / MLP pipeline on a synthetic feature table; JSON model files."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from her2viewer.errors import RadiomicsError
from her2viewer.radiomics.model import (
    MODEL_NAMES,
    load_models,
    pca_curve,
    predict_saved,
    read_feature_table,
    save_models,
    train_models,
)
from her2viewer.radiomics.plots import write_report_figures


def write_table(path, n=50, n_features=12, seed=0, signal=2.0):
    """Binary labels; the first three features carry the signal, the next are correlated copies."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    x = rng.normal(size=(n, n_features))
    x[:, :3] += signal * y[:, None]
    x[:, 3:6] = x[:, :3] * 0.9 + 0.1 * rng.normal(size=(n, 3))
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["case_id", "label", "scanner", *[f"original_f{i}" for i in range(n_features)]]
        )
        for i in range(n):
            writer.writerow([f"c{i}", ["negative", "positive"][y[i]], "GE", *x[i]])
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    path = write_table(tmp_path_factory.mktemp("radiomics") / "features.csv")
    table = read_feature_table(path)
    fitted, report = train_models(table, folds=3, seed=0)
    return table, fitted, report


def test_table_reading(trained):
    table, _, _ = trained
    assert table.classes == ["negative", "positive"] and table.x.shape == (50, 12)
    assert "scanner" not in table.feature_names and table.ids[0] == "c0"


def test_pca_components_reach_target_variance():
    rng = np.random.default_rng(1)
    base = rng.normal(size=(50, 3))
    x = np.hstack([base, base @ rng.normal(size=(3, 7))]) + 1e-3 * rng.normal(size=(50, 10))
    curve, n = pca_curve(x, 0.95)
    assert n <= 3 and curve[n - 1] >= 0.95 and (n == 1 or curve[n - 2] < 0.95)
    assert np.all(np.diff(curve) >= -1e-12) and curve[-1] == pytest.approx(1.0)


def test_report_has_seed_001_outputs(trained):
    _, _, report = trained
    assert report["n_train"] == 35 and report["n_test"] == 15
    for name in MODEL_NAMES:
        m = report["models"][name]
        assert 0.7 <= m["auc"] <= 1.0  # a strong signal must be found by every model
        assert m["auc_ci"][0] <= m["auc"] <= m["auc_ci"][1]
        assert 0.0 <= m["average_precision"] <= 1.0
        assert np.array(m["confusion"]).sum() == 15
        assert m["roc"]["fpr"][0] == 0.0 and m["roc"]["tpr"][-1] == 1.0
        assert len(m["learning_curve"]["sizes"]) == 3


def test_json_model_reproduces_sklearn(trained, tmp_path):
    table, fitted, report = trained
    path = save_models(tmp_path / "model.json", fitted, table, report)
    payload = load_models(path)
    for name, pipe in fitted.items():
        expected = pipe.predict_proba(table.x)[:, 1]
        np.testing.assert_allclose(predict_saved(payload, table.x, name), expected, atol=1e-9)
    named = dict(zip(table.feature_names, table.x[0], strict=True))
    assert predict_saved(payload, named, "mlp").shape == (1,)


def test_figures_are_written(trained, tmp_path):
    paths = write_report_figures(trained[2], tmp_path)
    assert {p.name for p in paths} >= {"roc.png", "precision_recall.png", "pca_variance.png"}
    assert all(p.stat().st_size > 1000 for p in paths)


def test_bad_tables(tmp_path):
    with pytest.raises(RadiomicsError, match="not found"):
        read_feature_table(tmp_path / "none.csv")
    (tmp_path / "a.csv").write_text("case_id,f1\nc0,1\n")
    with pytest.raises(RadiomicsError, match="no label column 'label'"):
        read_feature_table(tmp_path / "a.csv")
    (tmp_path / "b.csv").write_text("case_id,label,f1\nc0,a,1\nc1,b,2\nc2,c,3\n")
    with pytest.raises(RadiomicsError, match="exactly two values"):
        read_feature_table(tmp_path / "b.csv")
    (tmp_path / "c.csv").write_text("case_id,label,f1\nc0,a,1\nc1,b,\n")
    with pytest.raises(RadiomicsError, match="missing or infinite"):
        read_feature_table(tmp_path / "c.csv")
    small = read_feature_table(write_table(tmp_path / "d.csv", n=8))
    with pytest.raises(RadiomicsError, match="Too few cases"):
        train_models(small)


def test_bad_model_files(tmp_path, trained):
    (tmp_path / "m.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(RadiomicsError, match="not a her2viewer radiomics model"):
        load_models(tmp_path / "m.json")
    (tmp_path / "x.json").write_text("{not json")
    with pytest.raises(RadiomicsError, match="Cannot read radiomics model"):
        load_models(tmp_path / "x.json")
    table, fitted, report = trained
    payload = load_models(save_models(tmp_path / "ok.json", fitted, table, report))
    with pytest.raises(RadiomicsError, match="Unknown model 'svm'"):
        predict_saved(payload, table.x, "svm")
    with pytest.raises(RadiomicsError, match="Feature 'original_f0' is missing"):
        predict_saved(payload, {"original_f1": 1.0}, "mlp")
