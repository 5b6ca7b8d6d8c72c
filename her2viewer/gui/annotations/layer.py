"""Drawing a document's annotations over a slide view, smooth at every zoom.

An :class:`AnnotationPainter` is one of a :class:`~her2viewer.gui.slideview.SlideView`'s
``vector_painters``. Drawing ten thousand polygons one by one costs far more than a
frame (about 70 ms with QPainter), so the annotations are drawn as the slide is: into
transparent tiles of :data:`TILE` screen pixels per zoom bucket (a quarter of a power
of two), cached, and blitted each frame; panning only renders the tiles that come into
view, within a time budget per frame, and the ring around the view is rendered between
frames so that a pan finds its tiles ready. A tile draws only the objects a
:class:`~her2viewer.geometry.index.SpatialIndex` finds in it, each as an outline
simplified for the bucket (cached per object and bucket), objects smaller than
:data:`DOT_PX` screen pixels as one dot, and point sets with ``drawPoints`` in one batch
per object. A change of the document drops only the tiles and outlines of the objects
it touched. Selected annotations (outline, vertex handles) and names are drawn live
over the tiles.
"""

from __future__ import annotations

import math
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

import numpy as np
import shapely
from pyqtgraph.functions import create_qpolygonf, ndarray_from_qpolygonf
from PySide6.QtCore import QPointF, QRect, QRectF, Qt, QTimer
from PySide6.QtGui import QColor, QImage, QPainter, QPainterPath, QPen, QPolygonF, QTransform

from her2viewer.geometry.index import SpatialIndex
from her2viewer.geometry.shapes import simplify_for_display

#: Side of a cached annotation tile, in screen pixels.
TILE = 128
#: Zoom buckets per power of two of the downsample (tiles are drawn scaled by < 9 %).
LOD_STEPS = 4
#: Tiles kept (64 KiB each at most; empty tiles cost nothing).
MAX_TILES = 1024
#: Zoom buckets whose simplified outlines are kept.
MAX_PATH_BUCKETS = 4
#: Milliseconds of tile rendering per frame; the rest follows in the next frames.
RENDER_BUDGET_MS = 6.0
#: Milliseconds of rendering the ring of tiles around the view at a time, between
#: frames (a pan then finds the tiles coming into view ready), and the pause after each
#: (so the ring takes at most a sixth of the GUI thread).
PREFETCH_MS = 3.0
PREFETCH_PAUSE_MS = 15
#: Objects smaller than this on screen (px) are drawn as one dot.
DOT_PX = 2.0
#: Objects smaller than this on screen (px) are drawn without antialiasing (faster).
SMOOTH_PX = 12.0
#: Point sets with more points than this have their own index for hit-tests.
MANY_POINTS = 256
#: A tile with more points of a set than this draws them as squares (round dots cost 8x more).
ROUND_POINTS = 48
#: Outline width and point diameter, in screen pixels.
PEN_PX = 1.5
POINT_PX = 5.0
#: How far (screen px) a drawing may reach beyond an object's bounds.
MARGIN_PX = POINT_PX + 2
#: Alpha of an area's fill.
FILL_ALPHA = 45
SELECTED = QColor(255, 230, 0)
#: Names are drawn for objects at least this wide on screen (px), at most MAX_NAMES of them.
NAME_MIN_PX = 60
MAX_NAMES = 200
#: Vertex handles are drawn when the selection has at most this many vertices on screen.
MAX_HANDLES = 4000
_POLYGONAL = ("Polygon", "MultiPolygon")
_PUNTAL = ("Point", "MultiPoint")

TileKey = tuple[int, int, int]  # (bucket, col, row)
#: A rendered tile: its image and the part of it that was drawn on (None: nothing).
Tile = tuple[QImage, QRect] | None


@dataclass
class PainterStats:
    """Figures of the last frame: tiles shown and rendered, objects drawn into tiles."""

    tiles: int = 0
    rendered: int = 0
    drawn: int = 0
    pending: int = 0


@dataclass
class _Seen:
    """What a painter remembers of one view between its frames (a pane and a magnifier's
    lens paint through the same painter at two zooms, each keeping its own)."""

    bounds: tuple | None = None  # the view's level-0 bounds last frame
    bucket: int | None = None  # the zoom bucket last shown complete
    ring: list[TileKey] = field(default_factory=list)  # tiles around the view to render


