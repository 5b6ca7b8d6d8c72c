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

from PySide6.QtCore import QRectF, Qt, QTimer
from PySide6.QtGui import QColor, QPainter, QPen
from PySide6.QtWidgets import (
    QDockWidget,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from her2viewer.analysis.her2net import STRONG_COLOR, Her2NetResult, analyse_slide
from her2viewer.errors import Her2ViewerError
from her2viewer.jobs import Job
from her2viewer.models.her2net.model import demo_bundle_path
from her2viewer.slide import open_slide

COLUMNS = ("x", "y", "tumor %", "strong p", "call")


class PercentBar(QWidget):
    """P as a horizontal bar (0-100%) with the positivity line."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.value: float | None = None
        self.threshold = 10.0
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


class Her2NetPanel(QWidget):
    """Run HER2Net on the first pane's slide and show status, P and tiles."""

    def __init__(self, window, bundle: str | Path | None = None) -> None:
        super().__init__()
        self.window = window
        self.bundle = Path(bundle) if bundle else None
        self.job: Job | None = None
        self.result: Her2NetResult | None = None
        self.layers: list = []
        self.run_button = QPushButton("Run HER2Net")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.progress = QProgressBar()
        self.status = QLabel("No result yet.")
        self.status.setWordWrap(True)
        self.bar = PercentBar()
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        layout = QVBoxLayout(self)
        for item in (buttons, self.progress, self.status, self.bar, self.table):
            layout.addLayout(item) if isinstance(item, QHBoxLayout) else layout.addWidget(item)
        self.timer = QTimer(self)
        self.timer.setInterval(100)
        self.timer.timeout.connect(self._poll)
        self.run_button.clicked.connect(self.run)
        self.cancel_button.clicked.connect(self.cancel)
        self.table.cellClicked.connect(self._jump)

    def run(self) -> None:
        """Start the analysis of the first pane's slide in a background job."""
        slides = [s for s in getattr(self.window, "slides", []) if s is not None]
        if not slides:
            self.window.show_error("Open an H&E slide first.")
            return
        try:
            bundle = self.bundle or demo_bundle_path()
        except Her2ViewerError as exc:
            self.window.show_error(str(exc))
            return
        path = slides[0].info.path

        def work(context):
            with open_slide(path) as slide:
                return analyse_slide(slide, bundle, context=context)

        self.job = Job(work, "her2net").start()
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.status.setText("Running HER2Net…")
        self.timer.start()

    def cancel(self) -> None:
        """Ask the running analysis to stop."""
        if self.job is not None:
            self.job.cancel()

    def _poll(self) -> None:
        job = self.job
        if job is None:
            return
        self.progress.setMaximum(max(1, job.progress.total))
        self.progress.setValue(job.progress.done)
        if job.state in ("pending", "running"):
            return
        self.timer.stop()
        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        self.job = None
        if job.state == "done":
            self.show_result(job.result)
        elif job.state == "cancelled":
            self.status.setText("Cancelled.")
        else:
            message = str(job.error) if isinstance(job.error, Her2ViewerError) else repr(job.error)
            self.status.setText("Failed.")
            self.window.show_error(message)

    def show_result(self, result: Her2NetResult) -> None:
        """Show a result: layers on the first pane, status, P bar and the tile table."""
        view = self.window.views[0]
        for layer in self.layers:
            view.remove_layer(layer)
        self.result, self.layers = result, result.layers()
        for layer in self.layers:
            self.window.add_layer(layer, 0)
        p = result.high_expression_percent
        text = (
            f"HER2 {result.her2_status}: high-expression P = {p:.1f}% "
            f"(positive at >= {result.positive_percent:g}%)."
        )
        if "her2net_demo" in str(result.bundle):
            text += " Synthetic demo bundle: no clinical claim."
        self.status.setText(text)
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
    panel = Her2NetPanel(window, bundle)
    dock = QDockWidget("HER2Net", window)
    dock.setObjectName("her2net_dock")
    dock.setWidget(panel)
    window.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)
    return panel
