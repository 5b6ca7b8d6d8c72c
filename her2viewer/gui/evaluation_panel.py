"""The Evaluation tab: ROC and precision-recall curves, confusion matrix and metrics (pyqtgraph).

``attach_evaluation_panel(window)`` adds an *Evaluation* tab beside *Slides* (and
*Radiology*) in the main window's centre and *File > Open evaluation…*. It shows either
a predictions CSV, evaluated in a background job exactly as ``her2viewer evaluate`` does
(:func:`~her2viewer.training.evaluate.evaluate_predictions`), or the ``metrics.json`` that
``her2viewer evaluate`` wrote. For more than two classes with probabilities, the
one-vs-rest curves of every class are computed beside the macro-AUC (a JSON written by
the verb holds the macro-AUC only, so it shows no per-class curves).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QAction, QFont
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QGridLayout,
    QGroupBox,
    QHeaderView,
    QLabel,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score

from her2viewer.errors import EvaluationError
from her2viewer.gui.job_panel import JobPanel
from her2viewer.overlay.colormaps import colormap_lut
from her2viewer.stats.metrics import roc_curve
from her2viewer.stats.style import PALETTE
from her2viewer.training.evaluate import evaluate_predictions, read_evaluation, read_predictions

BACKGROUND = (32, 34, 37)
AXIS_COLOR = (150, 153, 160)
TEXT_COLOR = "#e1e1e1"
LEGEND_BRUSH = (24, 26, 29, 225)
CURVE_COLOR = (86, 180, 255)
OPERATING_COLOR = (255, 196, 0)
CHANCE_PEN = pg.mkPen((130, 130, 135), width=1.2, style=Qt.PenStyle.DashLine)
CONFUSION_COLORMAP = "viridis"
#: Class colours for one-vs-rest curves: the report palette, brightened for a dark background.
CLASS_COLORS = [tuple(int(c + (255 - c) * 0.25) for c in color) for color in PALETTE]
METRIC_NAMES = {
    "accuracy": "Accuracy",
    "balanced_accuracy": "Balanced accuracy",
    "sensitivity": "Sensitivity (recall)",
    "specificity": "Specificity",
    "ppv": "PPV (precision)",
    "npv": "NPV",
    "f1": "F1",
    "kappa": "Cohen's kappa",
}
FILE_PATTERNS = "Predictions or evaluation (*.csv *.json);;All files (*)"


def load_evaluation(path: str | Path, positive: str | None = None) -> dict:
    """Evaluate a predictions CSV, or read an evaluation JSON written by ``her2viewer evaluate``.

    Parameters
    ----------
    path : str or Path
        A predictions CSV (as ``her2viewer evaluate`` reads it), or ``metrics.json`` or its
        folder.
    positive : str, optional
        The positive class of a two-class CSV (default: the last label).

    Returns
    -------
    dict
        The evaluation; for more than two classes with probabilities it also holds
        ``one_vs_rest``, a list of per-class ROC and precision-recall curves.

    Raises
    ------
    EvaluationError
        When the file cannot be read or evaluated.
    """
    path = Path(path)
    if path.is_dir() or path.suffix.lower() == ".json":
        return read_evaluation(path)
    if path.suffix.lower() != ".csv":
        raise EvaluationError(
            f"{path.name} is neither a predictions CSV nor an evaluation JSON "
            "written by 'her2viewer evaluate'."
        )
    try:
        truth, prediction, labels, probabilities = read_predictions(path)
        if len(labels) < 2:
            raise EvaluationError(
                f"{path.name} has a single class ({labels[0]}); need two or more."
            )
        result = evaluate_predictions(truth, prediction, labels, probabilities, positive)
    except ValueError as exc:
        raise EvaluationError(f"{path.name} cannot be evaluated: {exc}.") from exc
    if len(labels) > 2 and probabilities is not None:
        result["one_vs_rest"] = _one_vs_rest(truth, labels, probabilities)
    return result


def _one_vs_rest(truth, labels, probabilities: np.ndarray) -> list[dict]:
    """ROC and precision-recall curves of each class against the rest (classes present only)."""
    curves = []
    for i, label in enumerate(labels):
        t = np.array([v == label for v in truth])
        if t.all() or not t.any():
            continue
        fpr, tpr, _ = roc_curve(t, probabilities[:, i])
        precision, recall, _ = precision_recall_curve(t, probabilities[:, i])
        curves.append({
            "label": label, "fpr": fpr.tolist(), "tpr": tpr.tolist(),
            "auc": float(roc_auc_score(t, probabilities[:, i])),
            "precision": precision.tolist(), "recall": recall.tolist(),
            "average_precision": float(average_precision_score(t, probabilities[:, i])),
            "prevalence": float(t.mean()),
        })  # fmt: skip
    return curves


def _number(value) -> float:
    return float("nan") if value is None else float(value)


def _fmt(value, digits: int = 3) -> str:
    value = _number(value)
    return "–" if math.isnan(value) else f"{value:.{digits}f}"


def _ci(low, high, digits: int = 3) -> str:
    if math.isnan(_number(low)) or math.isnan(_number(high)):
        return "–"
    return f"{_fmt(low, digits)} – {_fmt(high, digits)}"


def _plot_widget(
    title: str, xlabel: str, ylabel: str, legend: tuple[int, int] | None = (-8, -8)
) -> pg.PlotWidget:
    """A dark plot with the app's colours and a legend at ``legend`` (pyqtgraph offset)."""
    widget = pg.PlotWidget(background=BACKGROUND)
    plot = widget.getPlotItem()
    plot.setTitle(title, color=TEXT_COLOR, size="12pt")
    font = QFont()
    font.setPointSizeF(9.5)
    for side, text in (("bottom", xlabel), ("left", ylabel)):
        axis = plot.getAxis(side)
        axis.setPen(pg.mkPen(AXIS_COLOR))
        axis.setTextPen(pg.mkPen(TEXT_COLOR))
        axis.setTickFont(font)
        plot.setLabel(side, text, color=TEXT_COLOR, **{"font-size": "11pt"})
    plot.showGrid(x=True, y=True, alpha=0.12)
    plot.setMenuEnabled(False)
    plot.hideButtons()
    if legend:
        box = plot.addLegend(offset=legend, labelTextColor=TEXT_COLOR, labelTextSize="9.5pt")
        box.setBrush(pg.mkBrush(LEGEND_BRUSH))
        box.setPen(pg.mkPen(AXIS_COLOR))
    return widget


