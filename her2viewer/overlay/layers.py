"""Overlay layers: score maps, masks and vectors in level-0 coordinates, coloured on demand.

A layer knows nothing of Qt or of the screen. The viewer asks it for the RGBA
pixels of one region of the slide at one resolution with :meth:`OverlayLayer.render`
(from a worker thread) and for the value under the cursor with
:meth:`OverlayLayer.value_at`. Display settings that change the colours (colormap,
range, threshold, colours, mode) bump :attr:`OverlayLayer.version`, so a cache keyed
on it never serves stale colours; opacity and visibility are applied by whoever
draws and do not change the pixels.
"""

from __future__ import annotations

import itertools
import math
import threading
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import cv2
import numpy as np
import shapely
from shapely.geometry import LineString, Point, Polygon
from shapely.geometry.base import BaseGeometry

from her2viewer.errors import Her2ViewerError
from her2viewer.geometry.geojson import GeoJSONError, read_features
from her2viewer.geometry.index import SpatialIndex
from her2viewer.geometry.shapes import repair
from her2viewer.overlay.colormaps import (
    DEFAULT_COLORMAP,
    MASK_COLORS,
    Legend,
    apply_colormap,
    format_value,
)

_ids = itertools.count(1)
_ids_lock = threading.Lock()

#: Default class colours of mask layers (RGB, colour-blind safe), class 0 is background.
DEFAULT_CLASS_COLORS = MASK_COLORS


class OverlayError(Her2ViewerError):
    """An overlay file or array cannot be used (wrong shape, unreadable GeoJSON, ...)."""


def _next_id() -> int:
    with _ids_lock:
        return next(_ids)


Region = tuple[float, float, float, float]


def crop_for_region(
    array: np.ndarray, downsample: float, region: Region, margin: int = 1
) -> tuple[np.ndarray, Region] | None:
    """Cut the part of a raster under a level-0 region (plus ``margin`` raster pixels).

    Returns the crop and the region in the crop's own level-0 frame, so that
    ``sample_grid(crop, downsample, shifted, ...)`` equals sampling the whole raster;
    ``None`` when the region misses the raster.
    """
    x, y, w, h = region
    rows, cols = array.shape[:2]
    c0 = max(int(math.floor(x / downsample)) - margin, 0)
    r0 = max(int(math.floor(y / downsample)) - margin, 0)
    c1 = min(int(math.ceil((x + w) / downsample)) + margin, cols)
    r1 = min(int(math.ceil((y + h) / downsample)) + margin, rows)
    if c1 <= c0 or r1 <= r0:
        return None
    return array[r0:r1, c0:c1], (x - c0 * downsample, y - r0 * downsample, w, h)


def sample_grid(
    array: np.ndarray,
    downsample: float,
    region: Region,
    out_size: tuple[int, int],
    nearest: bool,
    fill: float,
) -> np.ndarray:
    """Resample a raster stored at ``downsample`` over a level-0 region.

    Parameters
    ----------
    array : numpy.ndarray
        ``(H, W)`` or ``(H, W, C)`` raster whose pixel ``(i, j)`` covers level-0
        ``[j*downsample, (j+1)*downsample) x [i*downsample, (i+1)*downsample)``.
    downsample : float
        Level-0 pixels per raster pixel.
    region : (x, y, w, h)
        Level-0 region to sample.
    out_size : (int, int)
        Output ``(width, height)``.
    nearest : bool
        Nearest-neighbour (labels, patch scores) or bilinear sampling.
    fill : float
        Value outside the raster (every channel).
    """
    crop = crop_for_region(array, downsample, region)
    out_w, out_h = out_size
    if crop is None:
        return np.full((out_h, out_w) + array.shape[2:], fill, array.dtype)
    array, (x, y, w, h) = crop
    sx, sy = w / out_w / downsample, h / out_h / downsample
    # output pixel centre (u + 0.5) -> raster pixel coordinate (centre at index + 0.5)
    matrix = np.array(
        [[sx, 0, x / downsample + 0.5 * sx - 0.5], [0, sy, y / downsample + 0.5 * sy - 0.5]],
        np.float64,
    )
    flags = (cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR) | cv2.WARP_INVERSE_MAP
    return cv2.warpAffine(
        array,
        matrix,
        (out_w, out_h),
        flags=flags,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=(fill,) * 4,
    )


