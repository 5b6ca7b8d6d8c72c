"""The slide view: a map-like, tile-by-tile renderer of one slide and its overlay layers.

The view's state and all its maths (level-0 <-> screen matrix, visible bounds,
fit, zoom and pan with their clamps, target level, tile plan) live in the Qt-free
:class:`~her2viewer.viewport.Viewport`; the view paints and handles input. Pixels
come only from the shared :class:`TileCache` (slide tiles, or slide tiles with the
shown layers blended in on a worker); missing tiles are requested from the
:class:`TileLoader` (centre outward, stale requests replaced) and drawn meanwhile
from the finest cached coarser or finer tiles, over an always-present overview
image, so the view is never blank. The overview is drawn as the tiles are (display
settings, shown layers), made on a worker from the raw one, which stands in meanwhile.
"""

from __future__ import annotations

import itertools
import math
import time
from collections import deque
from dataclasses import dataclass, replace
from functools import partial

import numpy as np
from PySide6.QtCore import QPointF, QRect, QRectF, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QFont, QPainter, QPen, QTransform
from PySide6.QtWidgets import QWidget

from her2viewer.gui.tiles import (
    QUEUED,
    CachedTile,
    TileKey,
    TileLoader,
    compose_tile,
    display_tile,
    layer_tile,
    read_virtual_tile,
    rgb_to_image,
)
from her2viewer.overlay.display import DisplaySettings
from her2viewer.overlay.layers import OverlayLayer
from her2viewer.overlay.scalebar import scale_bar
from her2viewer.viewport import (
    FINER,
    TILE_SIZE,
    Viewport,
    ViewState,
    tile_region,
)

#: Magnification presets offered (only those up to the slide's own are enabled).
MAG_PRESETS = (1.25, 2.5, 5.0, 10.0, 20.0, 40.0)
OVERVIEW_SIZE = 1024
OVERVIEW_LEVEL = -1
BACKGROUND = QColor(38, 40, 44)
ZOOM_STEP = 1.5
WHEEL_ZOOM_PER_NOTCH = 1.25
INERTIA_DECAY = 0.90
#: Milliseconds without movement after which the view is redrawn with smooth scaling.
SETTLE_MS = 150
MAX_REMEMBERED_OVERLAYS = 4096
#: Tile requests are re-planned at most this often (ms) while the view moves.
SUBMIT_MS = 20
#: Tiles arriving within this many ms of each other are shown by one repaint.
REPAINT_MS = 30
#: How many coarser levels are searched for a placeholder before the overview is used.
MAX_FALLBACK_LEVELS = 4
_sources = itertools.count(1)


@dataclass
class PaintStats:
    """Figures of the last painted frame."""

    ms: float = 0.0
    tiles: int = 0
    missing: int = 0
    right_level_fraction: float = 1.0
    level: int = 0


def produce_tile(
    cache, slide, source: int, layers: dict, signature: tuple, level: int, col: int, row: int
) -> CachedTile:
    """Make the tile drawn at a place, on a worker thread: read the slide tile (unless
    cached) and blend each shown layer's tile over it, rendering and caching layer tiles
    as needed. Without shown layers the slide tile itself is returned. A signature that
    starts with the pane's :class:`DisplaySettings` applies them to the slide tile first.
    The place of level :data:`OVERVIEW_LEVEL` is the whole slide's overview."""
    slide_key = TileKey("slide", source, 0, level, col, row)
    base = cache.peek(slide_key)
    if base is None:
        base = rgb_to_image(_read_place(slide, level, col, row))
        if signature:
            cache.put(slide_key, base)
    if not signature:
        return base
    if isinstance(signature[0], DisplaySettings):  # levels or a stain view, before layers
        base = display_tile(base, signature[0])
        signature = signature[1:]
        if not signature:
            return base
    region = _place_region(slide.info, level, col, row)
    size = base.array.shape[1::-1]  # the layers' pixels match the slide's
    parts = []
    for uid, version, opacity in signature:
        key = TileKey("layer", uid, version, level, col, row)
        tile = cache.peek(key)
        if tile is None:
            tile = layer_tile(layers[uid].render(region, size))
            cache.put(key, tile)
        parts.append((tile, opacity))
    return compose_tile(base, parts)


