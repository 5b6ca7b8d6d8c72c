"""Tile machinery of the viewer: a byte-bounded LRU cache and a background loader.

Tiles live on a power-of-two grid of *virtual levels*: virtual level ``k`` has a
downsample of ``2**k`` level-0 pixels per tile pixel and tiles of
:data:`TILE_SIZE` pixels. A virtual tile is read from the slide's best pyramid level
(``Slide.best_level_for_downsample``) and shrunk in the worker, so the GUI never
draws an image shrunk by more than 2x and never touches the disk.

The loader runs a few worker threads that take requests from one priority queue.
Each owner (a slide view) replaces its whole set of pending requests every time
its viewport changes, so requests for tiles that left the viewport are dropped
before they are read. While requests are queued or running the loader is marked busy
in :data:`her2viewer.jobs.core.FOREGROUND`, so background analyses wait for the tiles.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import heapq
import itertools
import math
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field

import cv2
import numpy as np
from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QImage

from her2viewer.jobs.core import FOREGROUND, lower_thread_priority
from her2viewer.overlay.display import DisplaySettings, apply_display
from her2viewer.viewport import tile_pixels, tile_region  # the Qt-free tile grid

#: How much nicer (lower priority) tile workers are than the GUI thread.
WORKER_NICENESS = 5
DEFAULT_CACHE_MB = 512
#: Bytes charged for a cached "nothing here" layer tile.
EMPTY_TILE_BYTES = 64


@dataclass(frozen=True)
class TileKey:
    """Identifies one cached tile: whose pixels (``kind``, ``source``, ``version``) and where.

    ``kind`` is ``"slide"``, ``"layer"`` or ``"composed"``, so their ids never collide.
    """

    kind: str
    source: int
    version: int
    level: int
    col: int
    row: int


class CachedTile:
    """A decoded tile; ``image`` is ``None`` for layer pixels kept only for blending."""

    __slots__ = ("image", "array", "nbytes")

    def __init__(self, image: QImage | None, array: np.ndarray | None):
        self.image = image
        self.array = array  # keeps the pixels the QImage points at alive
        self.nbytes = array.nbytes if array is not None else EMPTY_TILE_BYTES


def rgb_to_image(rgb: np.ndarray) -> CachedTile:
    """Wrap an RGB uint8 array as an opaque 32-bit tile (converted once, off the GUI thread)."""
    bgra = np.ascontiguousarray(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGRA))
    height, width = bgra.shape[:2]
    image = QImage(bgra.data, width, height, width * 4, QImage.Format.Format_RGB32)
    return CachedTile(image, bgra)


def display_tile(base: CachedTile, display: DisplaySettings) -> CachedTile:
    """A slide tile as a pane's levels and stain view draw it (on a worker thread)."""
    rgb = cv2.cvtColor(base.array, cv2.COLOR_BGRA2RGB)
    return rgb_to_image(apply_display(rgb, display))


def layer_tile(rgba: np.ndarray | None) -> CachedTile:
    """Keep a layer's straight-alpha RGBA pixels for compositing (never drawn by itself)."""
    return CachedTile(None, rgba)


def compose_tile(base: CachedTile, layers: list[tuple[CachedTile, float]]) -> CachedTile:
    """Blend layer tiles (bottom first, straight RGBA, with opacities) over a slide tile.

    The result is one opaque tile, so the GUI thread draws a single opaque blit per
    screen tile however many layers are shown; done on a worker thread.
    """
    bgra = base.array.copy()
    for tile, opacity in layers:
        if tile.array is None:
            continue
        over = cv2.cvtColor(tile.array, cv2.COLOR_RGBA2BGRA)
        weight = tile.array[..., 3].astype(np.float32) * np.float32(opacity / 255.0)
        bgra = cv2.blendLinear(bgra, over, 1.0 - weight, weight)
    bgra[..., 3] = 255
    height, width = bgra.shape[:2]
    image = QImage(bgra.data, width, height, width * 4, QImage.Format.Format_RGB32)
    return CachedTile(image, bgra)


