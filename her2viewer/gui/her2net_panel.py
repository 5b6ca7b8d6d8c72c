"""HER2Net results in the viewer: run in the background, P with the 10% line, tile table.

``attach_her2net_panel(window)`` docks an analysis panel with a :class:`Her2NetWidget`
on a :class:`~her2viewer.gui.mainwindow.MainWindow`. *Run* analyses the slide of the
first pane with :func:`her2viewer.analysis.her2net.analyse_her2net` in a background
job (progress, cancel; results cached per slide + bundle), then adds the tumor and
high-expression (brown) layers to that pane. The IHC, when open in the second pane,
moves in step, so strong regions can be compared with the real staining. Clicking a
tile row centres the panes on that tile. *Score selected region* runs it inside the
selected annotations (or a class) of the first pane, whose results get P and the status.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QRectF
from PySide6.QtGui import QColor, QPainter, QPen
from PySide6.QtWidgets import QTableWidget, QTableWidgetItem, QWidget

from her2viewer.analysis.her2net import STRONG_COLOR, Her2NetResult, analyse_her2net
from her2viewer.gui.analysis_panel import AnalysisPanel, ResultWidget, dock_analysis
from her2viewer.gui.region_chooser import area_figures
from her2viewer.models.her2net.choices import POSITIVE_PERCENT
from her2viewer.models.her2net.model import demo_bundle_path
from her2viewer.models.her2net.predict import Her2NetOptions

COLUMNS = ("x", "y", "tumor %", "strong p", "call")


class PercentBar(QWidget):
    """P as a horizontal bar (0-100%) with the positivity line."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.value: float | None = None
        self.threshold = POSITIVE_PERCENT
        self.setMinimumHeight(22)

    def set_value(self, value: float | None, threshold: float) -> None:
        """Show ``value`` percent against ``threshold`` percent."""
        self.value, self.threshold = value, threshold
        self.update()

    def paintEvent(self, event) -> None:  # noqa: N802 - Qt override
        painter = QPainter(self)
        w, h = self.width() - 1, self.height() - 1
        painter.setPen(QPen(QColor(120, 120, 120)))
        painter.drawRect(0, 0, w, h)
        if self.value is not None:
            painter.fillRect(
                QRectF(1, 1, (w - 1) * min(self.value, 100) / 100, h - 1), QColor(*STRONG_COLOR)
            )
        painter.setPen(QPen(QColor(200, 0, 0), 2))
        x = w * self.threshold / 100
        painter.drawLine(int(x), 0, int(x), h)
        painter.end()


class Her2NetWidget(ResultWidget):
    """HER2Net's part of the panel: P against the 10% line and the tile table."""

    analyse = staticmethod(analyse_her2net)
    result_type = Her2NetResult
    run_text = "Run HER2Net"
    running_text = "Running HER2Net…"
    job_name = "her2net"
    default_bundle = staticmethod(demo_bundle_path)
    regions = True

    def __init__(self) -> None:
        super().__init__()
        self.result: Her2NetResult | None = None
        self.bar = PercentBar()
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        self.body.addWidget(self.bar)
        self.body.addWidget(self.table)
        self.table.cellClicked.connect(self._jump)

    def options(self, panes: tuple[int, ...]) -> Her2NetOptions:
        """The seed's thresholds, inside the chosen region."""
        return Her2NetOptions(region=self.run_region)

    def figures(self, result: Her2NetResult) -> dict:
        """The status and P for the region's annotations."""
        return {
            "HER2Net status": result.her2_status,
            "HER2Net P %": round(result.high_expression_percent, 1),
            **area_figures("HER2Net", result.roi),
        }

    def describe(self, result: Her2NetResult) -> str:
        """The status with P and the positivity line."""
        return (
            f"HER2 {result.her2_status}: high-expression P = "
            f"{result.high_expression_percent:.1f}% (positive at >= {result.positive_percent:g}%)"
        )

    def show(self, result: Her2NetResult) -> None:
        """The P bar and the tile table."""
        self.result = result
        self.bar.set_value(result.high_expression_percent, result.positive_percent)
        self.table.setRowCount(len(result.tiles))
        for row, tile in enumerate(result.tiles):
            call = "" if tile.strong is None else ("strong" if tile.strong else "weak")
            prob = "" if tile.strong_probability is None else f"{tile.strong_probability:.2f}"
            values = (tile.x, tile.y, f"{100 * tile.tumor_fraction:.0f}", prob, call)
            for col, value in enumerate(values):
                self.table.setItem(row, col, QTableWidgetItem(str(value)))

    def clear(self) -> None:
        """Empty the P bar and the tile table."""
        self.result = None
        self.bar.set_value(None, self.bar.threshold)
        self.table.setRowCount(0)

    def _jump(self, row: int, _column: int) -> None:
        if self.result is None or row >= len(self.result.tiles):
            return
        tile = self.result.tiles[row]
        half = self.result.tile_size_px / 2
        self.window.views[0].center_on(tile.x + half, tile.y + half)


def attach_her2net_panel(window, bundle: str | Path | None = None) -> AnalysisPanel:
    """Dock the HER2Net :class:`AnalysisPanel` on the right of ``window`` and return it."""
    return dock_analysis(window, Her2NetWidget(), "HER2Net", bundle)