def bucket_of(downsample: float) -> int:
    """Return the zoom bucket drawing ``downsample`` (level-0 px per screen px)."""
    return round(LOD_STEPS * math.log2(downsample))


def bucket_downsample(bucket: int) -> float:
    """Return the downsample a zoom bucket's tiles are rendered at."""
    return 2.0 ** (bucket / LOD_STEPS)


def qpolygon(coords: np.ndarray) -> QPolygonF:
    """Return an ``(N, 2)`` array as a QPolygonF, copied in one block."""
    polygon = create_qpolygonf(len(coords))
    if len(coords):
        ndarray_from_qpolygonf(polygon)[:] = coords[:, :2]
    return polygon


def geometry_path(geometry) -> QPainterPath:
    """Return the outline of a polygonal or lineal geometry (holes kept, odd-even fill)."""
    path = QPainterPath()
    path.setFillRule(Qt.FillRule.OddEvenFill)
    for part in shapely.get_parts(geometry):
        if part.geom_type == "Polygon":
            for ring in shapely.get_rings(part):
                path.addPolygon(qpolygon(shapely.get_coordinates(ring)))
                path.closeSubpath()
        elif not part.is_empty:
            path.addPolygon(qpolygon(shapely.get_coordinates(part)))
    return path


def _qtransform(matrix: np.ndarray) -> QTransform:
    """Return a 3x3 affine matrix (column vectors) as a QTransform."""
    m = matrix
    return QTransform(m[0, 0], m[1, 0], m[0, 1], m[1, 1], m[0, 2], m[1, 2])


