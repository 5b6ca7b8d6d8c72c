"""The study coordinator's results window: a report's ``summary.json`` drawn with pyqtgraph.

For the coordinator only (it shows truth-based statistics); the reading window
never links to it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pyqtgraph as pg
from PySide6.QtWidgets import QApplication, QMainWindow, QTableWidget, QTableWidgetItem, QTabWidget

from her2viewer.errors import StudyError
from her2viewer.gui.app import has_display
from her2viewer.stats.style import PALETTE
from her2viewer.study.report import metric_rows
from her2viewer.study.store import is_study_file


def _table(header: list[str], rows: list[list]) -> QTableWidget:
    table = QTableWidget(len(rows), len(header))
    table.setHorizontalHeaderLabels(header)
    for i, row in enumerate(rows):
        for j, value in enumerate(row):
            text = (
                f"{value:.3f}"
                if isinstance(value, float)
                else ("–" if value is None else str(value))
            )
            table.setItem(i, j, QTableWidgetItem(text))
    table.resizeColumnsToContents()
    return table


def roc_plot(summary: dict) -> pg.PlotWidget:
    """ROC curve of the model with each reader's operating point."""
    plot = pg.PlotWidget(background="w")
    plot.setLabel("bottom", "1 - specificity")
    plot.setLabel("left", "sensitivity")
    plot.setXRange(0, 1)
    plot.setYRange(0, 1)
    plot.addLegend()
    plot.plot([0, 1], [0, 1], pen=pg.mkPen((180, 180, 180), style=pg.QtCore.Qt.PenStyle.DashLine))
    model = summary.get("model") or {}
    if model.get("roc"):
        auc = model.get("auc", {}).get("value")
        name = "model" if auc is None else f"model (AUC {auc:.2f})"
        plot.plot(model["roc"]["fpr"], model["roc"]["tpr"], pen=pg.mkPen("k", width=2), name=name)
    for i, reader in enumerate(summary["readers"]):
        point = reader.get("operating_point") or {}
        if point.get("fpr") is None or point.get("tpr") is None:
            continue
        plot.plot(
            [point["fpr"]], [point["tpr"]], pen=None, symbol="o", symbolSize=12,
            symbolBrush=PALETTE[i % len(PALETTE)], name=f"{reader['reader']} ({reader['arm']})",
        )  # fmt: skip
    return plot


def reading_time_plot(summary: dict) -> pg.PlotWidget:
    """Median reading time per case for each reader and arm."""
    plot = pg.PlotWidget(background="w")
    plot.setLabel("left", "median seconds per case")
    blocks = [r for r in summary["readers"] if r["reading_time"]["n"]]
    heights = [r["reading_time"]["median"] for r in blocks]
    brushes = [PALETTE[i % len(PALETTE)] for i in range(len(blocks))]
    plot.addItem(pg.BarGraphItem(x=list(range(len(blocks))), height=heights, width=0.6,
                                 brushes=brushes))  # fmt: skip
    ticks = [(i, f"{r['reader']}\n{r['arm']}") for i, r in enumerate(blocks)]
    plot.getAxis("bottom").setTicks([ticks])
    return plot


def confusion_rows(summary: dict) -> tuple[list[str], list[list]]:
    """Every rater's confusion matrix stacked: header and rows (rater, arm, truth, counts...)."""
    rows, labels = [], []
    raters = [("model", "", summary.get("model") or {})]
    raters += [(r["reader"], r["arm"], r) for r in summary["readers"]]
    for name, arm, block in raters:
        confusion = block.get("confusion") or block.get("multiclass", {}).get("confusion")
        if not confusion:
            continue
        labels = confusion["labels"]
        for truth, counts in zip(labels, confusion["matrix"], strict=True):
            rows.append([name, arm, truth, *counts])
    return ["rater", "arm", "truth \\ answer", *labels], rows


class ResultsWindow(QMainWindow):
    """Tabs: ROC, reading time, metrics with CIs, reader-vs-model McNemar tests, confusions."""

    def __init__(self, summary: dict):
        super().__init__()
        self.summary = summary
        self.setWindowTitle(f"Reader study results — {summary['study']['file']}")
        self.tabs = QTabWidget()
        self.tabs.addTab(roc_plot(summary), "ROC")
        self.tabs.addTab(reading_time_plot(summary), "Reading time")
        header = ["rater", "arm", "metric", "value", "low", "high", "CI method", "n"]
        self.tabs.addTab(_table(header, metric_rows(summary)), "Metrics")
        rows = [[r["reader"], r["arm"], r["n"], *r["table"][0], *r["table"][1], r["method"],
                 r["p_value"]] for r in summary["reader_vs_model"]]  # fmt: skip
        header = ["reader", "arm", "n", "both", "model only", "reader only", "neither", "test", "p"]
        self.tabs.addTab(_table(header, rows), "Reader vs model")
        self.tabs.addTab(_table(*confusion_rows(summary)), "Confusion matrices")
        self.setCentralWidget(self.tabs)
        self.resize(1000, 700)


def load_summary(path: Path) -> dict:
    """Read a report's summary.json (or the one inside a report folder)."""
    path = Path(path)
    path = path / "summary.json" if path.is_dir() else path
    if is_study_file(path):
        raise StudyError(
            f"{path.name} is a study file, not a report; 'study results' shows the folder "
            "that 'study report' writes from the study owner's file."
        )
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise StudyError(f"{path} is not a readable study summary ({exc}).") from exc
    shapes = {"study": dict, "readers": list, "reader_vs_model": list}
    for key, kind in shapes.items():
        if not isinstance(summary, dict) or not isinstance(summary.get(key), kind):
            raise StudyError(
                f"{path} is not a summary written by 'study report' (no {key!r} {kind.__name__})."
            )
    return summary


def run_results_app(path: Path) -> int:
    """Show a report's results window and run the event loop."""
    summary = load_summary(path)
    if QApplication.instance() is None and not has_display():
        folder = Path(path) if Path(path).is_dir() else Path(path).parent
        page = folder / "report.html"
        raise StudyError(
            f"the results window needs a display and none was found; open {page} "
            "in a web browser instead."
        )
    app = QApplication.instance() or QApplication(sys.argv[:1])
    window = ResultsWindow(summary)
    window.show()
    return app.exec()
