"""File menu exports of the active pane: a snapshot of the viewer and a region of the slide.

*Snapshot of the viewer* saves the pane alone as drawn (tiles, layers, scale bar), with
the legend of its topmost visible layer drawn in a corner when asked. *Export region*
writes the selected rectangle annotation, else the area in view, at full resolution or
a chosen downsample as PNG or TIFF, through :func:`~her2viewer.overlay.region.
export_region` on a worker thread (the slide is never read on the GUI thread) through a
handle of its own (a pane may close its slide meanwhile), with the pane's levels and stain
view applied.
"""

from __future__ import annotations

import math
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QAction, QPainter
from PySide6.QtWidgets import QFileDialog, QInputDialog

from her2viewer.errors import Her2ViewerError, OutputError
from her2viewer.gui.panels import LegendWidget
from her2viewer.outputs import atomic_output
from her2viewer.overlay.region import check_region, export_region, output_size
from her2viewer.slide import open_slide

LEGEND_SIZE = (320, 64)
LEGEND_MARGIN = 12


def region_of(window, view) -> tuple[int, int, int, int]:
    """Level-0 ``(x, y, w, h)`` to export: the selected rectangle annotation, else the view."""
    controller = getattr(window, "annotations", None)
    controller = controller.controllers.get(view) if controller is not None else None
    boxes = [
        ann.geometry.bounds
        for ann in (controller.selected() if controller is not None else [])
        if ann.kind == "rectangle"
    ]
    x0, y0, x1, y1 = boxes[0] if boxes else view.visible_bounds()
    x, y = math.floor(x0), math.floor(y0)
    return x, y, max(1, math.ceil(x1) - x), max(1, math.ceil(y1) - y)


def snapshot(view, legend: bool = False):
    """The pane as drawn (a QPixmap), with its topmost visible layer's legend when asked."""
    pixmap = view.grab()
    shown = [layer for layer in reversed(view.layers) if layer.visible and layer.legend()]
    if legend and shown:
        widget = LegendWidget()
        widget.set_legend(shown[0].legend())
        widget.resize(*LEGEND_SIZE)
        painter = QPainter(pixmap)
        at = pixmap.width() - LEGEND_SIZE[0] - LEGEND_MARGIN
        painter.fillRect(at, LEGEND_MARGIN, *LEGEND_SIZE, view.palette().window())
        painter.drawPixmap(at, LEGEND_MARGIN, widget.grab())
        painter.end()
    return pixmap


def save_snapshot(view, path, legend: bool = False) -> Path:
    """Write :func:`snapshot` of ``view`` to ``path`` (PNG, TIFF or JPEG by suffix), atomically.

    Raises
    ------
    OutputError
        When the image cannot be encoded or written.
    """
    path = Path(path)
    with atomic_output(path) as tmp:
        if not snapshot(view, legend).save(str(tmp), path.suffix.lstrip(".").upper() or "PNG"):
            raise OutputError(f"cannot write {path}: the snapshot could not be encoded.")
    return path


class ExportActions(QObject):
    """The export actions of the File menu of ``window`` (a :class:`MainWindow`).

    Signals
    -------
    finished(path)
        A region export was written.
    """

    finished = Signal(str)
    _failed = Signal(str)

    def __init__(self, window, menu):
        super().__init__(window)
        self.window = window
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="region-export")
        self.snapshot_action = QAction("Export s&napshot of the viewer…", window)
        self.snapshot_action.setStatusTip("Save the active pane as drawn, with its scale bar")
        self.snapshot_action.triggered.connect(self.snapshot_dialog)
        self.region_action = QAction("Export &region…", window)
        self.region_action.setStatusTip(
            "Write the selected rectangle annotation, else the area in view, as PNG or TIFF"
        )
        self.region_action.triggered.connect(self.region_dialog)
        menu.addAction(self.snapshot_action)
        menu.addAction(self.region_action)
        self.finished.connect(self._on_finished)  # emitted on the worker: queued here
        self._failed.connect(self._on_failed)

    def _on_finished(self, path: str) -> None:
        self.window.statusBar().showMessage(f"Exported {path}", 10000)

    def _on_failed(self, message: str) -> None:
        self.window.show_error(message)

    def _view(self):
        view = self.window.active
        if view is None or view.slide is None:
            self.window.show_error("Open a slide first: there is nothing to export.")
            return None
        return view

    def snapshot_dialog(self) -> None:
        """Ask for a file and whether to add the legend; save the active pane."""
        view = self._view()
        if view is None:
            return
        path, _ = QFileDialog.getSaveFileName(
            self.window, "Snapshot of the viewer", "snapshot.png", "PNG (*.png);;TIFF (*.tif)"
        )
        if not path:
            return
        choice, ok = QInputDialog.getItem(
            self.window, "Snapshot", "Legend", ["With legend", "Without legend"], 0, False
        )
        if ok:
            try:
                save_snapshot(view, path, legend=choice == "With legend")
            except Her2ViewerError as exc:
                self.window.show_error(str(exc))

    def region_dialog(self) -> None:
        """Ask for a file and a downsample; export the region in the background."""
        view = self._view()
        if view is None:
            return
        path, _ = QFileDialog.getSaveFileName(
            self.window, "Export region", "region.tif", "TIFF (*.tif *.tiff);;PNG (*.png)"
        )
        if not path:
            return
        downsample, ok = QInputDialog.getDouble(
            self.window, "Export region", "Downsample (1 = full resolution)", 1.0, 1.0, 1e4, 2
        )
        if ok:
            self.export(view, path, downsample)

    def export(self, view, path, downsample: float, rect=None) -> Future | None:
        """Export ``rect`` (default :func:`region_of`) of ``view`` on a worker; errors are shown.

        Returns the running job, ``None`` when refused at once (the sentence is shown).
        """
        rect = rect or region_of(self.window, view)
        slide, display = view.slide, view.display
        try:
            check_region(slide, rect, downsample, path)
        except Her2ViewerError as exc:
            self.window.show_error(str(exc))
            return None
        width, height = output_size(rect, downsample)
        self.window.statusBar().showMessage(f"Exporting {width} x {height} px to {path}…")
        return self._pool.submit(self._run, slide.info.path, rect, downsample, path, display)

    def _run(self, slide_path, rect, downsample, path, display) -> None:
        """Export from a handle of its own: the pane may close its slide meanwhile."""
        try:
            with open_slide(slide_path) as slide:
                export_region(slide, rect, downsample, path, display)
        except Her2ViewerError as exc:
            self._failed.emit(str(exc))
        else:
            self.finished.emit(str(path))