def _read_place(slide, level: int, col: int, row: int) -> np.ndarray:
    """The slide's RGB pixels of a place: a virtual tile, or the overview (thumbnail)."""
    if level == OVERVIEW_LEVEL:
        return slide.thumbnail(OVERVIEW_SIZE)
    return read_virtual_tile(slide, level, col, row)


def _place_region(info, level: int, col: int, row: int) -> tuple[int, int, int, int]:
    """Level-0 ``(x, y, w, h)`` of a place: a tile's, or the whole slide for the overview."""
    if level == OVERVIEW_LEVEL:
        return 0, 0, info.width, info.height
    return tile_region(level, col, row, info.width, info.height)


class SlideView(QWidget):
    """Draws one slide pyramid with its overlay layers and handles navigation.

    Signals
    -------
    view_changed()
        The centre, zoom or rotation changed.
    cursor_moved(x, y)
        The level-0 point under the mouse (NaN when the mouse left the view).
    overview_ready()
        The slide's raw overview image has been loaded.
    overview_changed()
        What :attr:`displayed_overview` shows may have changed: an overview arrived, or
        the display settings or layers changed.
    activated()
        The user clicked into the view.
    """

    view_changed = Signal()
    cursor_moved = Signal(float, float)
    overview_ready = Signal()
    overview_changed = Signal()
    activated = Signal()
    layers_changed = Signal()

    def __init__(self, loader: TileLoader, title: str = "", parent: QWidget | None = None):
        super().__init__(parent)
        self.loader = loader
        self.cache = loader.cache
        self.title = title
        self.message: str | None = None
        self.slide = None
        self.layers: list[OverlayLayer] = []  # bottom to top
        #: How the slide's pixels are drawn (levels, stain view): see :meth:`set_display`.
        self.display = DisplaySettings()
        self._viewport = Viewport()
        self.crosshair: tuple[float, float] | None = None
        self.sync_enabled = True
        self.show_hud = True
        #: False hides every overlay layer at once, keeping each one's own visibility.
        self.overlays_shown = True
        #: The annotation tool (see ``gui.annotations``): mouse and key events go to it
        #: first, and when it takes one (returns True) the view does not pan. None: pan/zoom.
        self.tool = None
        #: Objects with ``paint(painter, view)`` drawing vectors (annotations) over the tiles,
        #: in screen coordinates, before the HUD.
        self.vector_painters: list = []
        self.stats = PaintStats()
        self.frame_ms: deque[float] = deque(maxlen=10000)
        self._source = 0
        self._owner = id(self)
        self._drag_pos: QPointF | None = None
        self._velocity = QPointF()
        self._moves: deque[tuple[float, QPointF]] = deque(maxlen=6)
        self._zoom_target: float | None = None
        self._zoom_anchor = QPointF()
        self._animator = QTimer(self, interval=16, timeout=self._animate)
        self._schedule_pending = False
        self._stopped = False  # the window is closing: no more tile requests
        self._last_composed: dict[tuple[int, int, int], TileKey] = {}
        self._overview_drawn: TileKey | None = None  # the displayed overview drawn last
        self._moving = False
        self._settled = QTimer(self, singleShot=True, interval=SETTLE_MS, timeout=self._on_settled)
        self._repaint_timer = QTimer(
            self, singleShot=True, interval=REPAINT_MS, timeout=self.update
        )
        self.setMouseTracking(True)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setMinimumSize(200, 150)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)
        loader.tile_ready.connect(self._on_tile_ready, QUEUED)

    # -- slide and layers ----------------------------------------------------------
    def set_slide(self, slide, title: str | None = None) -> None:
        """Show ``slide`` (an open :class:`~her2viewer.slide.Slide`), fitted to the view."""
        self.loader.cancel(self._owner)
        self.slide = slide
        self.message = None
        self.layers = []
        self.display = DisplaySettings()
        self.crosshair = None
        self._source = next(_sources)
        self._last_composed.clear()
        self._overview_drawn = None
        self._viewport.set_slide_size(slide.info.width, slide.info.height)
        if title is not None:
            self.title = title
        self.fit()
        self._submit_requests()  # the overview is asked for at once: it is the first frame
        self.layers_changed.emit()

    def set_message(self, text: str | None) -> None:
        """Show ``text`` (e.g. "opening he.svs…") over the pane; ``None`` takes it away."""
        self.message = text
        self.update()

    def add_layer(self, layer: OverlayLayer) -> None:
        """Put ``layer`` on top of the stack."""
        self.layers.append(layer)
        self.layers_changed.emit()
        self.refresh()

    def remove_layer(self, layer: OverlayLayer) -> None:
        """Take ``layer`` off the stack."""
        self.layers.remove(layer)
        self.layers_changed.emit()
        self.refresh()

    def move_layer(self, layer: OverlayLayer, steps: int) -> None:
        """Move ``layer`` up (positive) or down the stack."""
        index = self.layers.index(layer)
        new = min(max(index + steps, 0), len(self.layers) - 1)
        self.layers.insert(new, self.layers.pop(index))
        self.layers_changed.emit()
        self.refresh()

    def set_display(self, display: DisplaySettings) -> None:
        """Draw the slide with ``display``; the tiles shown stay until redrawn (no flicker)."""
        self.display = display
        self.refresh()

    def refresh(self) -> None:
        """Re-request tiles (e.g. after a layer's colours changed) and repaint."""
        self._schedule()
        self.update()
        self.overview_changed.emit()

    @property
    def overview(self):
        """The cached overview tile (``image`` is a QImage) or ``None`` while it loads."""
        if self.slide is None:
            return None
        return self.cache.peek(TileKey("slide", self._source, 0, OVERVIEW_LEVEL, 0, 0))

    @property
    def displayed_overview(self):
        """The overview as the tiles are drawn (display settings, shown layers) when it is
        cached; until then the one drawn last, else the raw :attr:`overview` (``None`` while
        that loads). Never reads: it is made by the tile workers."""
        if self.slide is None:
            return None
        key = self._tile_key(self.overlay_signature(), OVERVIEW_LEVEL, 0, 0)
        tile = self.cache.get(key, count=False)  # kept as recently used while it is drawn
        if tile is not None:
            self._overview_drawn = key
            return tile
        last = self.cache.peek(self._overview_drawn) if self._overview_drawn else None
        return last if last is not None else self.overview

    # -- the model ----------------------------------------------------------------
    @property
    def viewport(self) -> Viewport:
        """The view's Qt-free model, sized to the widget as it is now."""
        viewport = self._viewport
        viewport.screen_width, viewport.screen_height = self.width(), self.height()
        return viewport

    @property
    def state(self) -> ViewState:
        """Where the view looks (see :class:`~her2viewer.viewport.ViewState`)."""
        return self._viewport.state

    @property
    def keep_fit(self) -> bool:
        """Whether the view shows a fitted state (refitted when resized)."""
        return self._viewport.keep_fit

    # -- coordinates ---------------------------------------------------------------
    def level0_to_screen_matrix(self) -> np.ndarray:
        """Return the 3x3 matrix mapping level-0 pixels to widget pixels."""
        return self.viewport.l0_to_screen_matrix()

    def screen_to_level0(self, x: float, y: float) -> tuple[float, float]:
        """Level-0 point under widget pixel ``(x, y)``."""
        return self.viewport.screen_to_l0(x, y)

    def level0_to_screen(self, x: float, y: float) -> tuple[float, float]:
        """Widget pixel showing level-0 point ``(x, y)``."""
        return self.viewport.l0_to_screen(x, y)

    def _qtransform(self) -> QTransform:
        m = self.level0_to_screen_matrix()
        return QTransform(m[0, 0], m[1, 0], m[0, 1], m[1, 1], m[0, 2], m[1, 2])

    def visible_bounds(self) -> tuple[float, float, float, float]:
        """Level-0 bounding box ``(x0, y0, x1, y1)`` of the viewport, clipped to the slide."""
        return self.viewport.l0_visible_bounds()

    # -- navigation ----------------------------------------------------------------
    def fit_downsample(self) -> float:
        """Downsample at which the whole slide fits the view."""
        return self.viewport.fit_downsample()

    def set_state(
        self, state: ViewState, notify: bool = True, keep_fit: bool = False, clamp: bool = True
    ) -> None:
        """Move the view to ``state`` and request its tiles.

        ``keep_fit`` says the state is a fitted one, to be refitted on resize; ``clamp``
        keeps the zoom in range (synced panes follow the zoom unclamped). The slide always
        stays in sight; a state that is not finite is ignored.
        """
        if self.slide is None or not self.viewport.set_state(state, keep_fit, clamp):
            return
        self._moving = True  # draw with fast scaling until the view rests
        self._settled.start()
        self._schedule()
        self.update()
        if notify:
            self.view_changed.emit()

    def fit(self) -> None:
        """Show the whole slide (Home)."""
        self.set_state(self.viewport.fit_state(), keep_fit=True)  # refitted until navigated

    def zoom_at(self, factor: float, pos: QPointF | None = None) -> None:
        """Zoom by ``factor`` (>1 magnifies) keeping the level-0 point under ``pos`` fixed."""
        if self.slide is None:
            return
        pos = pos if pos is not None else QPointF(self.width() / 2, self.height() / 2)
        self.set_state(self.viewport.zoomed_at(factor, pos.x(), pos.y()))

    def pan_by(self, dx: float, dy: float) -> None:
        """Move the content by ``(dx, dy)`` screen pixels (as a drag does)."""
        self.set_state(self.viewport.panned_by(dx, dy))

    def center_on(self, x: float, y: float) -> None:
        """Centre the view on a level-0 point, keeping the zoom."""
        self.set_state(self.viewport.centred_on(x, y))

    def magnification(self) -> float | None:
        """Current magnification, ``None`` when the slide has neither power nor mpp."""
        power = self.slide.info.magnification if self.slide else None
        return power / self.state.downsample if power else None

    def available_presets(self) -> list[float]:
        """Magnification presets this slide supports (up to its own power)."""
        power = self.slide.info.magnification if self.slide else None
        return [m for m in MAG_PRESETS if power and m <= power * 1.001]

    def preset_refusal(self, magnification: float) -> str | None:
        """Why preset ``magnification`` cannot apply to this slide; None when it can."""
        if self.slide is None:
            return "Open a slide first."
        power = self.slide.info.magnification
        if not power:
            return "This slide records neither objective power nor pixel size."
        if magnification not in self.available_presets():
            return f"Finer than this slide's {power:g}x scan."
        return None

    def set_magnification(self, magnification: float) -> None:
        """Zoom about the centre to ``magnification`` (e.g. 10 for 10x)."""
        ds = self.slide.downsample_for_magnification(magnification)
        self.set_state(replace(self.state, downsample=ds))

    def smooth_zoom(self, factor: float, pos: QPointF) -> None:
        """Start or extend an animated zoom about ``pos``."""
        base = self._zoom_target if self._zoom_target is not None else self.state.downsample
        self._zoom_target = self.viewport.clamp_downsample(base / factor)
        self._zoom_anchor = QPointF(pos)
        self._velocity = QPointF()
        self._animator.start()

    def _animate(self) -> None:
        if self._zoom_target is not None:
            ratio = self.state.downsample / self._zoom_target
            step = ratio**0.35 if abs(math.log(ratio)) > 0.01 else ratio
            self.zoom_at(step, self._zoom_anchor)
            if step == ratio:
                self._zoom_target = None
        if abs(self._velocity.x()) + abs(self._velocity.y()) > 0.5:
            self.pan_by(self._velocity.x(), self._velocity.y())
            self._velocity *= INERTIA_DECAY
        else:
            self._velocity = QPointF()
        if self._zoom_target is None and self._velocity.isNull():
            self._animator.stop()

    def _on_settled(self) -> None:
        self._moving = False
        self.update()

    # -- tile requests -------------------------------------------------------------
    def target_level(self) -> int:
        """Virtual level drawn at the current zoom (see :meth:`Viewport.target_level`)."""
        return self.viewport.target_level()

    def overlay_signature(self) -> tuple:
        """What the composed tiles depend on: the display settings (unless neutral), then
        the shown layers, versions, opacities."""
        shown = tuple(
            (layer.uid, layer.version, round(layer.opacity, 3))
            for layer in self.layers
            if layer.visible and layer.opacity > 0 and self.overlays_shown
        )
        return shown if self.display.neutral else (self.display, *shown)

    def _tile_key(self, signature: tuple, level: int, col: int, row: int) -> TileKey:
        """Key of the tile drawn at a place: the slide itself, or slide + shown layers."""
        if not signature:
            return TileKey("slide", self._source, 0, level, col, row)
        return TileKey("composed", self._source, hash(signature), level, col, row)

    def _tile_producer(self, signature, level, col, row, layers: dict | None = None):
        """The job making the tile of a place (see :func:`produce_tile`)."""
        if layers is None:
            layers = {layer.uid: layer for layer in self.layers}
        return partial(
            produce_tile, self.cache, self.slide, self._source, layers, signature, level, col, row
        )

    def _schedule(self) -> None:
        if not self._schedule_pending:
            self._schedule_pending = True
            QTimer.singleShot(SUBMIT_MS, self._submit_requests)

    def request_list(self) -> list[tuple[tuple, TileKey, object]]:
        """Every tile wanted now: visible, placeholder, ring and next-level, best first."""
        if self.slide is None or self.width() <= 0:
            return []
        signature = self.overlay_signature()
        layers = {layer.uid: layer for layer in self.layers}
        # the overview first; as the tiles are drawn once it is cached (made from it)
        overviews = [(), signature] if signature and self.overview is not None else [()]
        requests = [
            (
                (-1, float(rank)),
                self._tile_key(wanted, OVERVIEW_LEVEL, 0, 0),
                self._tile_producer(wanted, OVERVIEW_LEVEL, 0, 0, layers),
            )
            for rank, wanted in enumerate(overviews)
        ]
        for tile in self.viewport.tile_plan():
            wanted = () if tile.rank == FINER else signature  # the finer prefetch: slide only
            place = (tile.level, tile.col, tile.row)
            requests.append(
                (
                    tile.priority,
                    self._tile_key(wanted, *place),
                    self._tile_producer(wanted, *place, layers),
                )
            )
        return requests

    def _submit_requests(self) -> None:
        self._schedule_pending = False
        if not self._stopped:
            self.loader.submit(self._owner, self.request_list())

    def stop_loading(self) -> None:
        """Ask for no more tiles, and drop those asked for (the window is closing, its
        slides about to close): a submit still queued on the timer is not sent."""
        self._stopped = True
        self.loader.cancel(self._owner)

    def _on_tile_ready(self, owner: int, key: TileKey) -> None:
        if owner != self._owner or self.slide is None:
            return
        if key.level == OVERVIEW_LEVEL:
            if key.kind == "slide":
                if self.overlay_signature():
                    self._schedule()  # the overview as drawn can be made from it now
                self.overview_ready.emit()
            self.update()
            self.overview_changed.emit()
        elif self._shows(key) and not self._repaint_timer.isActive():
            self._repaint_timer.start()  # tiles arriving together share one repaint

    def _shows(self, key: TileKey) -> bool:
        """Whether a newly cached tile changes what is drawn now (prefetched ones do not)."""
        if key.level < self.target_level() and not self.stats.missing:
            return False
        info = self.slide.info
        x, y, w, h = tile_region(key.level, key.col, key.row, info.width, info.height)
        x0, y0, x1, y1 = self.visible_bounds()
        return x < x1 and y < y1 and x + w > x0 and y + h > y0

    def request_slide_tiles(
        self, owner: int, level: int, tiles: list[tuple[int, int]], signature: tuple = ()
    ) -> None:
        """Ask the loader, for ``owner`` (e.g. a magnifier), for the tiles of ``level`` at
        ``(col, row)`` places, in order (cached ones are skipped): the slide's own, or as
        the pane draws them with ``signature`` (:meth:`overlay_signature`)."""
        if self._stopped:
            return
        layers = {layer.uid: layer for layer in self.layers}
        self.loader.submit(
            owner,
            [
                (
                    (0, i),
                    self._tile_key(signature, level, c, r),
                    self._tile_producer(signature, level, c, r, layers),
                )
                for i, (c, r) in enumerate(tiles)
            ],
        )

    def cached_slide_tile(
        self, level: int, col: int, row: int, signature: tuple = ()
    ) -> CachedTile | None:
        """The slide's own tile of a place (no layers), or the one drawn with ``signature``,
        when it is cached; never reads."""
        return self.cache.peek(self._tile_key(signature, level, col, row))

    def fully_loaded(self) -> bool:
        """Whether the pane shows its final picture: the view at rest (drawn with smooth
        scaling, not the fast scaling of a move) and the overview and all visible
        target-level tiles cached as the pane draws them (display settings, layers)."""
        if self.slide is None:
            return True
        if self._moving:
            return False
        level = self.target_level()
        places = [(OVERVIEW_LEVEL, 0, 0)]
        places += [(level, c, r) for c, r in self.viewport.tiles_in(level, self.visible_bounds())]
        signature = self.overlay_signature()
        return all(self.cache.peek(self._tile_key(signature, *p)) is not None for p in places)

    # -- painting ------------------------------------------------------------------
    def paintEvent(self, event) -> None:  # noqa: N802 - Qt override
        with self.loader.painting():
            self._paint(event)

    def _paint(self, event) -> None:
        start = time.perf_counter()
        painter = QPainter(self)
        painter.fillRect(self.rect(), BACKGROUND)
        if self.slide is None:
            self._paint_empty(painter)
        else:
            self._paint_slide(painter)
            self._paint_vectors(painter)
            if self.show_hud:
                self._paint_hud(painter)
            if self.message:
                self._paint_message(painter)
        painter.end()
        self.stats.ms = (time.perf_counter() - start) * 1000
        self.frame_ms.append(self.stats.ms)

    def _paint_empty(self, painter: QPainter) -> None:
        painter.setPen(QColor(170, 170, 170))
        painter.drawText(
            self.rect(),
            Qt.AlignmentFlag.AlignCenter,
            self.message or "Open a slide: File ▸ Open, drag a file here, or her2viewer view SLIDE",
        )

    def _paint_slide(self, painter: QPainter) -> None:
        rotated = abs(self.state.angle) > 1e-9 or self.state.flip
        smooth = self.state.downsample >= 1 and not self._moving
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, smooth)
        if rotated:
            painter.setTransform(self._qtransform())
        self._place = self._placer(rotated)
        bounds = self.visible_bounds()
        level = self.target_level()
        tiles = self.viewport.tiles_in(level, bounds)
        signature = self.overlay_signature()
        found = [self._drawable(signature, level, c, r) for c, r in tiles]
        missing = [t for t, tile in zip(tiles, found, strict=True) if tile is None]
        if missing:
            self._paint_placeholders(painter, signature, level, missing)
        for (col, row), tile in zip(tiles, found, strict=True):
            if tile is not None:
                self._draw_tile(painter, tile, level, col, row)
        drawn = len(found) - found.count(None)
        self.stats = PaintStats(
            0.0, len(tiles), len(tiles) - drawn, drawn / len(tiles) if tiles else 1.0, level
        )
        painter.resetTransform()

    def _drawable(self, signature: tuple, level: int, col: int, row: int) -> CachedTile | None:
        """The tile to draw at a place. While a changed layer setting (opacity, toggle) is
        re-blended, the tile last drawn there stays, so layer controls never flicker."""
        key = self._tile_key(signature, level, col, row)
        tile = self.cache.get(key)
        if not signature:
            return tile
        if len(self._last_composed) > MAX_REMEMBERED_OVERLAYS:
            self._last_composed.clear()
        if tile is not None:
            self._last_composed[(level, col, row)] = key
            return tile
        previous = self._last_composed.get((level, col, row))
        return self.cache.peek(previous) if previous is not None else None

    def _paint_placeholders(self, painter, signature, level, missing) -> None:
        """Fill each place whose tile is still loading with one draw of the best cached
        stand-in: a coarser tile with the layers, the bare slide tile, a coarser slide
        tile, the finer tiles (zooming out), else the displayed overview (white until the
        overview loads). Bare slide tiles stand in only while the display is neutral: with
        levels or a stain view their colours would be wrong, and the overview's are right."""
        info = self.slide.info
        kinds = [("composed", hash(signature))] if signature else []
        if self.display.neutral:
            kinds.append(("slide", 0))
        for col, row in missing:
            region = tile_region(level, col, row, info.width, info.height)
            dest = self._place(*region)
            stand_in = self._stand_in(kinds, level, col, row, region)
            if stand_in is not None:
                painter.drawImage(QRectF(dest), *stand_in)
            elif not self._draw_children(painter, kinds, level, col, row):
                self._draw_from_overview(painter, dest, region)

    def _stand_in(self, kinds, level, col, row, region):
        """``(image, source rect)`` of the finest cached tile covering a place, or None."""
        ups = list(range(1, MAX_FALLBACK_LEVELS))
        ancestors = [(kinds[0], up) for up in ups]
        if len(kinds) > 1:  # then the bare slide tile of this place, then coarser slide tiles
            ancestors += [(kinds[1], up) for up in [0, *ups]]
        for (kind, version), up in ancestors:
            if level + up >= self._viewport.levels:
                continue
            key = TileKey(kind, self._source, version, level + up, col >> up, row >> up)
            tile = self.cache.peek(key)
            if tile is not None and tile.image is not None:
                scale = 1 << (level + up)
                span = TILE_SIZE << (level + up)
                x, y, w, h = region
                source = QRectF(
                    (x - key.col * span) / scale, (y - key.row * span) / scale, w / scale, h / scale
                )
                return tile.image, source
        return None

    def _draw_children(self, painter, kinds, level, col, row) -> bool:
        """Draw the four finer cached tiles of a place (zooming out); whether all were."""
        if level == 0:
            return False
        for kind, version in kinds:
            keys = [
                TileKey(kind, self._source, version, level - 1, col * 2 + dc, row * 2 + dr)
                for dr in (0, 1)
                for dc in (0, 1)
            ]
            tiles = [self.cache.peek(key) for key in keys]
            if all(tile is not None for tile in tiles):
                for key, tile in zip(keys, tiles, strict=True):
                    self._draw_tile(painter, tile, key.level, key.col, key.row)
                return True
        return False

    def _draw_from_overview(self, painter, dest, region) -> None:
        overview = self.displayed_overview
        if overview is None:
            painter.fillRect(dest, Qt.GlobalColor.white)
            return
        sx = overview.image.width() / self.slide.info.width
        sy = overview.image.height() / self.slide.info.height
        x, y, w, h = region
        painter.drawImage(QRectF(dest), overview.image, QRectF(x * sx, y * sy, w * sx, h * sy))

    def _placer(self, rotated: bool):
        """Return a function mapping a level-0 rect to the rect to draw into."""
        if rotated:
            return lambda x, y, w, h: QRectF(x, y, w, h)
        screen_rect = self.viewport.screen_rect_mapper()
        return lambda x, y, w, h: QRect(*screen_rect(x, y, w, h))

    def _draw_tile(self, painter, tile, level, col, row) -> None:
        if tile.image is not None:
            info = self.slide.info
            painter.drawImage(
                self._place(*tile_region(level, col, row, info.width, info.height)), tile.image
            )

    def _paint_vectors(self, painter: QPainter) -> None:
        """Let each of :attr:`vector_painters` draw, each with the painter's state restored."""
        for vector_painter in self.vector_painters:
            painter.save()
            vector_painter.paint(painter, self)
            painter.restore()

    def _paint_hud(self, painter: QPainter) -> None:
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        font = QFont(self.font())
        font.setPointSizeF(9.5)
        painter.setFont(font)
        mag = self.magnification()
        text = f"{mag:.2f}x" if mag else f"downsample {self.state.downsample:.2f} (no mpp)"
        if self.title:
            text = f"{self.title}   {text}"
        self._label(painter, QPointF(10, 10), text)
        length, label = scale_bar(self.state.downsample, self.slide.info.mpp_x)
        x0, y0 = 16.0, self.height() - 22.0
        width = max(length, painter.fontMetrics().horizontalAdvance(label) + 4)
        box = QRectF(x0 - 8, y0 - 22, width + 16, 34)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(QColor(20, 20, 24, 170))
        painter.drawRoundedRect(box, 5, 5)
        painter.setPen(QPen(QColor(245, 245, 245), 3))
        painter.drawLine(QPointF(x0, y0), QPointF(x0 + length, y0))
        painter.drawLine(QPointF(x0, y0 - 5), QPointF(x0, y0 + 3))
        painter.drawLine(QPointF(x0 + length, y0 - 5), QPointF(x0 + length, y0 + 3))
        painter.drawText(QRectF(x0, y0 - 21, width, 16), Qt.AlignmentFlag.AlignLeft, label)
        if self.crosshair is not None:
            sx, sy = self.level0_to_screen(*self.crosshair)
            painter.setPen(QPen(QColor(0, 230, 255), 1.5))
            painter.drawLine(QPointF(sx - 14, sy), QPointF(sx + 14, sy))
            painter.drawLine(QPointF(sx, sy - 14), QPointF(sx, sy + 14))
            painter.drawEllipse(QPointF(sx, sy), 4, 4)

    def _paint_message(self, painter: QPainter) -> None:
        """The pane's message (e.g. "opening he.svs…") centred over the slide."""
        width = painter.fontMetrics().horizontalAdvance(self.message) + 16
        self._label(painter, QPointF((self.width() - width) / 2, self.height() / 2), self.message)

    def _label(self, painter: QPainter, at: QPointF, text: str) -> None:
        metrics = painter.fontMetrics()
        rect = QRectF(at.x(), at.y(), metrics.horizontalAdvance(text) + 16, metrics.height() + 8)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(QColor(20, 20, 24, 170))
        painter.drawRoundedRect(rect, 5, 5)
        painter.setPen(QColor(245, 245, 245))
        painter.drawText(rect, Qt.AlignmentFlag.AlignCenter, text)

    # -- input ---------------------------------------------------------------------
    def _tool_takes(self, method: str, event) -> bool:
        """Offer an input event to :attr:`tool` (``press``, ``move``, ...); whether it took it."""
        return (
            self.tool is not None
            and self.slide is not None
            and getattr(self.tool, method)(self, event)
        )

    def wheelEvent(self, event) -> None:  # noqa: N802 - Qt override
        delta = event.angleDelta().y()
        if delta and self.slide is not None:
            self.smooth_zoom(WHEEL_ZOOM_PER_NOTCH ** (delta / 120), event.position())
        event.accept()

    def mousePressEvent(self, event) -> None:  # noqa: N802 - Qt override
        self.activated.emit()
        if self._tool_takes("press", event):
            return
        if event.button() == Qt.MouseButton.LeftButton:
            self._drag_pos = event.position()
            self._velocity = QPointF()
            self._moves.clear()
            self.setCursor(Qt.CursorShape.ClosedHandCursor)

    def mouseMoveEvent(self, event) -> None:  # noqa: N802 - Qt override
        pos = event.position()
        taken = self._tool_takes("move", event)
        if not taken and self._drag_pos is not None and self.slide is not None:
            delta = pos - self._drag_pos
            self._drag_pos = pos
            self._moves.append((time.perf_counter(), delta))
            self.pan_by(delta.x(), delta.y())
        if self.slide is not None:
            self.cursor_moved.emit(*self.screen_to_level0(pos.x(), pos.y()))

    def mouseReleaseEvent(self, event) -> None:  # noqa: N802 - Qt override
        if self._tool_takes("release", event) or self._drag_pos is None:
            return
        self._drag_pos = None
        self.unsetCursor()
        recent = [d for t, d in self._moves if time.perf_counter() - t < 0.08]
        if recent:
            self._velocity = sum(recent, QPointF()) / len(recent)
            self._animator.start()

    def mouseDoubleClickEvent(self, event) -> None:  # noqa: N802 - Qt override
        if self._tool_takes("double_click", event):
            return
        if self.slide is not None:
            shift = event.modifiers() & Qt.KeyboardModifier.ShiftModifier
            self.smooth_zoom(0.5 if shift else 2.0, event.position())

    def leaveEvent(self, event) -> None:  # noqa: N802 - Qt override
        self.cursor_moved.emit(math.nan, math.nan)

    def keyPressEvent(self, event) -> None:  # noqa: N802 - Qt override
        if self.slide is None:
            return super().keyPressEvent(event)
        if self._tool_takes("key", event):
            return None
        key = event.key()
        step_x, step_y = self.width() * 0.2, self.height() * 0.2
        moves = {
            Qt.Key.Key_Left: (step_x, 0),
            Qt.Key.Key_Right: (-step_x, 0),
            Qt.Key.Key_Up: (0, step_y),
            Qt.Key.Key_Down: (0, -step_y),
        }
        if key in moves:
            self.pan_by(*moves[key])
        elif key in (Qt.Key.Key_Plus, Qt.Key.Key_Equal):
            self.zoom_at(ZOOM_STEP)
        elif key == Qt.Key.Key_Minus:
            self.zoom_at(1 / ZOOM_STEP)
        elif key == Qt.Key.Key_Home:
            self.fit()
        else:
            super().keyPressEvent(event)

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt override
        if self.slide is not None:
            if self.keep_fit:
                self.fit()
            else:
                self.set_state(self.state)
        super().resizeEvent(event)
