"""HER2Net results in the viewer: run in the background, P with the 10% line, tile table.

``attach_her2net_panel(window)`` docks a :class:`Her2NetPanel` on a
:class:`~her2viewer.gui.mainwindow.MainWindow`. *Run* analyses the slide of the
first pane with :func:`her2viewer.analysis.her2net.analyse_slide` in a background
job (progress, cancel; results cached per slide + bundle), then adds the tumor and
high-expression (brown) layers to that pane. The IHC, when open in the second pane,
moves in step, so strong regions can be compared with the real staining. Clicking a
tile row centres the panes on that tile.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QRectF
from PySide6.QtGui import QColor, QPainter, QPen
from PySide6.QtWidgets import QTableWidget, QTableWidgetItem, QWidget

from her2viewer.analysis.her2net import STRONG_COLOR, Her2NetResult, analyse_slide
from her2viewer.gui.job_panel import JobPanel, dock_panel, result_text
from her2viewer.models.her2net.choices import POSITIVE_PERCENT
from her2viewer.models.her2net.model import demo_bundle_path
from her2viewer.slide import open_slide

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


class Her2NetPanel(JobPanel):
    """Run HER2Net on the first pane's slide and show status, P and tiles."""

    def __init__(self, window, bundle: str | Path | None = None) -> None:
        super().__init__(window, "Run HER2Net")
        self.bundle = Path(bundle) if bundle else None
        self.result: Her2NetResult | None = None
        self.bar = PercentBar()
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        self.body.addWidget(self.bar)
        self.body.addWidget(self.table)
        self.table.cellClicked.connect(self._jump)

    def run(self) -> None:
        """Start the analysis of the first pane's slide in a background job."""
        path = self.first_slide_path()
        bundle = self.model_path(self.bundle, demo_bundle_path) if path else None
        if bundle is None:
            return

        def work(context):
            with open_slide(path) as slide:
                return analyse_slide(slide, bundle, context=context)

        self.start(work, "her2net", "Running HER2Net…", panes=(0,))

    def clear_result(self) -> None:
        """Forget the result: layers, status, P bar and tile table."""
        self.result = None
        self.bar.set_value(None, self.bar.threshold)
        self.table.setRowCount(0)
        super().clear_result()

    def show_result(self, result: Her2NetResult) -> None:
        """Show a result: layers on the first pane, status, P bar and the tile table."""
        self.result = result
        self.replace_layers([(layer, 0) for layer in result.layers()])
        p = result.high_expression_percent
        text = (
            f"HER2 {result.her2_status}: high-expression P = {p:.1f}% "
            f"(positive at >= {result.positive_percent:g}%)"
        )
        self.status.setText(result_text(text, result))
        self.bar.set_value(p, result.positive_percent)
        self.table.setRowCount(len(result.tiles))
        for row, tile in enumerate(result.tiles):
            call = "" if tile.strong is None else ("strong" if tile.strong else "weak")
            prob = "" if tile.strong_probability is None else f"{tile.strong_probability:.2f}"
            values = (tile.x, tile.y, f"{100 * tile.tumor_fraction:.0f}", prob, call)
            for col, value in enumerate(values):
                self.table.setItem(row, col, QTableWidgetItem(str(value)))

    def _jump(self, row: int, _column: int) -> None:
        if self.result is None or row >= len(self.result.tiles):
            return
        tile = self.result.tiles[row]
        half = self.result.tile_size_px / 2
        self.window.views[0].center_on(tile.x + half, tile.y + half)


def attach_her2net_panel(window, bundle: str | Path | None = None) -> Her2NetPanel:
    """Dock a :class:`Her2NetPanel` on the right of ``window`` and return it."""
    return dock_panel(window, Her2NetPanel(window, bundle), "HER2Net")