class _Snapshot:
    """The annotations at one moment, indexed for boxes and clicks.

    A :class:`SpatialIndex` covers all but the big point sets (more than
    :data:`MANY_POINTS` points: a query on one costs a scan of its points); each of
    those gets an index of its own points on its first hit-test. ``coords`` and
    ``point_indexes`` are the painter's caches by id, kept across snapshots.
    """

    def __init__(self, anns: list, coords: dict, point_indexes: dict):
        self.anns = anns
        self._coords = coords
        self._point_indexes = point_indexes
        geometries = np.asarray([a.geometry for a in anns], dtype=object)
        self.bounds = shapely.bounds(geometries).reshape(-1, 4)
        puntal = np.array([g.geom_type in _PUNTAL for g in geometries], dtype=bool)
        big = puntal & (shapely.get_num_geometries(geometries) > MANY_POINTS)
        self.big = np.flatnonzero(big)
        self.small = np.flatnonzero(~big)
        self.index = SpatialIndex(geometries[self.small])
        #: Positions of the named annotations (but the big point sets) and their widths.
        self.named = np.array([p for p in self.small.tolist() if anns[p].name], dtype=int)
        self.named_widths = self.bounds[self.named, 2] - self.bounds[self.named, 0]

    def coords(self, position: int) -> np.ndarray:
        """The ``(N, 2)`` level-0 coordinates of a point annotation sorted by x (cached by id)."""
        ann = self.anns[position]
        coords = self._coords.get(ann.id)
        if coords is None:
            coords = shapely.get_coordinates(ann.geometry)
            coords = self._coords[ann.id] = coords[np.argsort(coords[:, 0], kind="stable")]
        return coords

    def in_box(self, x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
        """Positions (drawing order) of the annotations meeting a level-0 box."""
        found = [self.small[self.index.in_box(x0, y0, x1, y1)]]
        for position in self.big.tolist():
            if len(_inside(self.coords(position), (x0, y0, x1, y1))):
                found.append(np.array([position]))
        return np.sort(np.concatenate(found))

    def at_point(self, x: float, y: float, tolerance: float) -> list[int]:
        """Positions of the annotations hit at ``(x, y)``: big point sets with a point
        within ``tolerance`` first, then :meth:`SpatialIndex.at_point`'s order."""
        near = [p for p in self.big.tolist() if self._point_index(p).at_point(x, y, tolerance)]
        return near + [int(self.small[i]) for i in self.index.at_point(x, y, tolerance)]

    def _point_index(self, position: int) -> SpatialIndex:
        """The index of a big point set's own points (cached by id)."""
        ann_id = self.anns[position].id
        index = self._point_indexes.get(ann_id)
        if index is None:
            points = shapely.points(self.coords(position))
            index = self._point_indexes[ann_id] = SpatialIndex(points)
        return index


class AnnotationPainter:
    """Draws the annotations of ``document`` in every view it is a vector painter of.

    Parameters
    ----------
    document : AnnotationDocument
        The annotations; the painter subscribes to its changes.
    selection_provider : callable, optional
        Returns the ids of the selected annotations (drawn highlighted with handles).
    """

    def __init__(self, document, selection_provider: Callable[[], Collection[str]] | None = None):
        self.document = document
        self.selection_provider = selection_provider or (lambda: ())
        self.visible = True
        self.show_names = True
        self.stats = PainterStats()
        self._seen: weakref.WeakKeyDictionary[object, _Seen] = weakref.WeakKeyDictionary()
        self._tiles: OrderedDict[TileKey, Tile] = OrderedDict()
        self._paths: OrderedDict[int, dict[str, QPainterPath]] = OrderedDict()
        self._index: _Snapshot | None = None
        self._bounds_of: dict[str, tuple[float, float, float, float]] = {}
        self._coords: dict[str, np.ndarray] = {}
        self._point_indexes: dict[str, SpatialIndex] = {}
        document.subscribe(self._on_change)

    def detach(self) -> None:
        """Stop following the document and drop every cache (its pane shows another slide)."""
        self.document.unsubscribe(self._on_change)
        self._tiles.clear()
        self._paths.clear()
        self._coords.clear()
        self._point_indexes.clear()
        self._index = None
        self._seen.clear()

    # -- the document --------------------------------------------------------------
    def _on_change(self, change) -> None:
        """Drop what the change made stale (by id where it names ids) and repaint."""
        if change.kind in ("added", "removed", "changed") and change.ids:
            self._invalidate(change.ids)
        else:
            self._tiles.clear()
            self._paths.clear()
        self._index = None
        for view in list(self._seen):
            view.update()

    def _invalidate(self, ids: Collection[str]) -> None:
        """Forget the outlines of ``ids`` and the tiles showing them, before or after."""
        boxes = [self._bounds_of[i] for i in ids if i in self._bounds_of]
        boxes += [self.document.get(i).geometry.bounds for i in ids if i in self.document]
        for ann_id in ids:
            self._coords.pop(ann_id, None)
            self._point_indexes.pop(ann_id, None)
            for paths in self._paths.values():
                paths.pop(ann_id, None)
        if not boxes:
            return
        boxes = np.asarray(boxes)
        for key in [k for k in self._tiles if self._tile_touches(k, boxes)]:
            del self._tiles[key]

    @staticmethod
    def _tile_touches(key: TileKey, boxes: np.ndarray) -> bool:
        """Whether tile ``key`` (with its margin) overlaps any of ``boxes`` (N x 4)."""
        x0, y0, x1, y1 = _tile_bounds(key, MARGIN_PX)
        return bool(
            np.any(
                (boxes[:, 0] <= x1)
                & (boxes[:, 2] >= x0)
                & (boxes[:, 1] <= y1)
                & (boxes[:, 3] >= y0)
            )
        )

    def _ensure_index(self) -> _Snapshot:
        """The indexed document as it is now (rebuilt after a change)."""
        if self._index is None:
            with self.document.lock:
                anns = list(self.document)
            self._index = _Snapshot(anns, self._coords, self._point_indexes)
            self._bounds_of = {
                a.id: tuple(b)
                for a, b in zip(self._index.anns, self._index.bounds.tolist(), strict=True)
            }
        return self._index

    # -- hit-testing -----------------------------------------------------------------
    def ids_at(self, x: float, y: float, tolerance: float = 0.0) -> list[str]:
        """Return the ids of the annotations at level-0 ``(x, y)``: point sets with a point
        within ``tolerance`` first, then the others smallest area first."""
        snapshot = self._ensure_index()
        return [snapshot.anns[i].id for i in snapshot.at_point(x, y, tolerance)]

    def ids_in(self, x0: float, y0: float, x1: float, y1: float) -> list[str]:
        """Return the ids of the annotations meeting a level-0 box, in drawing order."""
        snapshot = self._ensure_index()
        return [snapshot.anns[i].id for i in snapshot.in_box(x0, y0, x1, y1)]

    # -- outlines ----------------------------------------------------------------------
    def outline(self, ann, bucket: int) -> QPainterPath:
        """Return the level-0 outline of ``ann`` simplified for a zoom bucket (cached)."""
        paths = self._paths.get(bucket)
        if paths is None:
            paths = self._paths[bucket] = {}
            while len(self._paths) > MAX_PATH_BUCKETS:
                self._paths.popitem(last=False)
        else:
            self._paths.move_to_end(bucket)
        path = paths.get(ann.id)
        if path is None:
            simple = simplify_for_display(ann.geometry, bucket_downsample(bucket))
            path = paths[ann.id] = geometry_path(simple)
        return path

    # -- painting ----------------------------------------------------------------------
    def paint(self, painter: QPainter, view) -> None:
        """Draw the annotations into ``view`` (a SlideView) with ``painter``."""
        seen = self._seen.setdefault(view, _Seen())
        self.stats = PainterStats()
        if not self.visible or len(self.document) == 0:
            return
        self._ensure_index()
        matrix = view.level0_to_screen_matrix()
        bounds = _screen_bounds(matrix, view.width(), view.height())
        bucket = bucket_of(view.state.downsample)
        keys = _tiles_in(bucket, bounds)
        missing = self._render(keys)
        if missing:
            QTimer.singleShot(0, view, view.update)  # the rest of the tiles in the next frames
            keys = self._stand_in(seen, bucket, bounds, keys)
        else:
            seen.bucket = bucket
            self._want_ring(seen, bucket, bounds)
        self._draw_tiles(painter, matrix, keys)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        self._draw_selection(painter, matrix, bucket, (view.width(), view.height()))
        if self.show_names:
            self._draw_names(painter, matrix, bounds, view.state.downsample)

    def _render(self, keys: list[TileKey]) -> int:
        """Render the missing tiles of ``keys`` (nearest the centre first) within the budget;
        return how many are still missing."""
        deadline = time.perf_counter() + RENDER_BUDGET_MS / 1000
        missing = [k for k in keys if k not in self._tiles]
        for done, key in enumerate(missing):
            if done and time.perf_counter() > deadline:
                self.stats.pending = len(missing) - done
                return self.stats.pending
            self._tiles[key] = self._render_tile(key)
            self.stats.rendered += 1
            while len(self._tiles) > MAX_TILES:
                self._tiles.popitem(last=False)
        return 0

    @property
    def prefetching(self) -> bool:
        """Whether tiles around a view are still to render between frames."""
        return any(seen.ring for seen in self._seen.values())

    def _want_ring(self, seen: _Seen, bucket: int, bounds) -> None:
        """Ask for the tiles one tile beyond a view (rendered by :meth:`_prefetch`), on
        the sides it moves to since its last frame (all sides when it rests)."""
        grow = TILE * bucket_downsample(bucket)
        moved = np.subtract(bounds, seen.bounds) if seen.bounds else np.zeros(4)
        seen.bounds = bounds
        ahead = np.sign(moved[:2] + moved[2:])  # -1: towards smaller x (y), 1: larger
        x0, y0, x1, y1 = bounds
        around = _tiles_in(
            bucket,
            (
                x0 - grow * (ahead[0] <= 0),
                y0 - grow * (ahead[1] <= 0),
                x1 + grow * (ahead[0] >= 0),
                y1 + grow * (ahead[1] >= 0),
            ),
        )
        idle = not self.prefetching
        seen.ring = [k for k in around if k not in self._tiles]
        if seen.ring and idle:
            QTimer.singleShot(0, self._prefetch)

    def _prefetch(self) -> None:
        """Render ring tiles for :data:`PREFETCH_MS`, then let the event loop run for
        :data:`PREFETCH_PAUSE_MS`."""
        deadline = time.perf_counter() + PREFETCH_MS / 1000
        rings = [seen.ring for seen in self._seen.values() if seen.ring]
        if rings:
            self._ensure_index()
        for ring in rings:
            while ring and time.perf_counter() < deadline:
                key = ring.pop(0)
                if key not in self._tiles:
                    self._tiles[key] = self._render_tile(key)
        while len(self._tiles) > MAX_TILES:
            self._tiles.popitem(last=False)
        if self.prefetching:
            QTimer.singleShot(PREFETCH_PAUSE_MS, self._prefetch)

    def _stand_in(self, seen: _Seen, bucket: int, bounds, keys: list[TileKey]) -> list[TileKey]:
        """The tiles to show while ``keys`` are incomplete: the view's last complete
        bucket's when all of them are cached (zooming in they are, so the annotations never
        blink), else ``keys``."""
        if seen.bucket is None or seen.bucket == bucket:
            return keys
        previous = _tiles_in(seen.bucket, bounds)
        return previous if all(k in self._tiles for k in previous) else keys

    def _draw_tiles(self, painter: QPainter, matrix: np.ndarray, keys: list[TileKey]) -> None:
        """Blit the drawn part of the cached tiles of ``keys`` (all of one bucket) through
        the view's matrix (sparse tiles, a few points, cost a few pixels, not a tile)."""
        if not keys:
            return
        scale = bucket_downsample(keys[0][0])
        painter.setTransform(_qtransform(matrix @ np.diag([scale, scale, 1.0])))
        for key in keys:
            tile = self._tiles.get(key)
            if tile is not None:
                self._tiles.move_to_end(key)
                image, part = tile
                at = QPointF(key[1] * TILE + part.x(), key[2] * TILE + part.y())
                painter.drawImage(at, image, part)
                self.stats.tiles += 1
        painter.resetTransform()

    def _render_tile(self, key: TileKey) -> Tile:
        """Draw the objects touching tile ``key`` into a new transparent image."""
        bucket, col, row = key
        box = _tile_bounds(key, MARGIN_PX)
        hits = self._index.in_box(*box)
        if not len(hits):
            return None
        scale = bucket_downsample(bucket)
        image = QImage(TILE, TILE, QImage.Format.Format_ARGB32_Premultiplied)
        image.fill(0)
        painter = QPainter(image)
        painter.setTransform(QTransform(1 / scale, 0, 0, 1 / scale, -col * TILE, -row * TILE))
        drawn = self._draw_objects(painter, hits, bucket, box)
        painter.end()
        if drawn is None:
            return None
        origin = np.array([col, row]) * TILE * scale  # the part drawn on, in tile pixels:
        x0, y0 = np.floor(np.maximum((drawn[:2] - origin) / scale - MARGIN_PX, 0)).astype(int)
        x1, y1 = np.ceil(np.minimum((drawn[2:] - origin) / scale + MARGIN_PX, TILE)).astype(int)
        return (image, QRect(x0, y0, x1 - x0, y1 - y0)) if x1 > x0 and y1 > y0 else None

    def _draw_objects(self, painter, hits: np.ndarray, bucket: int, box) -> np.ndarray | None:
        """Draw the annotations at positions ``hits`` (drawing order) at a zoom bucket:
        outlines, dots for the tiny ones (one batch per colour), point sets; return the
        level-0 bounds of what was drawn (None: nothing)."""
        scale = bucket_downsample(bucket)
        bounds = self._index.bounds[hits]
        size = np.maximum(bounds[:, 2] - bounds[:, 0], bounds[:, 3] - bounds[:, 1]) / scale
        centres = (bounds[:, :2] + bounds[:, 2:]) / 2
        styles = _Styles(self.document)
        dots: dict[tuple, list] = {}
        anns = [self._index.anns[p] for p in hits.tolist()]
        puntal = np.array([a.geometry.geom_type in _PUNTAL for a in anns], dtype=bool)
        drawn = [bounds[~puntal]]  # and the points drawn, below
        for k, (position, ann) in enumerate(zip(hits.tolist(), anns, strict=True)):
            screen_size = float(size[k])
            color = styles.color(ann)
            kind = ann.geometry.geom_type
            if puntal[k]:
                coords = self._index.coords(position)
                points = self._draw_points(painter, coords, color, box, scale, styles)
                drawn.append(np.c_[points, points])
            elif screen_size < DOT_PX:
                dots.setdefault(color, []).append(centres[k])
            else:
                painter.setRenderHint(QPainter.RenderHint.Antialiasing, screen_size >= SMOOTH_PX)
                painter.setPen(styles.pen(color, ann.locked))
                painter.setBrush(
                    styles.fill(color) if kind in _POLYGONAL else Qt.BrushStyle.NoBrush
                )
                painter.drawPath(self.outline(ann, bucket))
            self.stats.drawn += 1
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, False)
        for color, points in dots.items():
            painter.setPen(styles.dot(color, DOT_PX, round_=False))
            painter.drawPoints(qpolygon(np.asarray(points)))
        drawn = np.concatenate(drawn)
        if not len(drawn):
            return None
        return np.r_[drawn[:, :2].min(axis=0), drawn[:, 2:].max(axis=0)]

    @staticmethod
    def _draw_points(painter, coords, color, box, scale: float, styles) -> np.ndarray:
        """Draw the points of a point set inside ``box`` in one batch: round dots with a
        dark rim, squares when there are many (each screen pixel once); return them."""
        inside = _inside(coords, box)
        round_ = len(inside) <= ROUND_POINTS
        if scale > 1 and not round_:
            inside = np.unique(np.floor(inside / scale), axis=0) * scale
        polygon = qpolygon(inside)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, round_)
        painter.setPen(styles.dot((20, 20, 20), POINT_PX + 1.5, round_))
        painter.drawPoints(polygon)
        painter.setPen(styles.dot(color, POINT_PX, round_))
        painter.drawPoints(polygon)
        return inside

    def _selected(self) -> list:
        """The selected annotations still in the document."""
        return [self.document.get(i) for i in self.selection_provider() if i in self.document]

    def _draw_selection(self, painter: QPainter, matrix: np.ndarray, bucket: int, size) -> None:
        """Outline the selected annotations and draw their vertex handles (points: a
        handle each) on a screen of ``size``, in screen space."""
        selected = self._selected()
        if not selected:
            return
        pen = QPen(SELECTED, PEN_PX + 1.5)
        pen.setCosmetic(True)
        painter.setTransform(_qtransform(matrix))
        painter.setPen(pen)
        painter.setBrush(Qt.BrushStyle.NoBrush)
        for ann in selected:
            if ann.geometry.geom_type not in _PUNTAL:
                painter.drawPath(self.outline(ann, bucket))
        painter.resetTransform()
        vertices = [shapely.get_coordinates(a.geometry) for a in selected]
        screen = _to_screen(matrix, np.concatenate(vertices))
        x, y = screen[:, 0], screen[:, 1]
        screen = screen[(x >= 0) & (x <= size[0]) & (y >= 0) & (y <= size[1])]
        if len(screen) <= MAX_HANDLES:
            polygon = qpolygon(screen)
            for width, color in ((8.0, QColor(20, 20, 20)), (6.0, SELECTED)):
                square = QPen(color, width)
                square.setCapStyle(Qt.PenCapStyle.SquareCap)
                painter.setPen(square)
                painter.drawPoints(polygon)

    def _draw_names(self, painter: QPainter, matrix, bounds, downsample: float) -> None:
        """Draw the names of the named objects in view wide enough on screen, at their top
        left (a test of the bounds of the named ones only: it runs every frame)."""
        snapshot = self._index
        x0, y0, x1, y1 = bounds
        b = snapshot.bounds[snapshot.named]
        shown = (
            (snapshot.named_widths >= NAME_MIN_PX * downsample)
            & (b[:, 0] <= x1)
            & (b[:, 2] >= x0)
            & (b[:, 1] <= y1)
            & (b[:, 3] >= y0)
        )
        named = [snapshot.anns[i] for i in snapshot.named[shown][:MAX_NAMES].tolist()]
        if not named:
            return
        corners = _to_screen(matrix, b[shown][:MAX_NAMES, :2])
        painter.setPen(QColor(255, 255, 255))
        metrics = painter.fontMetrics()
        for ann, (x, y) in zip(named, corners.tolist(), strict=True):
            rect = QRectF(x + 3, y + 3, metrics.horizontalAdvance(ann.name) + 8, metrics.height())
            painter.fillRect(rect, QColor(20, 20, 24, 160))
            painter.drawText(rect, Qt.AlignmentFlag.AlignCenter, ann.name)