def _reset(widget: pg.PlotWidget, y_max: float = 1.0) -> pg.PlotItem:
    plot = widget.getPlotItem()
    plot.clear()
    if plot.legend is not None:
        plot.legend.clear()
    plot.setLimits(xMin=-0.05, xMax=1.05, yMin=-0.05, yMax=y_max + 0.05)
    plot.setRange(xRange=(0, 1), yRange=(0, y_max), padding=0.02)
    return plot


def _note(plot: pg.PlotItem, text: str) -> None:
    """A centred note in an empty plot."""
    item = pg.TextItem(text, color=TEXT_COLOR, anchor=(0.5, 0.5))
    item.setPos(0.5, 0.5)
    plot.addItem(item)


def _marker(color, size: float = 12) -> dict:
    return {
        "pen": None,
        "symbol": "o",
        "symbolSize": size,
        "symbolBrush": pg.mkBrush(color),
        "symbolPen": pg.mkPen((255, 255, 255), width=1.5),
    }


class EvaluationJobPanel(JobPanel):
    """The side column: open a file, progress and cancel, and what the file holds."""

    def __init__(self, window, view: EvaluationPanel) -> None:
        super().__init__(window, "Open predictions or evaluation…")
        self.view = view
        self.facts = QLabel("No evaluation open: File > Open evaluation…")
        self.facts.setWordWrap(True)
        self.facts.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.body.addWidget(_group("Source", self.facts))
        self.body.addStretch(1)

    def on_tick(self) -> None:
        """A busy bar while the evaluation (which reports no progress) runs."""
        if self.job.state in ("pending", "running") and self.job.progress.total == 0:
            self.progress.setRange(0, 0)

    def run(self) -> None:
        """Ask for a predictions CSV or an evaluation JSON and show it."""
        open_evaluation_dialog(self.view)

    def open_path(self, path: str | Path, positive: str | None = None) -> None:
        """Evaluate or read ``path`` in the background, then show it."""
        self.cancel()
        path = Path(path)
        self.view.source = path
        self.start(lambda context: load_evaluation(path, positive), "evaluation", "Evaluating…")

    def show_result(self, result: dict) -> None:
        """Show a finished evaluation."""
        self.view.show_evaluation(result)
        self.status.setText(f"Showing {self.view.source.name}.")