class TileCache:
    """Thread-safe LRU cache of decoded tiles bounded by bytes, shared by all panes.

    Parameters
    ----------
    limit_mb : float
        Most megabytes of decoded pixels kept.
    """

    def __init__(self, limit_mb: float = DEFAULT_CACHE_MB):
        self.limit_bytes = int(limit_mb * 1024 * 1024)
        self._tiles: OrderedDict[TileKey, CachedTile] = OrderedDict()
        self._lock = threading.Lock()
        self.nbytes = 0
        self.hits = 0
        self.misses = 0

    def get(self, key: TileKey, count: bool = True) -> CachedTile | None:
        """Return a cached tile (and mark it recently used) or ``None``."""
        with self._lock:
            tile = self._tiles.get(key)
            if tile is not None:
                self._tiles.move_to_end(key)
            if count:
                if tile is None:
                    self.misses += 1
                else:
                    self.hits += 1
            return tile

    def peek(self, key: TileKey) -> CachedTile | None:
        """Return a cached tile without counting or reordering."""
        with self._lock:
            return self._tiles.get(key)

    def __contains__(self, key: TileKey) -> bool:
        with self._lock:
            return key in self._tiles

    def put(self, key: TileKey, tile: CachedTile) -> None:
        """Store a tile, evicting the least recently used ones beyond the limit."""
        with self._lock:
            old = self._tiles.pop(key, None)
            if old is not None:
                self.nbytes -= old.nbytes
            self._tiles[key] = tile
            self.nbytes += tile.nbytes
            while self.nbytes > self.limit_bytes and len(self._tiles) > 1:
                _, evicted = self._tiles.popitem(last=False)
                self.nbytes -= evicted.nbytes

    def __len__(self) -> int:
        return len(self._tiles)

    def hit_rate(self) -> float:
        """Fraction of counted lookups that found their tile."""
        total = self.hits + self.misses
        return self.hits / total if total else 0.0

    def reset_stats(self) -> None:
        """Zero the hit and miss counters."""
        self.hits = self.misses = 0

    def clear(self) -> None:
        """Drop every tile."""
        with self._lock:
            self._tiles.clear()
            self.nbytes = 0


@dataclass(order=True)
class TileRequest:
    """One pending job: produce the tile for ``key`` (lower ``priority`` runs first)."""

    priority: tuple
    seq: int
    key: TileKey = field(compare=False)
    produce: Callable[[], CachedTile] = field(compare=False)
    owner: int = field(compare=False, default=0)