class _Styles:
    """Colours, pens and brushes of one tile, each made once."""

    def __init__(self, document):
        self.document = document
        self._cache: dict[tuple, object] = {}

    def _made(self, key: tuple, make):
        value = self._cache.get(key)
        if value is None:
            value = self._cache[key] = make()
        return value

    def color(self, ann) -> tuple[int, int, int]:
        """The class colour of ``ann``."""
        return self._made(("color", ann.class_name), lambda: self.document.color_of(ann))

    def pen(self, color: tuple[int, int, int], locked: bool) -> QPen:
        """The outline pen: the class colour, dashed when the annotation is locked."""

        def make():
            pen = QPen(QColor(*color), PEN_PX)
            pen.setCosmetic(True)
            if locked:
                pen.setStyle(Qt.PenStyle.DashLine)
            return pen

        return self._made(("pen", color, locked), make)

    def fill(self, color: tuple[int, int, int]) -> QColor:
        """The light fill of an area in its class colour."""
        return self._made(("fill", color), lambda: QColor(*color, FILL_ALPHA))

    def dot(self, color: tuple[int, int, int], width: float, round_: bool = True) -> QPen:
        """A pen drawing dots ``width`` screen pixels wide, round or square."""

        def make():
            pen = QPen(QColor(*color), width)
            pen.setCosmetic(True)
            pen.setCapStyle(Qt.PenCapStyle.RoundCap if round_ else Qt.PenCapStyle.SquareCap)
            return pen

        return self._made(("dot", color, width, round_), make)


