"""The drawing and editing tools of a slide pane, with QuPath's behaviour.

A tool receives the pane's mouse and key events (through its
:class:`~her2viewer.gui.annotations.controller.AnnotationController`) and returns
True for the events it takes, so the pane pans only when the tool lets it. Tools
keep the shape being drawn in level-0 pixels (``view.screen_to_level0``, rotation
included), paint it as a preview, and hand finished shapes and edits to the
controller, which turns them into commands on the undo stack.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import shapely
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QPainter, QPainterPath, QPen
from shapely.geometry import LineString, Point, Polygon
from shapely.geometry.base import BaseGeometry

from her2viewer.geometry.shapes import ellipse, rectangle
from her2viewer.viewport import TILE_SIZE

#: Screen pixels within which a click on the first vertex closes a polygon.
SNAP_PX = 8.0
#: Screen pixels within which a vertex handle is grabbed.
HANDLE_PX = 6.0
#: Shapes dragged smaller than this (screen pixels) are taken as a click and dropped.
MIN_DRAG_PX = 2.0
#: Default brush diameter on the slide, by unit: um with a pixel size, slide px without.
BRUSH_SIZES = {"µm": 20.0, "px": 40.0}
#: Largest colour difference (per channel, 0-255) the wand grows over.
WAND_TOLERANCE = 24
PREVIEW = QColor(255, 220, 0)
LEFT = Qt.MouseButton.LeftButton
ALT = Qt.KeyboardModifier.AltModifier
SHIFT = Qt.KeyboardModifier.ShiftModifier
CTRL = Qt.KeyboardModifier.ControlModifier


def event_point(view, event) -> tuple[float, float]:
    """The level-0 point under a mouse event."""
    pos = event.position()
    return view.screen_to_level0(pos.x(), pos.y())


def screen_points(view, coords) -> list[QPointF]:
    """Level-0 ``coords`` (N x 2) as screen points of ``view``."""
    coords = np.asarray(coords, dtype=float).reshape(-1, 2)
    matrix = view.level0_to_screen_matrix()
    screen = coords @ matrix[:2, :2].T + matrix[:2, 2]
    return [QPointF(x, y) for x, y in screen]


def screen_path(view, geometry: BaseGeometry) -> QPainterPath:
    """A painter path of a level-0 geometry in ``view``'s screen pixels (points as dots)."""
    path = QPainterPath()
    for part in getattr(geometry, "geoms", [geometry]):
        if part.geom_type == "Polygon":
            for ring in [part.exterior, *part.interiors]:
                points = screen_points(view, ring.coords)
                path.addPolygon(points)
                path.closeSubpath()
        elif part.geom_type == "Point":
            path.addEllipse(screen_points(view, part.coords)[0], 4.0, 4.0)
        else:
            points = screen_points(view, part.coords)
            path.moveTo(points[0])
            for point in points[1:]:
                path.lineTo(point)
    return path


def paint_preview(painter: QPainter, path: QPainterPath, fill: bool = False) -> None:
    """Draw the outline of a shape being drawn or moved (dashed, in the preview colour)."""
    painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
    painter.setPen(QPen(PREVIEW, 1.5, Qt.PenStyle.DashLine))
    fill_color = QColor(PREVIEW)
    fill_color.setAlpha(50)
    painter.setBrush(fill_color if fill else Qt.BrushStyle.NoBrush)
    painter.drawPath(path)


def move_vertex(geometry: BaseGeometry, index: int, x: float, y: float) -> BaseGeometry:
    """``geometry`` with its ``index``-th coordinate (of ``shapely.get_coordinates``) at
    ``(x, y)``; a ring's closing coordinate moves with its first."""
    coords = shapely.get_coordinates(geometry)
    same = np.all(coords == coords[index], axis=1)
    coords[same] = (x, y)
    return shapely.transform(geometry, lambda _old: coords)


