"""The Evaluation tab: curves, confusion grid and metrics against scikit-learn; files and errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PySide6.QtWidgets import QDockWidget, QToolBar
from sklearn import metrics as skm

from her2viewer.cli import main as cli_main
from her2viewer.errors import EvaluationError
from her2viewer.gui.evaluation_panel import attach_evaluation_panel, show_evaluation_tab
from her2viewer.gui.radiology_panel import attach_radiology_panel, show_radiology
from her2viewer.training import evaluate
from her2viewer.training.evaluate import evaluate_predictions, read_evaluation, write_evaluation

BINARY = ["negative", "positive"]
GRADES = ["0", "1+", "2+", "3+"]


@pytest.fixture(autouse=True)
def few_resamples(monkeypatch):
    """Fewer bootstrap resamples: the intervals are not what these tests check."""
    monkeypatch.setattr(evaluate, "N_BOOT", 40)


def _binary_case(n=60, seed=3):
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 2, n)
    score = np.clip(truth * 0.35 + rng.normal(0.35, 0.25, n), 0, 1).round(3)
    return truth.astype(bool), score >= 0.5, score


def _write_csv(path, header, rows) -> None:
    lines = [",".join(header)] + [",".join(str(v) for v in row) for row in rows]
    path.write_text("\n".join(lines) + "\n")


def _binary_csv(path):
    truth, pred, score = _binary_case()
    rows = [
        (f"c{i}", BINARY[int(t)], BINARY[int(p)], s)
        for i, (t, p, s) in enumerate(zip(truth, pred, score, strict=True))
    ]
    _write_csv(path, ["case_id", "truth", "prediction", "probability"], rows)
    return truth, pred, score


def _grades_csv(path, n=48):
    rng = np.random.default_rng(1)
    codes = np.arange(n) % 4
    probs = rng.dirichlet(np.ones(4), n) + np.eye(4)[codes] * 0.4
    probs /= probs.sum(axis=1, keepdims=True)
    pred = probs.argmax(axis=1)
    rows = [(f"c{i}", GRADES[c], GRADES[p], *map(repr, q.tolist()))
            for i, (c, p, q) in enumerate(zip(codes, pred, probs, strict=True))]  # fmt: skip
    _write_csv(path, ["case_id", "truth", "prediction", *(f"prob_{g}" for g in GRADES)], rows)
    return codes, pred, probs


def _opened(window, qtbot, path):
    panel = attach_evaluation_panel(window)
    show_evaluation_tab(panel)
    panel.open_path(path)
    qtbot.waitUntil(lambda: panel.job is None, timeout=60_000)
    return panel


def _legend(widget) -> list[str]:
    return [label.text for _, label in widget.getPlotItem().legend.items]


def _grid_counts(panel) -> list[list[int]]:
    return [
        [int(t.textItem.toPlainText().split()[0]) for t in row] for row in panel.confusion_texts
    ]


def test_binary_csv_matches_sklearn(panel_window, qtbot, tmp_path):
    truth, pred, score = _binary_csv(tmp_path / "preds.csv")
    panel = _opened(panel_window, qtbot, tmp_path / "preds.csv")
    assert panel.result is not None and not panel_window.errors
    fpr, tpr, _ = skm.roc_curve(truth, score, drop_intermediate=False)
    x, y = panel.roc_items["positive"].getData()
    np.testing.assert_allclose(x, fpr)
    np.testing.assert_allclose(y, tpr)
    precision, recall, _ = skm.precision_recall_curve(truth, score)
    x, y = panel.pr_items["positive"].getData()
    np.testing.assert_allclose(x, recall)
    np.testing.assert_allclose(y, precision)
    auc = skm.roc_auc_score(truth, score)
    roc_legend = _legend(panel.roc_plot)
    assert any(f"AUC {auc:.3f} (95% CI" in text for text in roc_legend)
    assert any(f"AP {skm.average_precision_score(truth, score):.3f}" in t
               for t in _legend(panel.pr_plot))  # fmt: skip
    cm = skm.confusion_matrix(truth, pred)
    assert _grid_counts(panel) == cm.tolist()
    share = f"{100 * cm[1, 0] / cm[1].sum():.0f}%"  # row-normalised: % of the true class
    assert panel.confusion_texts[1][0].textItem.toPlainText().split()[1] == share
    (tn, fp), (fn, tp) = cm
    sens, spec = tp / (tp + fn), tn / (tn + fp)
    assert any(f"sens {sens:.2f}, spec {spec:.2f}" in text for text in roc_legend)
    points = [i.getData() for i in panel.roc_plot.getPlotItem().listDataItems() if i.opts["symbol"]]
    assert [(float(x[0]), float(y[0])) for x, y in points] == [pytest.approx((1 - spec, sens))]
    cells = {panel.table.item(i, 0).text(): panel.table.item(i, 1).text()
             for i in range(panel.table.rowCount())}  # fmt: skip
    assert cells["AUC"] == f"{auc:.3f}"
    assert cells["Accuracy"] == f"{skm.accuracy_score(truth, pred):.3f}"
    assert cells["F1"] == f"{skm.f1_score(truth, pred):.3f}"
    assert f"AUC {auc:.3f}" in panel.summary()


def test_multiclass_one_curve_per_class(panel_window, qtbot, tmp_path):
    codes, pred, probs = _grades_csv(tmp_path / "grades.csv")
    panel = _opened(panel_window, qtbot, tmp_path / "grades.csv")
    assert sorted(panel.roc_items) == sorted(GRADES) == sorted(panel.pr_items)
    for i, grade in enumerate(GRADES):
        fpr, tpr, _ = skm.roc_curve(codes == i, probs[:, i], drop_intermediate=False)
        x, y = panel.roc_items[grade].getData()
        np.testing.assert_allclose(x, fpr)
        np.testing.assert_allclose(y, tpr)
        auc = skm.roc_auc_score(codes == i, probs[:, i])
        assert f"{grade} vs rest: AUC {auc:.3f}" in _legend(panel.roc_plot)
    macro = skm.roc_auc_score(codes, probs, multi_class="ovr", average="macro")
    assert f"macro-AUC {macro:.3f}" in panel.roc_plot.getPlotItem().titleLabel.text
    assert _grid_counts(panel) == skm.confusion_matrix(codes, pred).tolist()


def test_json_round_trip(panel_window, qtbot, tmp_path):
    truth, pred, score = _binary_case()
    named_truth, named_pred = ([BINARY[int(v)] for v in values] for values in (truth, pred))
    result = evaluate_predictions(named_truth, named_pred, BINARY, score)
    write_evaluation(result, tmp_path / "report")
    assert read_evaluation(tmp_path / "report") == json.loads(json.dumps(result))
    panel = _opened(panel_window, qtbot, tmp_path / "report" / "metrics.json")
    assert panel.result == read_evaluation(tmp_path / "report" / "metrics.json")
    x, y = panel.roc_items["positive"].getData()
    assert x.tolist() == result["roc"]["fpr"] and y.tolist() == result["roc"]["tpr"]
    assert _grid_counts(panel) == result["confusion_matrix"]
    # a labels-only evaluation: no curves, the operating point still drawn
    labels_only = evaluate_predictions(["a", "b", "b", "a"], ["a", "b", "a", "a"], ["a", "b"])
    write_evaluation(labels_only, tmp_path / "plain")
    panel.open_path(tmp_path / "plain")
    qtbot.waitUntil(lambda: panel.job is None, timeout=30_000)
    assert panel.roc_items == {} and _grid_counts(panel) == [[2, 0], [1, 1]]
    assert any("operating point: sens 0.50, spec 1.00" in t for t in _legend(panel.roc_plot))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "is not a readable evaluation JSON"),
        ('{"readers": []}', "lacks 'labels', 'confusion_matrix' or 'metrics'"),
        ('{"labels": ["a"], "confusion_matrix": [[1]], "metrics": {}}', "at least two"),
        ('{"labels": ["a", "b"], "confusion_matrix": [[1, 2]], "metrics": {}}', "not 2 x 2"),
        (
            '{"labels": ["a", "b"], "confusion_matrix": [[1, 0], [0, 1]], "metrics": {},'
            ' "positive": "b", "roc": {"fpr": [0, 1], "tpr": [1]}}',
            "'roc' curve",
        ),  # fmt: skip
    ],
)
def test_read_evaluation_rejects_other_files(tmp_path, content, message):
    path = tmp_path / "metrics.json"
    path.write_text(content)
    with pytest.raises(EvaluationError, match=message):
        read_evaluation(path)


def test_bad_files_are_shown_and_the_tab_keeps_working(panel_window, qtbot, tmp_path):
    cases = {
        "missing.json": (None, "not a readable evaluation JSON"),
        "study.json": ('{"readers": []}', "not an evaluation written by 'her2viewer evaluate'"),
        "notes.txt": ("hello", "neither a predictions CSV nor an evaluation JSON"),
        "short.csv": ("case_id,truth\nc0,a\n", "'prediction' is missing"),
        "one.csv": ("case_id,truth,prediction\nc0,a,a\nc1,a,a\n", "single class"),
        "scores.csv": ("case_id,truth,prediction,probability\nc0,a,b,high\n", "not a number"),
        "image.csv": (b"\x89PNG\r\n\x1a\n\xff\xfe\x00", "is not a UTF-8 text CSV file"),
    }
    panel = attach_evaluation_panel(panel_window)
    for name, (content, message) in cases.items():
        path = tmp_path / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        elif content is not None:
            path.write_text(content)
        panel.open_path(path)
        qtbot.waitUntil(lambda: panel.job is None, timeout=30_000)
        error = panel_window.errors[-1]
        assert message in error and "\n" not in error and panel.result is None, name
    _binary_csv(tmp_path / "good.csv")
    panel.open_path(tmp_path / "good.csv")
    qtbot.waitUntil(lambda: panel.job is None, timeout=60_000)
    assert panel.result is not None and panel.side.status.text() == "Showing good.csv."


def test_tab_menu_and_docks(panel_window):
    bars = panel_window.findChildren(QDockWidget) + panel_window.findChildren(QToolBar)
    docks = [d for d in bars if d.isVisible()]
    radiology = attach_radiology_panel(panel_window)
    panel = attach_evaluation_panel(panel_window)
    titles = [a.text() for a in panel_window.menuBar().actions()[0].menu().actions()]
    assert "Open &evaluation…" in titles
    tabs = [panel.tabs.tabText(i) for i in range(panel.tabs.count())]
    assert tabs == ["Slides", "Radiology", "Evaluation"]
    show_evaluation_tab(panel)
    assert docks and not any(d.isVisible() for d in docks)
    show_radiology(radiology)  # the slide docks stay hidden from one full-window tab to the other
    assert not any(d.isVisible() for d in docks)
    show_evaluation_tab(panel)
    panel.tabs.setCurrentIndex(0)
    assert all(d.isVisible() for d in docks)


def test_view_cli_renders_the_evaluation(tmp_path, capsys):
    _binary_csv(tmp_path / "preds.csv")
    out = tmp_path / "evaluation.png"
    args = ["view", "--evaluation", str(tmp_path / "preds.csv"), "--screenshot", str(out),
            "--size", "1200x800"]  # fmt: skip
    assert cli_main(args) == 0
    assert out.stat().st_size > 10_000
    assert "Evaluation: preds.csv: 60 cases" in capsys.readouterr().out
    bad = ["view", "--evaluation", str(tmp_path / "nope.json"), "--screenshot", str(out)]
    assert cli_main(bad) == 2
    assert "nope.json is not a readable evaluation JSON" in capsys.readouterr().err
