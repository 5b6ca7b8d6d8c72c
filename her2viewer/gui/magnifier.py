"""A magnifier lens: while Z is held, what the pane shows under the cursor at 4x in a circle.

The lens is one of the pane's ``vector_painters``. It draws the pane's own tiles as the
pane draws them (:meth:`SlideView.overlay_signature`: the Display dock's levels or stain
view, then the shown heatmap and mask layers, blended on the tile workers), those already
cached, coarsest first so finer ones cover them, over the overview, and asks the tile
loader for the missing tiles of its level (drawn as they arrive; asked again when the
display or the layers change): the slide is never read on the GUI thread. The pane's
annotations are drawn over them by their own painters through the lens's zoom. It follows
the pane's rotation and flip.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
from PySide6.QtCore import QEvent, QObject, QPointF, QRect, QRectF, Qt
from PySide6.QtGui import QColor, QCursor, QPainterPath, QPen, QTransform

from her2viewer.gui.annotations.layer import AnnotationPainter
from her2viewer.gui.tiles import QUEUED
from her2viewer.viewport import tile_region

#: Key held to show the lens.
KEY = Qt.Key.Key_Z
#: How much the lens magnifies, and its radius in screen pixels.
ZOOM, RADIUS = 4.0, 120.0
#: Coarser levels drawn under the lens's own while its tiles load.
COARSER_DRAWN = 3


class Magnifier(QObject):
    """The lens of one pane (a :class:`~her2viewer.gui.slideview.SlideView`).

    Attributes
    ----------
    active : bool
        Whether the lens shows (Z held).
    centre : QPointF
        The screen point magnified.
    """

    def __init__(self, view) -> None:
        super().__init__(view)
        self.view = view
        self.active = False
        self.centre = QPointF()
        self._signature: tuple | None = None  # the tiles last asked for are drawn so
        self._lens_view = _LensView(self)
        view.installEventFilter(self)
        view.vector_painters.append(self)
        view.loader.tile_ready.connect(self._on_tile_ready, QUEUED)

    def show_at(self, centre: QPointF) -> None:
        """Show the lens about screen point ``centre``, drawn over every other painter."""
        self.active = True
        self.centre = QPointF(centre)
        painters = self.view.vector_painters
        if self in painters:
            painters.remove(self)
        painters.append(self)
        self._request_tiles()
        self.view.update()

    def hide(self) -> None:
        """Take the lens away."""
        if self.active:
            self.active = False
            self.view.loader.cancel(id(self))
            self.view.update()

    def eventFilter(self, watched, event) -> bool:  # noqa: N802 - Qt override
        kind = event.type()
        if kind in (QEvent.Type.KeyPress, QEvent.Type.KeyRelease) and event.key() == KEY:
            if event.isAutoRepeat() or event.modifiers() != Qt.KeyboardModifier.NoModifier:
                return event.isAutoRepeat()
            if kind == QEvent.Type.KeyRelease:
                self.hide()
            elif self.view.slide is not None:
                self.show_at(QPointF(self.view.mapFromGlobal(QCursor.pos())))
            return True
        if self.active and kind == QEvent.Type.MouseMove:
            self.show_at(event.position())
        elif kind in (QEvent.Type.FocusOut, QEvent.Type.Leave):
            self.hide()
        return False

    # -- geometry ------------------------------------------------------------------
    def level(self) -> int:
        """The virtual level whose pixels match the lens's zoom."""
        downsample = self.view.state.downsample / ZOOM
        return min(max(math.floor(math.log2(max(downsample, 1e-9)) + 0.5), 0), self.levels - 1)

    @property
    def levels(self) -> int:
        """Number of virtual levels of the pane's slide."""
        return self.view.viewport.levels

    def l0_bounds(self) -> tuple[float, float, float, float]:
        """Level-0 box ``(x0, y0, x1, y1)`` the lens shows."""
        x, y = self.view.screen_to_level0(self.centre.x(), self.centre.y())
        reach = RADIUS * self.view.state.downsample / ZOOM
        return x - reach, y - reach, x + reach, y + reach

    def transform(self) -> QTransform:
        """Level-0 pixels to screen pixels inside the lens (the pane's, magnified about the
        lens centre)."""
        m = self.matrix()
        return QTransform(m[0, 0], m[1, 0], m[0, 1], m[1, 1], m[0, 2], m[1, 2])

    def matrix(self) -> np.ndarray:
        """The 3x3 matrix of :meth:`transform`."""
        x, y = self.view.screen_to_level0(self.centre.x(), self.centre.y())
        linear = self.view.state.linear() * ZOOM
        shift = np.array([self.centre.x(), self.centre.y()]) - linear @ [x, y]
        return np.array([[*linear[0], shift[0]], [*linear[1], shift[1]], [0.0, 0.0, 1.0]])

    # -- tiles ---------------------------------------------------------------------
    def _request_tiles(self) -> None:
        """Ask for the lens level's tiles as the pane draws them now."""
        self._signature = self.view.overlay_signature()
        tiles = self.view.viewport.tiles_in(self.level(), self.l0_bounds())
        self.view.request_slide_tiles(id(self), self.level(), tiles, self._signature)

    def _on_tile_ready(self, owner: int, _key) -> None:
        if owner == id(self) and self.active:
            self.view.update()

    # -- painting (SlideView.vector_painters) -----------------------------------------
    def paint(self, painter, view) -> None:
        """Draw the lens, when active, over the pane."""
        if not self.active or view.slide is None:
            return
        lens = QPainterPath()
        lens.addEllipse(self.centre, RADIUS, RADIUS)
        painter.setClipPath(lens)
        painter.fillPath(lens, Qt.GlobalColor.white)
        painter.setTransform(self.transform())
        self._paint_tiles(painter, view)
        painter.resetTransform()
        self._paint_annotations(painter, view)
        painter.setClipping(False)
        painter.setRenderHint(painter.RenderHint.Antialiasing, True)
        painter.setPen(QPen(QColor(20, 20, 24), 3))
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.drawEllipse(self.centre, RADIUS, RADIUS)
        painter.setPen(QPen(QColor(245, 245, 245), 1.5))
        painter.drawEllipse(self.centre, RADIUS - 2, RADIUS - 2)

    def _paint_tiles(self, painter, view) -> None:
        """The overview, then the cached tiles drawn as the pane draws them, coarse to fine."""
        signature = view.overlay_signature()
        if signature != self._signature:  # the display or the layers changed meanwhile
            self._request_tiles()
        info = view.slide.info
        overview = view.displayed_overview
        if overview is not None:
            painter.drawImage(QRectF(0, 0, info.width, info.height), overview.image)
        bounds = self.l0_bounds()
        level = self.level()
        for lv in range(min(level + COARSER_DRAWN, self.levels - 1), level - 1, -1):
            for col, row in view.viewport.tiles_in(lv, bounds):
                tile = view.cached_slide_tile(lv, col, row, signature)
                if tile is not None and tile.image is not None:
                    region = tile_region(lv, col, row, info.width, info.height)
                    painter.drawImage(QRectF(*region), tile.image)

    def _paint_annotations(self, painter, view) -> None:
        """The pane's annotation painters, drawing through the lens's zoom into its box."""
        box = QRect(
            round(self.centre.x() - RADIUS), round(self.centre.y() - RADIUS),
            round(2 * RADIUS), round(2 * RADIUS),
        )  # fmt: skip
        self._lens_view.place(
            box, self.matrix(), replace(view.state, downsample=view.state.downsample / ZOOM)
        )
        for drawer in [p for p in view.vector_painters if isinstance(p, AnnotationPainter)]:
            painter.save()
            painter.setViewport(box)  # the painter draws into a lens-sized screen...
            painter.setWindow(0, 0, box.width(), box.height())  # ...placed over the lens
            drawer.paint(painter, self._lens_view)
            painter.restore()


class _LensView(QObject):
    """What an :class:`AnnotationPainter` reads of its pane, as the lens shows it: a
    lens-sized screen, the lens's matrix and zoom (a QObject: repaints are asked of it)."""

    def __init__(self, lens: Magnifier) -> None:
        super().__init__(lens)
        self.lens = lens
        self.state = None
        self._matrix = np.eye(3)
        self._side = 0

    def place(self, box: QRect, matrix: np.ndarray, state) -> None:
        """Show level-0 through ``matrix`` (to the pane's pixels) in ``box`` at ``state``."""
        shift = np.array([[1.0, 0.0, -box.x()], [0.0, 1.0, -box.y()], [0.0, 0.0, 1.0]])
        self._matrix, self._side, self.state = shift @ matrix, box.width(), state

    def level0_to_screen_matrix(self) -> np.ndarray:
        """Level-0 pixels to the lens box's pixels."""
        return self._matrix

    def width(self) -> int:
        """The lens box's side."""
        return self._side

    def height(self) -> int:
        """The lens box's side."""
        return self._side

    def update(self) -> None:
        """Repaint the pane (and so the lens)."""
        self.lens.view.update()