class TileLoader(QObject):
    """Worker threads that fill a :class:`TileCache` from per-owner request sets.

    Signals
    -------
    tile_ready(owner, key)
        Emitted (delivered on the GUI thread) after a tile entered the cache.
    failed(owner, message)
        Emitted when producing a tile raised; the tile is not retried until re-requested.
    """

    tile_ready = Signal(object, object)
    failed = Signal(object, str)

    def __init__(self, cache: TileCache, workers: int | None = None, parent=None):
        super().__init__(parent)
        self.cache = cache
        fix_mmap_threshold()
        self._cond = threading.Condition()
        self._heap: list[TileRequest] = []
        self._generation: dict[int, int] = {}
        self._request_gen: dict[int, int] = {}
        self._in_flight: set[TileKey] = set()
        self._seq = itertools.count()
        self._stopping = False
        self._painters = 0
        count = workers or max(2, min(4, os.cpu_count() or 2))
        self._threads = [
            threading.Thread(target=self._work, name=f"tile-worker-{i}", daemon=True)
            for i in range(count)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, owner: int, requests: list[tuple[tuple, TileKey, Callable]]) -> int:
        """Replace ``owner``'s pending requests with ``requests`` (already-cached keys skipped).

        Parameters
        ----------
        owner : int
            Identifies the requester (e.g. ``id(view)``).
        requests : list of (priority, key, produce)
            ``produce()`` returns a :class:`CachedTile`; it runs on a worker thread.

        Returns
        -------
        int
            Number of requests queued (none once the loader is shut down).
        """
        with self._cond:
            if self._stopping:  # a view repainting after shutdown: nobody would serve them
                return 0
            generation = self._generation.get(owner, 0) + 1
            self._generation[owner] = generation
            self._heap = [r for r in self._heap if r.owner != owner]
            queued = 0
            for priority, key, produce in requests:
                if key in self._in_flight or self.cache.peek(key) is not None:
                    continue
                self._heap.append(TileRequest(priority, next(self._seq), key, produce, owner))
                queued += 1
            heapq.heapify(self._heap)
            self._mark_busy()
            self._cond.notify_all()
            return queued

    def cancel(self, owner: int) -> None:
        """Drop every pending request of ``owner``."""
        self.submit(owner, [])

    def pending(self, owner: int | None = None) -> int:
        """Number of queued plus running requests (of ``owner`` if given)."""
        with self._cond:
            queued = sum(1 for r in self._heap if owner is None or r.owner == owner)
            return queued + len(self._in_flight)

    @contextmanager
    def painting(self):
        """Hold back new tile jobs while the GUI thread draws a frame.

        Workers run Python between their C calls; each time they take the GIL from the
        GUI thread mid-frame, the frame waits. Jobs already running finish.
        """
        with self._cond:
            self._painters += 1
        try:
            yield
        finally:
            with self._cond:
                self._painters -= 1
                self._cond.notify_all()

    def _mark_busy(self) -> None:
        """Tell background jobs whether tiles are queued or running (call holding the lock)."""
        FOREGROUND.mark(self, bool(self._heap or self._in_flight))

    def _next(self) -> TileRequest | None:
        with self._cond:
            while (not self._heap or self._painters) and not self._stopping:
                self._cond.wait()
            if self._stopping:
                return None
            request = heapq.heappop(self._heap)
            self._in_flight.add(request.key)
            return request

    def _work(self) -> None:
        lower_thread_priority(WORKER_NICENESS)
        while (request := self._next()) is not None:
            try:
                if self.cache.peek(request.key) is None:
                    self.cache.put(request.key, request.produce())
                ok, message = True, ""
            except Exception as exc:  # reported to the GUI, never fatal
                ok, message = False, str(exc)
            finally:
                with self._cond:
                    self._in_flight.discard(request.key)
                    self._mark_busy()
                    self._cond.notify_all()
            try:
                if ok:
                    self.tile_ready.emit(request.owner, request.key)
                else:
                    self.failed.emit(request.owner, message)
            except RuntimeError:  # the loader's Qt side was deleted: the app is closing
                return

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Block (not on the GUI thread in the app) until no request is pending."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._heap and not self._in_flight, timeout)

    def shutdown(self) -> None:
        """Stop the workers after their current request."""
        with self._cond:
            self._stopping = True
            self._heap.clear()
            self._mark_busy()
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout=5)


def read_virtual_tile(slide, level: int, col: int, row: int) -> np.ndarray:
    """Read one virtual tile as RGB from the slide's best pyramid level (worker thread)."""
    info = slide.info
    region = tile_region(level, col, row, info.width, info.height)
    out_w, out_h = tile_pixels(level, region)
    src_level = slide.best_level_for_downsample(float(1 << level))
    ds = info.levels[src_level].downsample
    src_w, src_h = max(1, math.ceil(region[2] / ds)), max(1, math.ceil(region[3] / ds))
    rgb = slide.read_region(region[:2], src_level, (src_w, src_h))
    if (src_w, src_h) != (out_w, out_h):
        rgb = cv2.resize(rgb, (out_w, out_h), interpolation=cv2.INTER_AREA)
    return rgb


_shared: dict[str, object] = {}
#: glibc mallopt parameter number of M_MMAP_THRESHOLD.
_M_MMAP_THRESHOLD = -3


def fix_mmap_threshold(nbytes: int = 128 * 1024) -> bool:
    """Make glibc return freed tile buffers to the system (Linux only; no-op elsewhere).

    Decoded tiles are ~1 MB. glibc raises its mmap threshold after the first such
    buffer is freed, after which evicted tiles stay in fragmented per-thread arenas and
    the process grows past the cache limit; a fixed threshold keeps them in mmap.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, nbytes))
    except (OSError, AttributeError):
        return False


def shared_loader(cache_mb: float = DEFAULT_CACHE_MB) -> TileLoader:
    """Return the application-wide loader (and its cache), created on first use."""
    if "loader" not in _shared:
        loader = TileLoader(TileCache(cache_mb))
        _shared["loader"] = loader
    return _shared["loader"]


QUEUED = Qt.ConnectionType.QueuedConnection