@dataclass(eq=False)
class OverlayLayer:
    """Base of all layers: a name, visibility, opacity and a colour version."""

    name: str
    visible: bool = True
    opacity: float = 0.5
    uid: int = field(default_factory=_next_id, init=False)
    version: int = field(default=0, init=False)

    kind = "layer"

    def changed(self) -> None:
        """Mark the colours as changed so caches re-render them."""
        self.version += 1

    def render(self, region: Region, out_size: tuple[int, int]) -> np.ndarray | None:
        """Return straight-alpha RGBA uint8 ``(h, w, 4)`` for a level-0 region, or ``None``.

        ``None`` means nothing is drawn there (fully transparent).
        """
        raise NotImplementedError

    def value_at(self, x: float, y: float) -> str | None:
        """Describe the layer's value at a level-0 point, ``None`` where it has none."""
        raise NotImplementedError

    def legend(self) -> Legend | None:
        """Return the legend to show, if the layer has one."""
        return None


@dataclass(eq=False)
class HeatmapLayer(OverlayLayer):
    """A score map drawn through a colormap.

    Attributes
    ----------
    values : numpy.ndarray
        ``(H, W)`` float scores, NaN where there is no score.
    downsample : float
        Level-0 pixels per score pixel (the patch stride for patch scores).
    colormap, vmin, vmax, threshold
        How scores become colours; values below ``threshold`` are not drawn.
    smooth : bool
        Bilinear instead of blocky nearest-neighbour sampling.
    """

    values: np.ndarray = None
    downsample: float = 1.0
    colormap: str = DEFAULT_COLORMAP
    vmin: float = 0.0
    vmax: float = 1.0
    threshold: float | None = None
    smooth: bool = False
    units: str = ""

    kind = "heatmap"

    def __post_init__(self):
        values = np.asarray(self.values, dtype=np.float32)
        if values.ndim != 2 or values.size == 0:
            raise OverlayError(f"heatmap '{self.name}' needs a non-empty 2-D score array")
        self.values = np.ascontiguousarray(values)
        if self.downsample <= 0:
            raise OverlayError(f"heatmap '{self.name}' downsample must be positive")

    @classmethod
    def from_patches(
        cls,
        name: str,
        coords: np.ndarray,
        scores: np.ndarray,
        patch_size_level0: int,
        slide_size: tuple[int, int],
        **options,
    ) -> HeatmapLayer:
        """Build a heatmap from per-patch scores on a regular patch grid.

        Parameters
        ----------
        coords : numpy.ndarray
            ``(N, 2)`` level-0 top-left corners (as in CLAM's coords h5).
        scores : numpy.ndarray
            ``(N,)`` one score per patch.
        patch_size_level0 : int
            Patch side (and grid stride) in level-0 pixels.
        slide_size : (int, int)
            Level-0 ``(width, height)``.
        """
        coords = np.asarray(coords, dtype=np.int64).reshape(-1, 2)
        scores = np.asarray(scores, dtype=np.float32).reshape(-1)
        if len(coords) != len(scores):
            raise OverlayError(f"{len(coords)} patch corners but {len(scores)} scores")
        step = int(patch_size_level0)
        grid = np.full((-(-slide_size[1] // step), -(-slide_size[0] // step)), np.nan, np.float32)
        cols, rows = coords[:, 0] // step, coords[:, 1] // step
        keep = (rows >= 0) & (cols >= 0) & (rows < grid.shape[0]) & (cols < grid.shape[1])
        grid[rows[keep], cols[keep]] = scores[keep]
        return cls(name, values=grid, downsample=float(step), **options)

    def set_display(self, **changes) -> None:
        """Change colormap, vmin, vmax, threshold or smooth and bump the version."""
        for key, value in changes.items():
            if key not in {"colormap", "vmin", "vmax", "threshold", "smooth"}:
                raise ValueError(f"unknown display setting {key!r}")
            setattr(self, key, value)
        self.changed()

    def render(self, region: Region, out_size: tuple[int, int]) -> np.ndarray | None:
        crop = crop_for_region(self.values, self.downsample, region)
        if crop is None:
            return None
        values, region = crop
        colour = partial(
            apply_colormap,
            name=self.colormap,
            vmin=self.vmin,
            vmax=self.vmax,
            threshold=self.threshold,
        )
        if self.smooth:  # interpolate scores, then colour them
            sampled = sample_grid(values, self.downsample, region, out_size, False, np.nan)
            rgba = colour(sampled)
        else:  # colour the few cells under the tile, then enlarge them (same pixels)
            rgba = sample_grid(colour(values), self.downsample, region, out_size, True, 0)
        return rgba if rgba[..., 3].any() else None

    def value_at(self, x: float, y: float) -> str | None:
        row, col = int(y // self.downsample), int(x // self.downsample)
        if not (0 <= row < self.values.shape[0] and 0 <= col < self.values.shape[1]):
            return None
        value = float(self.values[row, col])
        if not np.isfinite(value):
            return None
        return f"{format_value(value)}{(' ' + self.units) if self.units else ''}"

    def legend(self) -> Legend:
        return Legend(self.colormap, self.vmin, self.vmax, self.name, self.threshold)


@dataclass(eq=False)
class MaskLayer(OverlayLayer):
    """A binary or label mask with one colour per class, filled and/or outlined.

    Attributes
    ----------
    labels : numpy.ndarray
        ``(H, W)`` bool or integer labels (0 = nothing).
    downsample : float
        Level-0 pixels per mask pixel.
    class_names : dict
        Label -> name shown under the cursor.
    colors : dict
        Label -> RGB.
    mode : str
        ``"fill"``, ``"outline"`` or ``"both"``.
    """

    labels: np.ndarray = None
    downsample: float = 1.0
    class_names: dict = field(default_factory=dict)
    colors: dict = field(default_factory=dict)
    mode: str = "fill"
    outline_width: int = 2

    kind = "mask"
    MODES = ("fill", "outline", "both")

    def __post_init__(self):
        labels = np.asarray(self.labels)
        if labels.ndim != 2 or labels.size == 0:
            raise OverlayError(f"mask '{self.name}' needs a non-empty 2-D array")
        if labels.max(initial=0) > 255 or labels.min(initial=0) < 0:
            raise OverlayError(f"mask '{self.name}' labels must lie in 0..255")
        self.labels = np.ascontiguousarray(labels.astype(np.uint8))
        if self.downsample <= 0:
            raise OverlayError(f"mask '{self.name}' downsample must be positive")
        if self.mode not in self.MODES:
            raise OverlayError(f"mask mode must be one of {', '.join(self.MODES)}")
        present = [int(v) for v in np.unique(self.labels) if v]
        for label in present:
            self.colors.setdefault(label, DEFAULT_CLASS_COLORS.get(label, (255, 255, 0)))
            self.class_names.setdefault(label, self.name if len(present) == 1 else str(label))
        self._lut = self._build_lut()

    @classmethod
    def from_png(cls, name: str, path: str | Path, downsample: float, **options) -> MaskLayer:
        """Read a mask PNG (non-zero = class 1 for binary images, else the grey value)."""
        image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if image is None:
            raise OverlayError(f"{path}: cannot read the mask image.")
        if set(np.unique(image).tolist()) <= {0, 255}:
            image = (image > 0).astype(np.uint8)
        return cls(name, labels=image, downsample=downsample, **options)

    def _build_lut(self) -> np.ndarray:
        lut = np.zeros((256, 4), np.uint8)
        for label, rgb in self.colors.items():
            lut[int(label), :3] = rgb
            lut[int(label), 3] = 255
        return lut

    def set_display(self, **changes) -> None:
        """Change ``mode``, ``colors`` or ``outline_width`` and bump the version."""
        for key, value in changes.items():
            if key not in {"mode", "colors", "outline_width"}:
                raise ValueError(f"unknown display setting {key!r}")
            setattr(self, key, value)
        if self.mode not in self.MODES:
            raise OverlayError(f"mask mode must be one of {', '.join(self.MODES)}")
        self._lut = self._build_lut()
        self.changed()

    def render(self, region: Region, out_size: tuple[int, int]) -> np.ndarray | None:
        labels = sample_grid(self.labels, self.downsample, region, out_size, True, 0)
        if not labels.any():
            return None
        rgba = (
            self._lut.view(np.uint32)
            .reshape(256)[labels]
            .view(np.uint8)
            .reshape(labels.shape + (4,))
        )
        if self.mode != "fill":
            edge = self._edges(labels)
            if self.mode == "outline":
                rgba[..., 3] = np.where(edge, 255, 0)
            else:
                rgba[..., 3] = np.where(edge, 255, rgba[..., 3] // 2)
        return rgba

    def _edges(self, labels: np.ndarray) -> np.ndarray:
        edge = np.zeros(labels.shape, bool)
        edge[:, 1:] |= labels[:, 1:] != labels[:, :-1]
        edge[1:, :] |= labels[1:, :] != labels[:-1, :]
        width = max(1, int(self.outline_width))
        kernel = np.ones((width, width), np.uint8)
        edge = cv2.dilate(edge.astype(np.uint8), kernel) > 0
        return edge & (labels > 0)

    def value_at(self, x: float, y: float) -> str | None:
        row, col = int(y // self.downsample), int(x // self.downsample)
        if not (0 <= row < self.labels.shape[0] and 0 <= col < self.labels.shape[1]):
            return None
        label = int(self.labels[row, col])
        return self.class_names.get(label) if label else None

    def area_fraction(self) -> float:
        """Fraction of the raster covered by any class."""
        return float((self.labels > 0).mean())


@dataclass(eq=False)
class VectorLayer(OverlayLayer):
    """Polygons, lines and points in level-0 coordinates (contours, annotations).

    Attributes
    ----------
    polygons : list of numpy.ndarray
        ``(N, 2)`` level-0 outer rings (closed implicitly).
    holes : list of list of numpy.ndarray
        Inner rings of each polygon (empty when none are given).
    lines : list of numpy.ndarray
        ``(N, 2)`` open polylines.
    names : list of str
        One name per polygon, then one per line (shown under the cursor).
    points : numpy.ndarray
        ``(M, 2)`` level-0 points.
    color : (int, int, int)
        RGB of lines and points.
    line_width : int
        Screen pixels.
    fill_alpha : int
        0..255 alpha of the polygon fill (0 = outlines only).
    """

    polygons: list = field(default_factory=list)
    names: list = field(default_factory=list)
    points: np.ndarray = None
    color: tuple = (20, 220, 60)
    line_width: int = 2
    fill_alpha: int = 0
    opacity: float = 1.0
    holes: list = field(default_factory=list)
    lines: list = field(default_factory=list)

    kind = "vector"

    def __post_init__(self):
        def as_curve(points) -> np.ndarray:
            return np.asarray(points, np.float64).reshape(-1, 2)

        self.polygons = [as_curve(p) for p in self.polygons]
        self.holes = [[as_curve(h) for h in rings] for rings in self.holes]
        self.holes += [[] for _ in range(len(self.polygons) - len(self.holes))]
        self.lines = [as_curve(line) for line in self.lines]
        n_shapes = len(self.polygons) + len(self.lines)
        self.names = list(self.names) + [self.name] * (n_shapes - len(self.names))
        self.points = np.zeros((0, 2)) if self.points is None else as_curve(self.points)
        shapes = [_polygon_shape(p, h) for p, h in zip(self.polygons, self.holes, strict=True)]
        self._index = SpatialIndex(shapes + [_line_shape(line) for line in self.lines])

    @classmethod
    def from_geojson(cls, path: str | Path, name: str | None = None, **options) -> VectorLayer:
        """Read polygons, lines and points from a (QuPath) GeoJSON file in level-0 px.

        Raises
        ------
        OverlayError
            One sentence naming the file when it is not readable GeoJSON.
        """
        path = Path(path)
        try:
            features = read_features(path)
        except GeoJSONError as exc:
            raise OverlayError(str(exc)) from exc
        polygons, holes, lines, polygon_names, line_names, points = [], [], [], [], [], []
        for feature in features:
            label = feature.class_name or feature.name or feature.object_type
            for part in shapely.get_parts(feature.geometry):
                if part.is_empty:
                    continue
                if part.geom_type == "Polygon":
                    polygons.append(np.asarray(part.exterior.coords))
                    holes.append([np.asarray(r.coords) for r in part.interiors])
                    polygon_names.append(label)
                elif part.geom_type == "LineString":
                    lines.append(np.asarray(part.coords))
                    line_names.append(label)
                else:
                    points.append(np.asarray(part.coords))
        return cls(
            name or path.stem,
            polygons=polygons,
            holes=holes,
            lines=lines,
            names=polygon_names + line_names,
            points=np.concatenate(points) if points else None,
            **options,
        )

    def render(self, region: Region, out_size: tuple[int, int]) -> np.ndarray | None:
        x, y, w, h = region
        out_w, out_h = out_size
        sx, sy = out_w / w, out_h / h
        pad = self.line_width / min(sx, sy)
        shown = self._index.in_box(x - pad, y - pad, x + w + pad, y + h + pad)
        n_polygons = len(self.polygons)
        rings = [r for i in shown if i < n_polygons for r in (self.polygons[i], *self.holes[i])]
        lines = [self.lines[i - n_polygons] for i in shown if i >= n_polygons]
        pts = self.points
        inside = (
            (pts[:, 0] >= x - pad)
            & (pts[:, 0] <= x + w + pad)
            & (pts[:, 1] >= y - pad)
            & (pts[:, 1] <= y + h + pad)
        )
        if not rings and not lines and not inside.any():
            return None
        rgba = np.zeros((out_h, out_w, 4), np.uint8)
        shift = 4  # sub-pixel precision for cv2 drawing
        scale = np.array([sx, sy]) * (1 << shift)
        offset = np.array([x, y])

        def curves(arrays: list) -> list:
            return [np.round((p - offset) * scale).astype(np.int32) for p in arrays if len(p)]

        colour = (*self.color, 255)
        closed, opened = curves(rings), curves(lines)
        if self.fill_alpha and closed:
            cv2.fillPoly(rgba, closed, (*self.color, int(self.fill_alpha)), cv2.LINE_AA, shift)
        for curve_list, is_closed in ((closed, True), (opened, False)):
            if curve_list:
                cv2.polylines(
                    rgba, curve_list, is_closed, colour, self.line_width, cv2.LINE_AA, shift
                )
        radius = max(2, self.line_width * 2)
        for px, py in (pts[inside] - offset) * np.array([sx, sy]):
            cv2.circle(rgba, (int(round(px)), int(round(py))), radius, colour, -1, cv2.LINE_AA)
        return rgba if rgba[..., 3].any() else None

    def value_at(self, x: float, y: float) -> str | None:
        """Return the name of the smallest polygon (or line) under ``(x, y)``."""
        hits = self._index.at_point(x, y)
        return self.names[hits[0]] if hits else None


def _polygon_shape(outer: np.ndarray, holes: list[np.ndarray]) -> BaseGeometry:
    """Return the valid shapely polygon of a ring and its holes, for hit-testing."""
    if len(outer) < 3:
        return _line_shape(outer)
    return repair(Polygon(outer, [h for h in holes if len(h) >= 3]))


def _line_shape(points: np.ndarray) -> BaseGeometry:
    """Return the shapely geometry of a polyline (a point or nothing when too short)."""
    if len(points) >= 2:
        return LineString(points)
    return Point(points[0]) if len(points) else Polygon()


def render_level(layer: OverlayLayer, downsample: float, size: tuple[int, int]) -> np.ndarray:
    """Render a whole layer at one pyramid level (for exports and thumbnails).

    Parameters
    ----------
    layer : OverlayLayer
        The layer.
    downsample : float
        Level-0 pixels per output pixel.
    size : (int, int)
        Output ``(width, height)``.

    Returns
    -------
    numpy.ndarray
        ``(height, width, 4)`` straight-alpha RGBA uint8 (transparent where empty).
    """
    width, height = size
    rgba = layer.render((0.0, 0.0, width * downsample, height * downsample), (width, height))
    return np.zeros((height, width, 4), np.uint8) if rgba is None else rgba