def mask_polygon(mask: np.ndarray, seed: tuple[int, int]) -> Polygon | None:
    """The outline (with holes) of the region of a 0/255 mask around pixel ``seed``, in
    that mask's pixel coordinates; None when the region is too small to outline."""
    contours, hierarchy = cv2.findContours(mask, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    if hierarchy is None:
        return None
    rings = [c.reshape(-1, 2).astype(float) for c in contours]
    for i, (_next, _prev, _child, parent) in enumerate(hierarchy[0]):
        if parent != -1 or len(rings[i]) < 3:
            continue
        holes = [r for j, r in enumerate(rings) if hierarchy[0][j][3] == i and len(r) >= 3]
        polygon = Polygon(rings[i], holes)
        if polygon.buffer(0.5).contains(Point(seed)):
            return polygon
    return None


def visible_image(view) -> tuple[np.ndarray, float, tuple[float, float]]:
    """The visible part of the slide as the pane draws it: a BGR mosaic of the cached
    slide tiles at the view's level (white where a tile is not loaded yet; nothing is
    read from the slide), its scale (level-0 px per pixel) and level-0 origin."""
    level = view.target_level()
    x0, y0, x1, y1 = view.visible_bounds()
    tiles = view.viewport.tiles_in(level, (x0, y0, x1, y1))
    cols = [c for c, _ in tiles]
    rows = [r for _, r in tiles]
    col0, row0 = min(cols), min(rows)
    mosaic = np.full(
        ((max(rows) - row0 + 1) * TILE_SIZE, (max(cols) - col0 + 1) * TILE_SIZE, 3), 255, np.uint8
    )
    for col, row in tiles:
        tile = view.cached_slide_tile(level, col, row)
        if tile is not None and tile.array is not None:
            pixels = tile.array[..., :3]
            top, left = (row - row0) * TILE_SIZE, (col - col0) * TILE_SIZE
            mosaic[top : top + pixels.shape[0], left : left + pixels.shape[1]] = pixels
    scale = float(1 << level)
    return mosaic, scale, (col0 * TILE_SIZE * scale, row0 * TILE_SIZE * scale)


def wand_region(view, x: float, y: float, tolerance: int = WAND_TOLERANCE) -> Polygon | None:
    """The level-0 region around ``(x, y)`` of colour similar to the clicked one, grown
    over the pixels the pane shows at its current zoom (QuPath's wand)."""
    image, scale, (ox, oy) = visible_image(view)
    u, v = int((x - ox) / scale), int((y - oy) / scale)
    if not (0 <= v < image.shape[0] and 0 <= u < image.shape[1]):
        return None
    smooth = cv2.GaussianBlur(image, (0, 0), 1.0)
    mask = np.zeros((image.shape[0] + 2, image.shape[1] + 2), np.uint8)
    flags = 4 | (255 << 8) | cv2.FLOODFILL_MASK_ONLY | cv2.FLOODFILL_FIXED_RANGE
    diff = (tolerance,) * 3
    cv2.floodFill(smooth, mask, (u, v), 0, diff, diff, flags)
    polygon = mask_polygon(np.ascontiguousarray(mask[1:-1, 1:-1]), (u, v))
    if polygon is None:
        return None
    # pixel centres to level-0: the outline runs through the border pixels' centres
    return shapely.transform(polygon, lambda c: (c + 0.5) * scale + (ox, oy))


class Tool:
    """A tool that takes no event (the pane pans and zooms as usual).

    Parameters
    ----------
    controller : AnnotationController
        The pane's controller: selection, current class and the commands.
    """

    name = "pan"

    def __init__(self, controller):
        self.controller = controller

    def press(self, view, event) -> bool:
        """A mouse button went down; whether the tool took it."""
        return False

    def move(self, view, event) -> bool:
        """The mouse moved (with or without a button); whether the tool took it."""
        return False

    def release(self, view, event) -> bool:
        """A mouse button came up; whether the tool took it."""
        return False

    def double_click(self, view, event) -> bool:
        """A double click; whether the tool took it."""
        return False

    def key(self, view, event) -> bool:
        """A key the tool itself understands (e.g. Enter closes a polygon); whether taken."""
        return False

    def cancel(self) -> bool:
        """Drop the drawing in progress (Esc); whether there was one."""
        return False

    def paint(self, painter: QPainter, view) -> None:
        """Draw the tool's preview (screen coordinates)."""


class MoveTool(Tool):
    """Move (M): click selects (Shift adds/removes), Ctrl-drag selects by a rubber band,
    a drag on a selected unlocked annotation moves the selection, a drag on a vertex
    handle of the one selected annotation moves that vertex, elsewhere the pane pans."""

    name = "move"

    def __init__(self, controller):
        super().__init__(controller)
        self._band: tuple[QPointF, QPointF] | None = None
        self._moving: tuple[tuple[float, float], tuple[float, float]] | None = None
        self._vertex: tuple[str, int, tuple[float, float]] | None = None

    def press(self, view, event) -> bool:
        if event.button() != LEFT:
            return False
        pos, point = event.position(), event_point(view, event)
        control = self.controller
        if event.modifiers() & CTRL:
            self._band = (pos, pos)
            return True
        handle = control.vertex_at(pos.x(), pos.y())
        if handle is not None:
            self._vertex = (*handle, point)
            return True
        hit = control.hit(pos.x(), pos.y())
        if hit is None:
            if not event.modifiers() & SHIFT:
                control.select([])
            return False
        if event.modifiers() & SHIFT:
            control.toggle(hit)
            return True
        if hit not in control.selected_ids:
            control.select([hit])
        if control.editable(control.selected_ids):
            self._moving = (point, point)
        else:
            control.message.emit("A locked annotation does not move: unlock it first (Ctrl+K).")
        return True

    def move(self, view, event) -> bool:
        if self._band is not None:
            self._band = (self._band[0], event.position())
        elif self._moving is not None:
            self._moving = (self._moving[0], event_point(view, event))
        elif self._vertex is not None:
            self._vertex = (*self._vertex[:2], event_point(view, event))
        else:
            return False
        view.update()
        return True

    def release(self, view, event) -> bool:
        control = self.controller
        if self._band is not None:
            start, end = self._band
            self._band = None
            control.select_in_box(start, end, add=bool(event.modifiers() & SHIFT))
        elif self._moving is not None:
            (x0, y0), (x1, y1) = self._moving
            self._moving = None
            if math.hypot(x1 - x0, y1 - y0) > 0:
                control.translate_selected(x1 - x0, y1 - y0)
        elif self._vertex is not None:
            ann_id, index, (x, y) = self._vertex
            self._vertex = None
            control.move_vertex(ann_id, index, x, y)
        else:
            return False
        view.update()
        return True

    def cancel(self) -> bool:
        busy = any(v is not None for v in (self._band, self._moving, self._vertex))
        self._band = self._moving = self._vertex = None
        return busy

    def paint(self, painter: QPainter, view) -> None:
        if self._band is not None:
            painter.setPen(QPen(PREVIEW, 1, Qt.PenStyle.DashLine))
            painter.setBrush(Qt.BrushStyle.NoBrush)
            painter.drawRect(QRectF(*self._band).normalized())
        elif self._moving is not None:
            (x0, y0), (x1, y1) = self._moving
            for ann in self.controller.selected():
                moved = shapely.transform(ann.geometry, lambda c: c + (x1 - x0, y1 - y0))
                paint_preview(painter, screen_path(view, moved))
        elif self._vertex is not None:
            ann_id, index, (x, y) = self._vertex
            edited = move_vertex(self.controller.document.get(ann_id).geometry, index, x, y)
            paint_preview(painter, screen_path(view, edited))


class DragShapeTool(Tool):
    """Rectangle (R), Ellipse (E) and Line (L): press, drag, release draws the shape
    (rectangles and ellipses upright in the slide's pixels, whatever the rotation)."""

    def __init__(self, controller, kind: str):
        super().__init__(controller)
        self.name = kind
        self._drag: tuple[QPointF, tuple[float, float], tuple[float, float]] | None = None

    def shape(self, start: tuple[float, float], end: tuple[float, float]) -> BaseGeometry:
        """The level-0 shape spanned by a drag from ``start`` to ``end``."""
        (x0, y0), (x1, y1) = start, end
        if self.name == "line":
            return LineString([start, end])
        left, top, width, height = min(x0, x1), min(y0, y1), abs(x1 - x0), abs(y1 - y0)
        if self.name == "rectangle":
            return rectangle(left, top, width, height)
        return ellipse(left + width / 2, top + height / 2, width / 2, height / 2)

    def press(self, view, event) -> bool:
        if event.button() != LEFT:
            return False
        point = event_point(view, event)
        self._drag = (event.position(), point, point)
        return True

    def move(self, view, event) -> bool:
        if self._drag is None:
            return False
        self._drag = (*self._drag[:2], event_point(view, event))
        view.update()
        return True

    def release(self, view, event) -> bool:
        if self._drag is None:
            return False
        pressed, start, end = self._drag
        self._drag = None
        drag = event.position() - pressed
        if max(abs(drag.x()), abs(drag.y())) >= MIN_DRAG_PX:
            self.controller.add(self.shape(start, end), self.name)
        view.update()
        return True

    def cancel(self) -> bool:
        busy, self._drag = self._drag is not None, None
        return busy

    def paint(self, painter: QPainter, view) -> None:
        if self._drag is not None and self._drag[1] != self._drag[2]:
            paint_preview(painter, screen_path(view, self.shape(*self._drag[1:])))


class PolygonTool(Tool):
    """Polygon (P) and Polyline (V): each click adds a vertex; a double click or Enter
    finishes, and a click within :data:`SNAP_PX` of the first vertex closes a polygon;
    Backspace takes the last vertex back, Esc drops the drawing."""

    def __init__(self, controller, kind: str):
        super().__init__(controller)
        self.name = kind
        self.vertices: list[tuple[float, float]] = []
        self._hover: tuple[float, float] | None = None
        self._pressed = False

    @property
    def _needed(self) -> int:
        return 3 if self.name == "polygon" else 2

    def _near_first(self, view, pos: QPointF) -> bool:
        first = screen_points(view, [self.vertices[0]])[0]
        return math.hypot(pos.x() - first.x(), pos.y() - first.y()) <= SNAP_PX

    def press(self, view, event) -> bool:
        if event.button() != LEFT:
            return False
        self._pressed = True
        pos = event.position()
        closes = self.name == "polygon" and len(self.vertices) >= 3
        if closes and self._near_first(view, pos):
            self.finish(view)
        else:
            self.vertices.append(event_point(view, event))
        view.update()
        return True

    def move(self, view, event) -> bool:
        if not self.vertices:
            return False
        self._hover = event_point(view, event)
        view.update()
        return True

    def release(self, view, event) -> bool:
        pressed, self._pressed = self._pressed, False
        return pressed

    def double_click(self, view, event) -> bool:
        if not self.vertices:
            return False
        self.vertices.append(event_point(view, event))  # once, if its press added it too
        self.finish(view)
        return True

    def key(self, view, event) -> bool:
        if not self.vertices:
            return False
        if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            self.finish(view)
        elif event.key() == Qt.Key.Key_Backspace:
            self.vertices.pop()
        else:
            return False
        view.update()
        return True

    def finish(self, view) -> None:
        """Make the annotation from the vertices (repeated clicks on one spot count once)."""
        kept: list[tuple[float, float]] = []
        screen = screen_points(view, self.vertices)
        for vertex, pos in zip(self.vertices, screen, strict=True):
            if kept:
                last = screen_points(view, [kept[-1]])[0]
                if math.hypot(pos.x() - last.x(), pos.y() - last.y()) < MIN_DRAG_PX:
                    continue
            kept.append(vertex)
        self.vertices, self._hover = [], None
        if len(kept) >= self._needed:
            shape = Polygon(kept) if self.name == "polygon" else LineString(kept)
            self.controller.add(shape, self.name)

    def cancel(self) -> bool:
        busy = bool(self.vertices)
        self.vertices, self._hover = [], None
        return busy

    def paint(self, painter: QPainter, view) -> None:
        if not self.vertices:
            return
        drawn = self.vertices + ([self._hover] if self._hover else [])
        path = screen_path(view, LineString(drawn) if len(drawn) > 1 else Point(drawn[0]))
        paint_preview(painter, path)
        first = screen_points(view, self.vertices[:1])[0]
        painter.drawEllipse(first, SNAP_PX, SNAP_PX)  # where a click closes the polygon


class BrushTool(Tool):
    """Brush (B): a stroke of circles :attr:`size` wide on the slide (µm when the slide has
    a pixel size, its level-0 pixels otherwise), so a stroke keeps its physical size at
    any zoom; merged into the one selected annotation (Alt: cut out of it), or a new
    annotation with none selected. The brush's outline follows the mouse."""

    name = "brush"

    def __init__(self, controller, size: float | None = None):
        super().__init__(controller)
        self.size = BRUSH_SIZES[self.unit] if size is None else size
        self._stroke: list[tuple[float, float]] = []
        self._subtract = False
        self._hover: QPointF | None = None

    @property
    def unit(self) -> str:
        """The unit of :attr:`size`: ``"µm"`` when the slide has a pixel size, else ``"px"``."""
        return "µm" if self.controller.document.mpp else "px"

    @property
    def radius(self) -> float:
        """The brush radius in level-0 pixels."""
        return self.size / 2 / (self.controller.document.mpp or 1.0)

    def stroke(self) -> BaseGeometry:
        """The level-0 area covered by the stroke so far."""
        line = LineString(self._stroke) if len(self._stroke) > 1 else Point(self._stroke[0])
        return line.buffer(self.radius)

    def press(self, view, event) -> bool:
        if event.button() != LEFT:
            return False
        self._stroke = [event_point(view, event)]
        self._subtract = bool(event.modifiers() & ALT)
        view.update()
        return True

    def move(self, view, event) -> bool:
        self._hover = event.position()
        view.update()  # the brush outline follows the mouse
        if not self._stroke:
            return False
        self._stroke.append(event_point(view, event))
        return True

    def release(self, view, event) -> bool:
        if not self._stroke:
            return False
        stroke = self.stroke()
        self._stroke = []
        self.controller.apply_stroke(stroke, self._subtract)
        view.update()
        return True

    def cancel(self) -> bool:
        busy, self._stroke = bool(self._stroke), []
        return busy

    def paint(self, painter: QPainter, view) -> None:
        if self._stroke:
            paint_preview(painter, screen_path(view, self.stroke()), fill=True)
        if self._hover is not None:
            painter.setPen(QPen(PREVIEW, 1))
            painter.setBrush(Qt.BrushStyle.NoBrush)
            on_screen = self.radius / view.state.downsample
            painter.drawEllipse(self._hover, on_screen, on_screen)


class WandTool(Tool):
    """Wand (W): a click grows a region over similar colour as the pane shows it and
    merges it like a brush stroke (Alt: cuts it out of the selected annotation)."""

    name = "wand"

    def __init__(self, controller):
        super().__init__(controller)
        self._pressed = False

    def press(self, view, event) -> bool:
        if event.button() != LEFT:
            return False
        self._pressed = True
        region = wand_region(view, *event_point(view, event))
        if region is not None:
            self.controller.apply_stroke(region, bool(event.modifiers() & ALT))
        return True

    def release(self, view, event) -> bool:
        pressed, self._pressed = self._pressed, False
        return pressed


class PointsTool(Tool):
    """Points (.): a click adds a point to the point set of the current class (one set
    per class, for counting); Alt-click removes the nearest point of that set."""

    name = "points"

    def __init__(self, controller):
        super().__init__(controller)
        self._pressed = False

    def press(self, view, event) -> bool:
        if event.button() != LEFT:
            return False
        self._pressed = True
        x, y = event_point(view, event)
        if event.modifiers() & ALT:
            self.controller.remove_point(x, y)
        else:
            self.controller.add_point(x, y)
        return True

    def release(self, view, event) -> bool:
        pressed, self._pressed = self._pressed, False
        return pressed


def make_tools(controller) -> dict[str, Tool]:
    """One of each tool for ``controller``, by name (see ``controller.TOOLS``)."""
    tools = [
        MoveTool(controller),
        DragShapeTool(controller, "rectangle"),
        DragShapeTool(controller, "ellipse"),
        DragShapeTool(controller, "line"),
        PolygonTool(controller, "polygon"),
        PolygonTool(controller, "polyline"),
        BrushTool(controller),
        WandTool(controller),
        PointsTool(controller),
    ]
    return {tool.name: tool for tool in tools}