def _group(title: str, widget: QWidget) -> QGroupBox:
    box = QGroupBox(title)
    layout = QVBoxLayout(box)
    layout.addWidget(widget)
    return box


class EvaluationPanel(QWidget):
    """ROC, precision-recall, confusion matrix and metrics table of one evaluation.

    Parameters
    ----------
    window : MainWindow
        Shows errors; its File menu gets the open action (see :func:`attach_evaluation_panel`).

    Attributes
    ----------
    result : dict or None
        The evaluation shown.
    roc_items, pr_items : dict of str to pyqtgraph.PlotDataItem
        The plotted curves, by class label.
    confusion_texts : list of list of pyqtgraph.TextItem
        Cell labels of the confusion matrix (truth in rows).
    """

    def __init__(self, window) -> None:
        super().__init__()
        self.window = window
        self.result: dict | None = None
        self.source: Path | None = None
        self.tabs: QTabWidget | None = None
        self.open_action: QAction | None = None
        self.roc_items: dict[str, pg.PlotDataItem] = {}
        self.pr_items: dict[str, pg.PlotDataItem] = {}
        self.confusion_texts: list[list[pg.TextItem]] = []
        self.title = QLabel("")
        self.title.setContentsMargins(8, 4, 8, 4)
        self.roc_plot = _plot_widget("ROC curve", "1 − specificity (false-positive rate)",
                                     "sensitivity (true-positive rate)")  # fmt: skip
        self.pr_plot = _plot_widget("Precision-recall curve", "recall (sensitivity)",
                                    "precision (PPV)", (8, -8))  # fmt: skip
        self.confusion_plot = _plot_widget("Confusion matrix", "predicted", "truth", None)
        self.table = _metrics_table()
        self.side = EvaluationJobPanel(window, self)
        plots = QWidget()
        grid = QGridLayout(plots)
        grid.setContentsMargins(4, 0, 4, 4)
        grid.setSpacing(6)
        grid.addWidget(self.title, 0, 0, 1, 2)
        grid.addWidget(self.roc_plot, 1, 0)
        grid.addWidget(self.pr_plot, 1, 1)
        grid.addWidget(self.confusion_plot, 2, 0)
        grid.addWidget(_group("Metrics (95% confidence intervals)", self.table), 2, 1)
        grid.setRowStretch(1, 1)
        grid.setRowStretch(2, 1)
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(plots)
        splitter.addWidget(self.side)
        splitter.setStretchFactor(0, 1)
        splitter.setSizes([1300, 280])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(splitter)
        self.show_evaluation(None)

    @property
    def job(self):
        """The running background job, if any."""
        return self.side.job

    def open_path(self, path: str | Path, positive: str | None = None) -> None:
        """Show a predictions CSV (evaluated in the background) or an evaluation JSON."""
        self.side.open_path(path, positive)

    def show_evaluation(self, result: dict | None) -> None:
        """Draw an evaluation (or empty plots for None)."""
        self.result = result
        self.roc_items, self.pr_items = {}, {}
        roc, pr = _reset(self.roc_plot), _reset(self.pr_plot, 1.02)
        roc.plot([0, 1], [0, 1], pen=CHANCE_PEN, name="chance (AUC 0.5)")
        if result is None:
            self.title.setText("")
            _reset(self.confusion_plot)
            self.table.setRowCount(0)
            for plot in (roc, pr, self.confusion_plot.getPlotItem()):
                _note(plot, "File > Open evaluation…")
            return
        self.title.setText(self._title(result))
        self.side.facts.setText(self._facts(result))
        if len(result["labels"]) == 2:
            self._draw_binary(result, roc, pr)
        else:
            self._draw_multiclass(result, roc, pr)
        self._draw_confusion(result["labels"], result["confusion_matrix"])
        self._fill_table(result)

    def _draw_binary(self, result: dict, roc: pg.PlotItem, pr: pg.PlotItem) -> None:
        positive = result.get("positive") or result["labels"][-1]
        metrics = result["metrics"]
        if "roc" in result:
            auc = result["auc"]
            ci = _ci(auc.get("bootstrap_low"), auc.get("bootstrap_high"), 2)
            self.roc_items[positive] = roc.plot(
                result["roc"]["fpr"], result["roc"]["tpr"], pen=pg.mkPen(CURVE_COLOR, width=2.5),
                name=f"{positive}: AUC {_fmt(auc['value'])} (95% CI {ci})",
            )  # fmt: skip
            self.pr_items[positive] = pr.plot(
                result["pr"]["recall"], result["pr"]["precision"],
                pen=pg.mkPen(CURVE_COLOR, width=2.5),
                name=f"{positive}: AP {_fmt(result['pr'].get('average_precision'))}",
            )  # fmt: skip
        else:
            for plot in (roc, pr):
                _note(plot, "No probabilities in this file:\nonly the operating point")
        index = result["labels"].index(positive)
        cm = np.asarray(result["confusion_matrix"], float)
        prevalence = cm[index].sum() / max(cm.sum(), 1)
        pr.plot([0, 1], [prevalence, prevalence], pen=CHANCE_PEN,
                name=f"prevalence {prevalence:.2f} (no skill)")  # fmt: skip
        sens, spec = (
            _number(metrics["sensitivity"]["value"]),
            _number(metrics["specificity"]["value"]),
        )
        ppv = _number(metrics["ppv"]["value"])
        name = f"operating point: sens {_fmt(sens, 2)}, spec {_fmt(spec, 2)}"
        if not math.isnan(sens + spec):
            roc.plot([1 - spec], [sens], name=name, **_marker(OPERATING_COLOR))
        if not math.isnan(sens + ppv):
            pr.plot([sens], [ppv], name=f"operating point: recall {sens:.2f}, precision {ppv:.2f}",
                    **_marker(OPERATING_COLOR))  # fmt: skip
        roc.setTitle(f"ROC curve (positive class: {positive})", color=TEXT_COLOR, size="12pt")
        pr.setTitle(f"Precision-recall curve (positive class: {positive})", color=TEXT_COLOR,
                    size="12pt")  # fmt: skip

    def _draw_multiclass(self, result: dict, roc: pg.PlotItem, pr: pg.PlotItem) -> None:
        labels = result["labels"]
        colors = {label: CLASS_COLORS[i % len(CLASS_COLORS)] for i, label in enumerate(labels)}
        curves = result.get("one_vs_rest") or []
        for curve in curves:
            label, pen = curve["label"], pg.mkPen(colors[curve["label"]], width=2.2)
            self.roc_items[label] = roc.plot(
                curve["fpr"], curve["tpr"], pen=pen, name=f"{label} vs rest: AUC {curve['auc']:.3f}"
            )
            ap = curve["average_precision"]
            self.pr_items[label] = pr.plot(
                curve["recall"], curve["precision"], pen=pen, name=f"{label}: AP {ap:.3f}"
            )
            prevalence_pen = pg.mkPen(colors[label], width=1, style=Qt.PenStyle.DashLine)
            pr.plot([0, 1], [curve["prevalence"]] * 2, pen=prevalence_pen)
        if curves:
            pr.legend.addItem(pg.PlotDataItem(pen=CHANCE_PEN), "prevalence per class (no skill)")
        else:
            note = "one-vs-rest curves need the\npredictions CSV with prob_<class> columns"
            for plot in (roc, pr):
                _note(plot, note)
        cm = np.asarray(result["confusion_matrix"], float)
        for i, label in enumerate(labels):
            positives, called = cm[i].sum(), cm[:, i].sum()
            negatives = cm.sum() - positives
            if positives and negatives:
                tpr, fpr = cm[i, i] / positives, (called - cm[i, i]) / negatives
                roc.plot([fpr], [tpr], **_marker(colors[label], 10))
        roc.legend.addItem(pg.PlotDataItem(**_marker(AXIS_COLOR, 10)), "operating points")
        macro = result.get("macro_auc")
        title = "ROC curves · one vs rest"
        if macro:
            ci = _ci(macro["low"], macro["high"], 2)
            title += f" · macro-AUC {_fmt(macro['value'])} (95% CI {ci})"
        roc.setTitle(title, color=TEXT_COLOR, size="12pt")
        pr.setTitle("Precision-recall curves · one vs rest", color=TEXT_COLOR, size="12pt")

    def _draw_confusion(self, labels: list[str], matrix) -> None:
        """Counts with row percentages, coloured by the share of the true class (the row)."""
        widget = self.confusion_plot
        plot = widget.getPlotItem()
        plot.clear()
        cm = np.asarray(matrix, dtype=np.int64)
        k = len(labels)
        rows = cm.sum(axis=1, keepdims=True)
        share = np.divide(cm, rows, out=np.zeros(cm.shape), where=rows > 0)
        rgb = colormap_lut(CONFUSION_COLORMAP)[np.round(share * 255).astype(int)]
        image = pg.ImageItem(np.ascontiguousarray(rgb.transpose(1, 0, 2)), levels=(0, 255))
        image.setRect(QRectF(0, 0, k, k))
        plot.addItem(image)
        font = QFont()
        font.setPointSizeF(max(8.0, 15.0 - 1.2 * k))
        self.confusion_texts = []
        for i in range(k):
            row = []
            for j in range(k):
                dark = rgb[i, j] @ (0.299, 0.587, 0.114) < 140
                text = pg.TextItem(
                    f"{cm[i, j]}\n{100 * share[i, j]:.0f}%", anchor=(0.5, 0.5),
                    color=(255, 255, 255) if dark else (20, 20, 20),
                )  # fmt: skip
                text.setFont(font)
                text.setPos(j + 0.5, i + 0.5)
                plot.addItem(text)
                row.append(text)
            self.confusion_texts.append(row)
        ticks = [[(i + 0.5, label) for i, label in enumerate(labels)]]
        plot.getAxis("bottom").setTicks(ticks)
        plot.getAxis("left").setTicks(ticks)
        plot.showGrid(x=False, y=False)
        plot.invertY(True)
        plot.setLimits(xMin=0, xMax=k, yMin=0, yMax=k)
        plot.setRange(xRange=(0, k), yRange=(0, k), padding=0)
        plot.setMouseEnabled(False, False)
        plot.setTitle("Confusion matrix · count and % of the true class", color=TEXT_COLOR,
                      size="12pt")  # fmt: skip

    def _fill_table(self, result: dict) -> None:
        rows = []
        for key in ("auc", "macro_auc"):
            auc = result.get(key)
            if auc:
                name = "AUC" if key == "auc" else "Macro-AUC (one vs rest)"
                low, high = (
                    auc.get("bootstrap_low", auc["low"]),
                    auc.get("bootstrap_high", auc["high"]),
                )
                rows.append([name, _fmt(auc["value"]), _ci(low, high), "bootstrap", auc["n"]])
                if key == "auc":
                    delong = _ci(auc["low"], auc["high"])
                    rows.append(["AUC (DeLong interval)", _fmt(auc["value"]), delong,
                                 auc["method"], auc["n"]])  # fmt: skip
        for key, estimate in result["metrics"].items():
            rows.append([METRIC_NAMES.get(key, key.replace("_", " ")), _fmt(estimate["value"]),
                         _ci(estimate["low"], estimate["high"]), estimate["method"],
                         estimate["n"]])  # fmt: skip
        for curve in result.get("one_vs_rest") or []:
            ap = curve["average_precision"]
            rows.append([f"AUC / AP, {curve['label']} vs rest",
                         f"{curve['auc']:.3f} / {ap:.3f}", "–", "–", result["n"]])  # fmt: skip
        self.table.setRowCount(len(rows))
        for i, row in enumerate(rows):
            for j, value in enumerate(row):
                item = QTableWidgetItem(str(value))
                if j:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
                self.table.setItem(i, j, item)

    def _title(self, result: dict) -> str:
        name = self.source.name if self.source else "evaluation"
        text = f"<b>{name}</b> &nbsp;·&nbsp; {result.get('n', '?')} cases"
        text += f" &nbsp;·&nbsp; classes {', '.join(result['labels'])}"
        if result.get("positive"):
            text += f" &nbsp;·&nbsp; positive class <b>{result['positive']}</b>"
        return text

    def _facts(self, result: dict) -> str:
        cm = np.asarray(result["confusion_matrix"])
        lines = [f"File: {self.source.name if self.source else '–'}", f"Cases: {result.get('n')}"]
        lines += [f"  {label}: {count}" for label, count in zip(result["labels"], cm.sum(axis=1),
                                                              strict=True)]  # fmt: skip
        has_scores = "roc" in result or "macro_auc" in result
        lines.append("Scores: " + ("probabilities" if has_scores else "labels only (no curves)"))
        return "\n".join(lines)

    def summary(self) -> str:
        """One line for the command line: the file, its cases and the headline metrics."""
        if self.result is None:
            return "no evaluation open"
        result = self.result
        auc = result.get("auc") or result.get("macro_auc")
        text = f"{self.source.name}: {result['n']} cases, classes {', '.join(result['labels'])}"
        if auc:
            low, high = auc.get("bootstrap_low", auc["low"]), auc.get("bootstrap_high", auc["high"])
            name = "AUC" if "auc" in result else "macro-AUC"
            text += f"; {name} {_fmt(auc['value'])} [{_ci(low, high)}]"
        accuracy = result["metrics"]["accuracy"]
        return text + f"; accuracy {_fmt(accuracy['value'])}"


