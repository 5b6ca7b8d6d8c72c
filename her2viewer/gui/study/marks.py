"""The reader's mark in the reading window: a point or an outline behind the call.

:class:`MarkTool` is a :attr:`SlideView.tool`: in ``point`` mode a click places the
mark; in ``outline`` mode a drag draws a closed freehand outline. It hands the
finished :class:`~her2viewer.study.marks.ReaderMark` (level-0 pixels of the pane's
slide) to a callback and goes back to panning. :class:`MarkPainter` draws the
mark on its own pane and, through the panes' sync matrix, on the other one.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PySide6.QtCore import QPointF, Qt
from PySide6.QtGui import QColor, QPainter, QPen, QPolygonF
from shapely.geometry import Point, Polygon

from her2viewer.geometry.shapes import apply_matrix
from her2viewer.gui.slideview import SlideView
from her2viewer.study.marks import ReaderMark

#: Colour of the reader's mark (Okabe-Ito vermillion: visible on H&E and on DAB).
MARK_COLOR = QColor(213, 94, 0)
#: Screen pixels between recorded vertices of a freehand outline.
MIN_STEP_PX = 3.0


class MarkTool:
    """Places a point or draws an outline on a pane; see the module docstring.

    Parameters
    ----------
    slide_of : callable
        ``slide_of(view) -> "he" | "ihc"``: which slide a pane shows.
    finished : callable
        ``finished(mark)`` with the new :class:`ReaderMark`.
    """

    def __init__(
        self, slide_of: Callable[[SlideView], str], finished: Callable[[ReaderMark], None]
    ):
        self.slide_of = slide_of
        self.finished = finished
        self.mode = "point"
        self.trace: list[tuple[float, float]] = []
        self.trace_view: SlideView | None = None

    def press(self, view: SlideView, event) -> bool:
        """Start the mark at the clicked level-0 point."""
        if event.button() != Qt.MouseButton.LeftButton:
            return False
        x, y = view.screen_to_level0(event.position().x(), event.position().y())
        if self.mode == "point":
            self.finished(ReaderMark(self.slide_of(view), Point(x, y)))
            return True
        self.trace, self.trace_view = [(x, y)], view
        return True

    def move(self, view: SlideView, event) -> bool:
        """Extend the outline being drawn."""
        if view is not self.trace_view:
            return False
        x, y = view.screen_to_level0(event.position().x(), event.position().y())
        last = self.trace[-1]
        if np.hypot(x - last[0], y - last[1]) / view.state.downsample >= MIN_STEP_PX:
            self.trace.append((x, y))
            view.update()
        return True

    def release(self, view: SlideView, event) -> bool:
        """Close the outline; a drawing of fewer than 3 points or no area is dropped."""
        if view is not self.trace_view:
            return False
        trace, self.trace, self.trace_view = self.trace, [], None
        polygon = Polygon(trace) if len(trace) >= 3 else None
        if polygon is not None and not polygon.is_valid:
            polygon = polygon.buffer(0)
            polygon = polygon if polygon.geom_type == "Polygon" else None
        if polygon is not None and polygon.area > 0:
            self.finished(ReaderMark(self.slide_of(view), polygon))
        view.update()
        return True

    def double_click(self, view: SlideView, event) -> bool:
        """Not used."""
        return False

    def key(self, view: SlideView, event) -> bool:
        """Not used."""
        return False


class MarkPainter:
    """Draws the current mark (and an outline being drawn) on the panes.

    Parameters
    ----------
    mark_of : callable
        ``mark_of() -> (ReaderMark or None, source view or None)``.
    matrix : callable
        ``matrix(source_view, target_view) -> 3x3`` level-0 map between panes.
    tool : MarkTool
        The tool, for the outline being drawn.
    """

    def __init__(self, mark_of, matrix, tool: MarkTool):
        self.mark_of = mark_of
        self.matrix = matrix
        self.tool = tool

    def paint(self, painter: QPainter, view: SlideView) -> None:
        """Draw the mark in ``view``'s screen coordinates."""
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        painter.setPen(QPen(MARK_COLOR, 2.5))
        painter.setBrush(Qt.BrushStyle.NoBrush)
        mark, source = self.mark_of()
        if mark is not None and source is not None:
            geometry = mark.geometry
            if source is not view:
                geometry = apply_matrix(geometry, self.matrix(source, view))
            self._draw(painter, view, geometry)
        if self.tool.trace_view is view and len(self.tool.trace) > 1:
            painter.drawPolyline(self._screen(view, self.tool.trace))

    def _draw(self, painter: QPainter, view: SlideView, geometry) -> None:
        if geometry.geom_type == "Point":
            sx, sy = view.level0_to_screen(geometry.x, geometry.y)
            painter.drawEllipse(QPointF(sx, sy), 7, 7)
            painter.drawLine(QPointF(sx - 11, sy), QPointF(sx + 11, sy))
            painter.drawLine(QPointF(sx, sy - 11), QPointF(sx, sy + 11))
        else:
            painter.drawPolygon(self._screen(view, list(geometry.exterior.coords)))

    @staticmethod
    def _screen(view: SlideView, points) -> QPolygonF:
        return QPolygonF([QPointF(*view.level0_to_screen(x, y)) for x, y in points])