def _tile_bounds(key: TileKey, margin_px: float = 0.0) -> tuple[float, float, float, float]:
    """Level-0 box of tile ``key``, grown by ``margin_px`` screen pixels."""
    bucket, col, row = key
    scale = bucket_downsample(bucket)
    span = TILE * scale
    margin = margin_px * scale
    return (
        col * span - margin,
        row * span - margin,
        (col + 1) * span + margin,
        (row + 1) * span + margin,
    )


def _tiles_in(bucket: int, bounds) -> list[TileKey]:
    """Tiles of ``bucket`` covering a level-0 box, nearest its centre first."""
    span = TILE * bucket_downsample(bucket)
    x0, y0, x1, y1 = bounds
    cols = range(math.floor(x0 / span), math.floor(x1 / span) + 1)
    rows = range(math.floor(y0 / span), math.floor(y1 / span) + 1)
    cx, cy = (x0 + x1) / 2 / span - 0.5, (y0 + y1) / 2 / span - 0.5
    keys = [(bucket, c, r) for r in rows for c in cols]
    return sorted(keys, key=lambda k: (k[1] - cx) ** 2 + (k[2] - cy) ** 2)


def _screen_bounds(matrix: np.ndarray, width: int, height: int):
    """Level-0 bounding box of a ``width`` x ``height`` screen under ``matrix`` (unclipped)."""
    inverse = np.linalg.inv(matrix)
    corners = np.array([[0, 0, 1], [width, 0, 1], [0, height, 1], [width, height, 1]], float)
    points = corners @ inverse.T
    xs, ys = points[:, 0], points[:, 1]
    return float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max())


def _inside(coords: np.ndarray, box) -> np.ndarray:
    """The rows of ``coords`` (N x 2, sorted by x) inside a level-0 box ``(x0, y0, x1, y1)``."""
    x0, y0, x1, y1 = box
    start = np.searchsorted(coords[:, 0], x0, side="left")
    stop = np.searchsorted(coords[:, 0], x1, side="right")
    band = coords[start:stop]
    return band[(band[:, 1] >= y0) & (band[:, 1] <= y1)]


def _to_screen(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Map ``(N, 2)`` level-0 points to screen pixels."""
    return points[:, :2] @ matrix[:2, :2].T + matrix[:2, 2]