def _metrics_table() -> QTableWidget:
    table = QTableWidget(0, 5)
    table.setHorizontalHeaderLabels(["Metric", "Value", "95% CI", "CI method", "n"])
    table.verticalHeader().hide()
    table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    table.setAlternatingRowColors(True)
    header = table.horizontalHeader()
    header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
    for column in range(1, 5):
        header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
    return table


def attach_evaluation_panel(window) -> EvaluationPanel:
    """Add the Evaluation tab and *File > Open evaluation…* to ``window``; return the panel."""
    panel = EvaluationPanel(window)
    panel.tabs = window.add_page(panel, "Evaluation")
    panel.open_action = window.add_file_action(
        "Open &evaluation…",
        lambda: open_evaluation_dialog(panel),
        "Open a predictions CSV or a saved evaluation in the Evaluation tab",
    )
    return panel


def show_evaluation_tab(panel: EvaluationPanel) -> None:
    """Bring the Evaluation tab to the front."""
    panel.tabs.setCurrentWidget(panel)


def open_evaluation_dialog(panel: EvaluationPanel) -> None:
    """Ask for a predictions CSV or an evaluation JSON and show it in the Evaluation tab."""
    path, _ = QFileDialog.getOpenFileName(panel.window, "Open evaluation", "", FILE_PATTERNS)
    if path:
        show_evaluation_tab(panel)
        panel.open_path(path)
