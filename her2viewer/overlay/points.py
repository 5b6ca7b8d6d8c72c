"""Point layers: many classed points (cells) drawn only where the view is, and a density map
shown only when zoomed out.

A :class:`PointsLayer` keeps its points sorted by x, so the points of a tile are found by
two binary searches and a test of y: drawing costs the points in the tile, not all of them
(a slide has hundreds of thousands of cells). Coarser than ``max_downsample`` it draws
nothing, which leaves the low zoom to a :class:`DensityLayer`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np

from her2viewer.overlay.layers import HeatmapLayer, OverlayError, OverlayLayer, Region

#: Outline colour of every dot (dark, so that yellow reads on pale tissue).
DOT_EDGE = (30, 30, 30, 255)


@dataclass(eq=False)
class PointsLayer(OverlayLayer):
    """Points with a class each, drawn as dots of the class colour.

    Attributes
    ----------
    xy : numpy.ndarray
        ``(N, 2)`` level-0 positions.
    classes : numpy.ndarray
        ``(N,)`` integer class per point.
    colors, class_names : dict
        Class -> RGB, class -> name.
    describe : callable, optional
        ``describe(i) -> str`` of point ``i`` for the cursor readout (the class name if None).
    radius_um, mpp : float
        Dot radius in um and the slide's um per level-0 pixel (``mpp`` None: ``radius_um``
        is taken in level-0 pixels).
    max_downsample : float, optional
        Coarser than this (level-0 px per screen px) nothing is drawn.
    outline_xy, outline_offsets : numpy.ndarray, optional
        An outline per point (point ``i``'s is ``outline_xy[outline_offsets[i]:
        outline_offsets[i + 1]]``, level 0), drawn in the class colour instead of the dot
        when the view is at least as fine as ``outline_up_to`` (nucleus outlines at 20x+).
    """

    xy: np.ndarray = None
    classes: np.ndarray = None
    colors: dict = field(default_factory=dict)
    class_names: dict = field(default_factory=dict)
    describe: Callable[[int], str] | None = None
    radius_um: float = 3.0
    mpp: float | None = None
    max_downsample: float | None = None
    outline_xy: np.ndarray | None = None
    outline_offsets: np.ndarray | None = None
    outline_up_to: float = 0.0

    kind = "points"

    def __post_init__(self):
        xy = np.asarray(self.xy if self.xy is not None else np.zeros((0, 2)), np.float64)
        if xy.ndim != 2 or xy.shape[1] != 2:
            raise OverlayError(f"points '{self.name}' need an (N, 2) array of positions")
        classes = np.zeros(len(xy), np.int64) if self.classes is None else self.classes
        self.classes = np.asarray(classes, np.int64).reshape(-1)
        if self.classes.size != len(xy):
            raise OverlayError(
                f"points '{self.name}': {len(xy)} points but {self.classes.size} classes"
            )
        self._order = np.argsort(xy[:, 0], kind="stable")
        self.xy = xy
        self._xs = xy[self._order, 0]
        self._outline_reach = 0.0  # how far an outline reaches from its point (level-0 px)
        if self.outline_offsets is not None:
            if len(self.outline_offsets) != len(xy) + 1:
                raise OverlayError(f"points '{self.name}': one outline per point is needed")
            owners = np.repeat(xy, np.diff(self.outline_offsets), axis=0)
            spread = np.abs(np.asarray(self.outline_xy, np.float64) - owners)
            self._outline_reach = float(spread.max(initial=0.0)) + 1.0

    def __len__(self) -> int:
        return len(self.xy)

    @property
    def radius(self) -> float:
        """Dot radius in level-0 pixels."""
        return self.radius_um / self.mpp if self.mpp else self.radius_um

    def in_box(self, x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
        """Indices of the points inside the level-0 box (two binary searches on x)."""
        lo, hi = np.searchsorted(self._xs, [x0, x1], side="left")
        candidates = self._order[lo:hi]
        ys = self.xy[candidates, 1]
        return candidates[(ys >= y0) & (ys <= y1)]

    def set_display(self, **changes) -> None:
        """Change ``colors`` or ``radius_um`` and bump the version."""
        for key, value in changes.items():
            if key not in {"colors", "radius_um"}:
                raise ValueError(f"unknown display setting {key!r}")
            setattr(self, key, value)
        self.changed()

    def render(self, region: Region, out_size: tuple[int, int]) -> np.ndarray | None:
        x, y, w, h = region
        out_w, out_h = out_size
        downsample = w / out_w
        if self.max_downsample is not None and downsample > self.max_downsample:
            return None
        pad = max(self.radius, self._outline_reach)
        shown = self.in_box(x - pad, y - pad, x + w + pad, y + h + pad)
        if shown.size == 0:
            return None
        rgba = np.zeros((out_h, out_w, 4), np.uint8)
        if self.outline_offsets is not None and downsample <= self.outline_up_to:
            self._draw_outlines(rgba, shown, (x, y), downsample)
            return rgba
        radius = max(2, int(round(self.radius / downsample)))
        centres = np.round((self.xy[shown] - (x, y)) / downsample).astype(np.int64)
        for (cx, cy), label in zip(centres.tolist(), self.classes[shown].tolist(), strict=True):
            colour = (*self.colors.get(label, (255, 255, 255)), 255)
            cv2.circle(rgba, (cx, cy), radius, colour, -1, cv2.LINE_AA)
            cv2.circle(rgba, (cx, cy), radius, DOT_EDGE, 1, cv2.LINE_AA)
        return rgba

    def _draw_outlines(self, rgba: np.ndarray, shown: np.ndarray, origin, downsample) -> None:
        """Each shown point's outline in its class colour (2 px, anti-aliased)."""
        shift = 4  # sub-pixel precision for cv2 drawing
        offsets = self.outline_offsets
        for label in np.unique(self.classes[shown]).tolist():
            rings = [
                np.round((self.outline_xy[offsets[i] : offsets[i + 1]] - origin) / downsample
                         * (1 << shift)).astype(np.int32)
                for i in shown[self.classes[shown] == label]
                if offsets[i + 1] - offsets[i] >= 2
            ]  # fmt: skip
            colour = (*self.colors.get(label, (255, 255, 255)), 255)
            cv2.polylines(rgba, rings, True, colour, 2, cv2.LINE_AA, shift)

    def nearest(self, x: float, y: float) -> int | None:
        """The point within twice the dot radius of ``(x, y)`` nearest to it, or None."""
        reach = 2 * self.radius
        near = self.in_box(x - reach, y - reach, x + reach, y + reach)
        if near.size == 0:
            return None
        distance = np.hypot(self.xy[near, 0] - x, self.xy[near, 1] - y)
        best = int(np.argmin(distance))
        return int(near[best]) if distance[best] <= reach else None

    def value_at(self, x: float, y: float) -> str | None:
        """The nearest point's description (or its class name) under the cursor."""
        index = self.nearest(x, y)
        if index is None:
            return None
        if self.describe is not None:
            return self.describe(index)
        label = int(self.classes[index])
        return self.class_names.get(label, str(label))


@dataclass(eq=False)
class DensityLayer(HeatmapLayer):
    """A heatmap shown only when zoomed out: finer than ``min_downsample`` it draws nothing
    (the points take over there)."""

    min_downsample: float = 0.0

    def render(self, region: Region, out_size: tuple[int, int]) -> np.ndarray | None:
        if region[2] / out_size[0] < self.min_downsample:
            return None
        return super().render(region, out_size)
