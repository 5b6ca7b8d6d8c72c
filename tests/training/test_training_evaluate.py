"""The evaluate verb and its library function, checked against scikit-learn."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn import metrics as skm

from her2viewer.cli import main
from her2viewer.errors import EvaluationError
from her2viewer.training.evaluate import evaluate_predictions


def _binary_case(n=80, seed=3):
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 2, n)
    score = np.clip(truth * 0.35 + rng.normal(0.35, 0.25, n), 0, 1)
    names = np.array(["negative", "positive"])
    return names[truth].tolist(), names[(score >= 0.5).astype(int)].tolist(), score


def test_binary_metrics_match_sklearn():
    truth, pred, score = _binary_case()
    result = evaluate_predictions(truth, pred, ["negative", "positive"], score)
    t = np.array(truth) == "positive"
    p = np.array(pred) == "positive"
    m = result["metrics"]
    assert m["accuracy"]["value"] == pytest.approx(skm.accuracy_score(t, p))
    assert m["sensitivity"]["value"] == pytest.approx(skm.recall_score(t, p))
    assert m["specificity"]["value"] == pytest.approx(skm.recall_score(~t, ~p))
    assert m["f1"]["value"] == pytest.approx(skm.f1_score(t, p))
    assert m["balanced_accuracy"]["value"] == pytest.approx(skm.balanced_accuracy_score(t, p))
    assert result["auc"]["value"] == pytest.approx(skm.roc_auc_score(t, score))
    assert result["auc"]["bootstrap_low"] < result["auc"]["value"] < result["auc"]["bootstrap_high"]
    assert result["confusion_matrix"] == skm.confusion_matrix(t, p).tolist()
    precision, recall, _ = skm.precision_recall_curve(t, score)
    assert result["pr"]["precision"] == pytest.approx(precision.tolist())


def test_multiclass_macro_auc_matches_sklearn():
    rng = np.random.default_rng(1)
    labels = ["0", "1+", "2+", "3+"]
    codes = rng.integers(0, 4, 120)
    probs = rng.dirichlet(np.ones(4), 120) + np.eye(4)[codes] * 0.5
    probs /= probs.sum(axis=1, keepdims=True)
    truth = [labels[c] for c in codes]
    pred = [labels[c] for c in probs.argmax(axis=1)]
    result = evaluate_predictions(truth, pred, labels, probs)
    expected = skm.roc_auc_score(codes, probs, multi_class="ovr", average="macro")
    assert result["macro_auc"]["value"] == pytest.approx(expected)
    assert result["metrics"]["accuracy"]["value"] == pytest.approx(skm.accuracy_score(truth, pred))
    rounded = evaluate_predictions(truth, pred, labels, np.round(probs, 2))  # rows off 1
    assert rounded["macro_auc"]["value"] == pytest.approx(expected, abs=0.02)
    with pytest.raises(EvaluationError, match="positive sum"):
        evaluate_predictions(truth, pred, labels, np.zeros_like(probs))


def test_unknown_label_is_a_user_error():
    with pytest.raises(EvaluationError, match="not among the classes"):
        evaluate_predictions(["a", "b"], ["a", "c"], ["a", "b"])


def test_cli_writes_report(tmp_path, capsys):
    truth, pred, score = _binary_case(40)
    csv_path = tmp_path / "preds.csv"
    lines = ["case_id,truth,prediction,probability"]
    lines += [
        f"c{i},{t},{p},{s:.4f}" for i, (t, p, s) in enumerate(zip(truth, pred, score, strict=True))
    ]
    csv_path.write_text("\n".join(lines) + "\n")
    out = tmp_path / "report"
    assert (
        main(["evaluate", str(csv_path), "-o", str(out), "--positive", "positive", "--json"]) == 0
    )
    printed = json.loads(capsys.readouterr().out)
    assert printed["positive"] == "positive" and "auc" in printed
    assert {p.name for p in out.iterdir()} == {"metrics.json", "confusion.png", "roc.png"}


def test_cli_missing_column_exit_2(tmp_path, capsys):
    csv_path = tmp_path / "preds.csv"
    csv_path.write_text("case_id,truth\nc0,positive\n")
    assert main(["evaluate", str(csv_path), "-o", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert "'prediction' is missing" in err and "\n" not in err
