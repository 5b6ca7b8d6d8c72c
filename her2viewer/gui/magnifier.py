"""A magnifier lens: while Z is held, the tissue under the cursor at 4x in a circle.

The lens is one of the pane's ``vector_painters``. It draws the slide's own tiles
already cached, coarsest first so finer ones cover them, over the overview, and asks
the tile loader for the missing tiles of its level (drawn as they arrive): the slide is
never read on the GUI thread. It follows the pane's rotation and flip.
"""

from __future__ import annotations

import math

import numpy as np
from PySide6.QtCore import QEvent, QObject, QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QCursor, QPainterPath, QPen, QTransform

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
        x, y = self.view.screen_to_level0(self.centre.x(), self.centre.y())
        linear = self.view.state.linear() * ZOOM
        shift = np.array([self.centre.x(), self.centre.y()]) - linear @ [x, y]
        return QTransform(
            linear[0, 0], linear[1, 0], linear[0, 1], linear[1, 1], shift[0], shift[1]
        )

    # -- tiles ---------------------------------------------------------------------
    def _request_tiles(self) -> None:
        self.view.request_slide_tiles(
            id(self), self.level(), self.view.viewport.tiles_in(self.level(), self.l0_bounds())
        )

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
        info = view.slide.info
        overview = view.overview
        if overview is not None:
            painter.drawImage(QRectF(0, 0, info.width, info.height), overview.image)
        bounds = self.l0_bounds()
        level = self.level()
        for lv in range(min(level + COARSER_DRAWN, self.levels - 1), level - 1, -1):
            for col, row in view.viewport.tiles_in(lv, bounds):
                tile = view.cached_slide_tile(lv, col, row)
                if tile is not None and tile.image is not None:
                    region = tile_region(lv, col, row, info.width, info.height)
                    painter.drawImage(QRectF(*region), tile.image)
        painter.resetTransform()
        painter.setClipping(False)
        painter.setRenderHint(painter.RenderHint.Antialiasing, True)
        painter.setPen(QPen(QColor(20, 20, 24), 3))
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.drawEllipse(self.centre, RADIUS, RADIUS)
        painter.setPen(QPen(QColor(245, 245, 245), 1.5))
        painter.drawEllipse(self.centre, RADIUS - 2, RADIUS - 2)
