"""What a slide pane shows, as plain numbers: the view state, its maths and its tile plan.

A :class:`Viewport` is the Qt-free model of one pane (as napari's ``Camera`` is of
a canvas): the GUI's ``SlideView`` paints and handles input, and asks the viewport
for every number. Coordinate planes are named by prefix, as in openslide-python's
``deepzoom``: ``l0_`` level-0 slide pixels, ``screen_`` pane pixels, and ``level``
the power-of-two *virtual levels* of the tile grid (level ``k`` has ``2**k`` level-0
pixels per tile pixel and tiles of :data:`TILE_SIZE` pixels).

The view state is a centre in level-0 pixels, a downsample (level-0 pixels per
screen pixel), a rotation in radians and a horizontal mirror flip (applied on the
screen, after the rotation). One zoom limit applies to every input
(the scan's own pixels, :data:`MIN_DOWNSAMPLE`, to four times the fitted view), the
slide always stays in sight, and a state that is not finite is ignored.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import NamedTuple

import numpy as np

#: Pixels per side of a virtual tile.
TILE_SIZE = 256
#: The one zoom limit of every input (wheel, keys, presets, options): the scan's own pixels.
MIN_DOWNSAMPLE = 1.0
#: How much smaller than the fitted view the user may zoom out.
MAX_ZOOM_OUT = 4.0
#: Margin around the whole slide when fitted.
FIT_MARGIN = 1.02
#: Tile plan ranks, best first: visible tiles, the next coarser level (placeholders),
#: a ring of one tile around the view, the next finer level around the centre.
VISIBLE, COARSER, RING, FINER = 0, 1, 2, 3

Bounds = tuple[float, float, float, float]
ScreenRect = tuple[int, int, int, int]


@dataclass
class ViewState:
    """Where a view looks: centre (level-0 px), downsample, rotation (radians) and
    whether the screen shows it mirrored left-right (``flip``)."""

    cx: float
    cy: float
    downsample: float
    angle: float = 0.0
    flip: bool = False

    @property
    def rotation_degrees(self) -> float:
        """The rotation as shown to the user: degrees clockwise on the screen, 0-360."""
        return (-math.degrees(self.angle)) % 360.0

    def rotated_to(self, degrees: float) -> ViewState:
        """The same view turned to ``degrees`` clockwise (about the pane's centre)."""
        return replace(self, angle=-math.radians(degrees % 360.0))

    def flipped(self) -> ViewState:
        """The same view mirrored left-right on the screen (again: back)."""
        return replace(self, flip=not self.flip)

    def linear(self) -> np.ndarray:
        """2x2 matrix taking a level-0 offset from the centre to a screen offset."""
        c, n = math.cos(-self.angle), math.sin(-self.angle)
        linear = np.array([[c, -n], [n, c]]) / self.downsample
        if self.flip:
            linear[0] *= -1.0
        return linear


def state_from_linear(cx: float, cy: float, linear: np.ndarray) -> ViewState:
    """The view state centred on ``(cx, cy)`` whose :meth:`ViewState.linear` is nearest
    ``linear`` (exact for rotations, scalings and mirrors)."""
    det = float(np.linalg.det(linear))
    flip = det < 0
    rotation = np.array(linear, float)
    if flip:
        rotation[0] *= -1.0
    angle = -math.atan2(rotation[1, 0] - rotation[0, 1], rotation[0, 0] + rotation[1, 1])
    return ViewState(float(cx), float(cy), 1.0 / math.sqrt(abs(det)), angle, flip)


class PlannedTile(NamedTuple):
    """One tile of a plan: its place in the grid and its priority ``(rank, distance)``.

    ``distance`` is from the view's centre, in tiles of the tile's level.
    """

    rank: int
    level: int
    col: int
    row: int
    distance: float

    @property
    def priority(self) -> tuple[int, float]:
        """Sort key: lower is wanted sooner."""
        return self.rank, self.distance


def is_finite(state: ViewState) -> bool:
    """Whether a state can be shown (finite numbers, a positive downsample)."""
    values = (state.cx, state.cy, state.downsample, state.angle)
    return all(math.isfinite(v) for v in values) and state.downsample > 0


def virtual_level_count(width: int, height: int) -> int:
    """Number of power-of-two virtual levels until the slide fits in one tile."""
    return max(1, math.ceil(math.log2(max(width, height, TILE_SIZE) / TILE_SIZE)) + 1)


def tile_region(
    level: int, col: int, row: int, width: int, height: int
) -> tuple[int, int, int, int]:
    """Level-0 ``(x, y, w, h)`` of a virtual tile, clipped to the slide."""
    span = TILE_SIZE << level
    x, y = col * span, row * span
    return x, y, min(span, width - x), min(span, height - y)


def tile_pixels(level: int, region: tuple[int, int, int, int]) -> tuple[int, int]:
    """Pixel ``(width, height)`` of a virtual tile covering ``region``."""
    scale = 1 << level
    return max(1, math.ceil(region[2] / scale)), max(1, math.ceil(region[3] / scale))


def map_state(state: ViewState, matrix: np.ndarray) -> ViewState:
    """Map a view state through a 3x3 level-0 transform (source px -> destination px).

    The destination looks at the mapped centre, with the downsample scaled, the rotation
    turned and the mirror flipped by the transform's similarity part (a mirrored
    registration shows mirrored), so the same tissue sits under the same screen point in
    both panes.
    """
    centre = matrix @ [state.cx, state.cy, 1.0]
    linear = state.linear() @ np.linalg.inv(matrix[:2, :2])
    return state_from_linear(centre[0] / centre[2], centre[1] / centre[2], linear)


def relative_transform(source: ViewState, target: ViewState) -> np.ndarray:
    """Transform that maps ``source``'s view onto ``target``'s as they are now (QuPath-style),
    rotations and flips included."""
    linear = np.linalg.inv(target.linear()) @ source.linear()
    matrix = np.eye(3)
    matrix[:2, :2] = linear
    matrix[:2, 2] = [target.cx, target.cy] - linear @ [source.cx, source.cy]
    return matrix


class Viewport:
    """The view of one slide in a pane of ``screen_width`` x ``screen_height`` pixels.

    Parameters
    ----------
    l0_width, l0_height : int
        Level-0 size of the slide.
    screen_width, screen_height : int
        Size of the pane in screen pixels (the owner keeps it current).
    """

    def __init__(
        self, l0_width: int = 1, l0_height: int = 1, screen_width: int = 1, screen_height: int = 1
    ):
        self.screen_width, self.screen_height = screen_width, screen_height
        self.state = ViewState(0.0, 0.0, 1.0)
        self.keep_fit = False
        self.set_slide_size(l0_width, l0_height)

    def set_slide_size(self, l0_width: int, l0_height: int) -> None:
        """Show a slide of this level-0 size (the state is left for :meth:`fit_state`)."""
        self.l0_width, self.l0_height = l0_width, l0_height
        self.levels = virtual_level_count(l0_width, l0_height)

    # -- matrices ------------------------------------------------------------------
    def l0_to_screen_matrix(self) -> np.ndarray:
        """Return the 3x3 matrix mapping level-0 pixels to screen pixels."""
        s = self.state
        linear = s.linear()
        matrix = np.eye(3)
        matrix[:2, :2] = linear
        centre = np.array([self.screen_width / 2, self.screen_height / 2])
        matrix[:2, 2] = centre - linear @ [s.cx, s.cy]
        return matrix

    def screen_to_l0(self, screen_x: float, screen_y: float) -> tuple[float, float]:
        """Level-0 point under screen pixel ``(screen_x, screen_y)``."""
        point = np.linalg.solve(self.l0_to_screen_matrix(), [screen_x, screen_y, 1.0])
        return float(point[0]), float(point[1])

    def l0_to_screen(self, l0_x: float, l0_y: float) -> tuple[float, float]:
        """Screen pixel showing level-0 point ``(l0_x, l0_y)``."""
        point = self.l0_to_screen_matrix() @ [l0_x, l0_y, 1.0]
        return float(point[0]), float(point[1])

    def screen_rect_mapper(self) -> Callable[[float, float, float, float], ScreenRect]:
        """A function giving the whole screen pixels ``(left, top, width, height)`` of a
        level-0 rect ``(x, y, w, h)`` in the current view, unrotated and unflipped; rects
        that meet in level-0 meet on screen, with no gap or overlap (one mapper per painted
        frame)."""
        s = self.state
        inv = 1.0 / s.downsample
        ox = s.cx - self.screen_width / 2 * s.downsample
        oy = s.cy - self.screen_height / 2 * s.downsample

        def screen_rect(l0_x: float, l0_y: float, l0_w: float, l0_h: float) -> ScreenRect:
            left, top = round((l0_x - ox) * inv), round((l0_y - oy) * inv)
            right, bottom = round((l0_x + l0_w - ox) * inv), round((l0_y + l0_h - oy) * inv)
            return left, top, right - left, bottom - top

        return screen_rect

    def l0_visible_bounds(self) -> Bounds:
        """Level-0 bounding box ``(x0, y0, x1, y1)`` of the pane, clipped to the slide."""
        inverse = np.linalg.inv(self.l0_to_screen_matrix())
        w, h = self.screen_width, self.screen_height
        corners = inverse @ np.array([[0, w, 0, w], [0, 0, h, h], [1, 1, 1, 1]], float)
        xs, ys = corners[0], corners[1]
        return (
            max(0.0, float(xs.min())),
            max(0.0, float(ys.min())),
            min(float(self.l0_width), float(xs.max())),
            min(float(self.l0_height), float(ys.max())),
        )

    # -- navigation ----------------------------------------------------------------
    def fit_downsample(self) -> float:
        """Downsample at which the whole slide fits the pane."""
        return (
            max(
                self.l0_width / max(self.screen_width, 1),
                self.l0_height / max(self.screen_height, 1),
            )
            * FIT_MARGIN
        )

    def clamp_downsample(self, downsample: float) -> float:
        """``downsample`` kept between the scan's own pixels and four fitted views out."""
        most = max(self.fit_downsample() * MAX_ZOOM_OUT, MIN_DOWNSAMPLE)
        return min(max(downsample, MIN_DOWNSAMPLE), most)

    def in_sight(self, state: ViewState, clamp_zoom: bool = True) -> ViewState:
        """``state`` with the centre kept where a quarter of the pane or more shows slide
        (and the zoom clamped unless ``clamp_zoom`` is false)."""
        ds = self.clamp_downsample(state.downsample) if clamp_zoom else state.downsample
        mx, my = self.screen_width / 4 * ds, self.screen_height / 4 * ds
        return replace(
            state,
            cx=min(max(state.cx, -mx), self.l0_width + mx),
            cy=min(max(state.cy, -my), self.l0_height + my),
            downsample=ds,
        )

    def set_state(self, state: ViewState, keep_fit: bool = False, clamp: bool = True) -> bool:
        """Look at ``state`` (kept in sight); whether it was taken (not when not finite).

        ``keep_fit`` says the state is a fitted one, to be refitted on resize; ``clamp``
        keeps the zoom in range (synced panes follow the zoom unclamped).
        """
        if not is_finite(state):
            return False
        self.keep_fit = keep_fit
        self.state = self.in_sight(state, clamp)
        return True

    def fit_state(self) -> ViewState:
        """The state showing the whole slide, at the current rotation and flip."""
        ds = self.fit_downsample()
        return replace(self.state, cx=self.l0_width / 2, cy=self.l0_height / 2, downsample=ds)

    def zoomed_at(self, factor: float, screen_x: float, screen_y: float) -> ViewState:
        """The state zoomed by ``factor`` (>1 magnifies, clamped) about a screen point,
        which keeps showing the same level-0 point."""
        anchor = self.screen_to_l0(screen_x, screen_y)
        zoomed = replace(
            self.state, downsample=self.clamp_downsample(self.state.downsample / factor)
        )
        offset = [screen_x - self.screen_width / 2, screen_y - self.screen_height / 2]
        dx, dy = np.linalg.solve(zoomed.linear(), offset)
        return replace(zoomed, cx=anchor[0] - float(dx), cy=anchor[1] - float(dy))

    def panned_by(self, screen_dx: float, screen_dy: float) -> ViewState:
        """The state with the content moved by ``(screen_dx, screen_dy)`` screen pixels."""
        s = self.state
        dx, dy = np.linalg.solve(s.linear(), [screen_dx, screen_dy])
        return replace(s, cx=s.cx - float(dx), cy=s.cy - float(dy))

    def centred_on(self, l0_x: float, l0_y: float) -> ViewState:
        """The state centred on a level-0 point, at the same zoom, rotation and flip."""
        return replace(self.state, cx=l0_x, cy=l0_y)

    # -- tiles ---------------------------------------------------------------------
    def target_level(self) -> int:
        """Virtual level drawn at the current zoom: the one nearest the screen's resolution
        in log scale, so tiles are drawn at 0.71-1.41x (as map viewers do)."""
        level = math.floor(math.log2(max(self.state.downsample, 1e-9)) + 0.5)
        return min(max(level, 0), self.levels - 1)

    def tiles_in(self, level: int, l0_bounds: Bounds, margin: int = 0) -> list[tuple[int, int]]:
        """``(col, row)`` of the level's tiles meeting ``l0_bounds``, grown by ``margin``
        tiles, row by row."""
        span = TILE_SIZE << level
        c0 = max(int(l0_bounds[0] // span) - margin, 0)
        r0 = max(int(l0_bounds[1] // span) - margin, 0)
        c1 = min(int(math.ceil(l0_bounds[2] / span)) + margin, math.ceil(self.l0_width / span))
        r1 = min(int(math.ceil(l0_bounds[3] / span)) + margin, math.ceil(self.l0_height / span))
        return [(c, r) for r in range(r0, r1) for c in range(c0, c1)]

    def tile_plan(self) -> list[PlannedTile]:
        """Every tile wanted now, best first: the visible tiles of the target level, the
        next coarser level's (placeholders), a ring of one tile around the view, and the
        next finer level's under the central half of the view (prefetch)."""
        bounds = self.l0_visible_bounds()
        if bounds[2] <= bounds[0] or bounds[3] <= bounds[1]:
            return []
        level = self.target_level()
        visible = set(self.tiles_in(level, bounds))
        groups = [(VISIBLE, level, visible)]
        if level + 1 < self.levels:
            groups.append((COARSER, level + 1, set(self.tiles_in(level + 1, bounds))))
        groups.append((RING, level, set(self.tiles_in(level, bounds, margin=1)) - visible))
        if level > 0:
            mx, my = (bounds[0] + bounds[2]) / 2, (bounds[1] + bounds[3]) / 2
            hx, hy = (bounds[2] - bounds[0]) / 4, (bounds[3] - bounds[1]) / 4
            centre = (mx - hx, my - hy, mx + hx, my + hy)
            groups.append((FINER, level - 1, set(self.tiles_in(level - 1, centre))))
        cx, cy = self.state.cx, self.state.cy
        plan = []
        for rank, lv, tiles in groups:
            span = TILE_SIZE << lv
            for col, row in tiles:
                dist = math.hypot((col + 0.5) * span - cx, (row + 0.5) * span - cy) / span
                plan.append(PlannedTile(rank, lv, col, row, dist))
        plan.sort(key=lambda tile: tile.priority)
        return plan
