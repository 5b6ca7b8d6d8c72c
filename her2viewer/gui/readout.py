"""The cursor readout: the slide's RGB, optical densities and coordinates under the mouse.

The pixel comes from the tiles the pane has already cached (the finest one covering the
point, else the overview), so the readout never reads the slide on the GUI thread.
Coordinates are in level-0 pixels, and in micrometres when the slide knows its pixel
size.
"""

from __future__ import annotations

import numpy as np

from her2viewer.stain.deconvolution import rgb_to_od
from her2viewer.viewport import TILE_SIZE

#: Finer levels than the drawn one searched for a cached tile (the prefetch and the lens).
FINER_SEARCHED = 2


def cached_pixel(view, x: float, y: float) -> tuple[int, int, int] | None:
    """The slide's RGB at level-0 ``(x, y)`` from the finest cached tile of ``view`` (a
    :class:`~her2viewer.gui.slideview.SlideView`), else its overview; None off the slide
    or while nothing covering the point is cached."""
    info = view.slide.info if view.slide is not None else None
    if info is None or not (0 <= x < info.width and 0 <= y < info.height):
        return None
    target = view.target_level()
    for level in range(max(target - FINER_SEARCHED, 0), view.viewport.levels):
        span = TILE_SIZE << level
        col, row = int(x // span), int(y // span)
        tile = view.cached_slide_tile(level, col, row)
        if tile is not None and tile.array is not None:
            scale = 1 << level
            return _bgra_at(tile.array, (x - col * span) / scale, (y - row * span) / scale)
    overview = view.overview
    if overview is None or overview.array is None:
        return None
    height, width = overview.array.shape[:2]
    return _bgra_at(overview.array, x * width / info.width, y * height / info.height)


def _bgra_at(bgra: np.ndarray, px: float, py: float) -> tuple[int, int, int]:
    """RGB of a BGRA tile's pixel at ``(px, py)`` (clipped into the tile)."""
    height, width = bgra.shape[:2]
    b, g, r = bgra[min(int(py), height - 1), min(int(px), width - 1), :3]
    return int(r), int(g), int(b)


def coordinates_text(mpp: float | None, x: float, y: float) -> str:
    """``x``, ``y`` in level-0 pixels, and in µm when the pixel size ``mpp`` is known."""
    pixels = f"x {x:,.0f}  y {y:,.0f} px (level 0)"
    return f"{pixels}   x {x * mpp:,.1f}  y {y * mpp:,.1f} µm" if mpp else pixels


def readout_text(view, x: float, y: float) -> str:
    """The status bar's readout of level-0 ``(x, y)`` on ``view``: coordinates, RGB and
    optical densities (RGB and OD only where a cached tile covers the point)."""
    text = coordinates_text(view.slide.info.mpp_x, x, y)
    rgb = cached_pixel(view, x, y)
    if rgb is None:
        return text
    od = rgb_to_od(np.array([[rgb]], np.uint8))[0, 0]
    return f"{text}   RGB {rgb[0]}, {rgb[1]}, {rgb[2]}   OD {od[0]:.2f}, {od[1]:.2f}, {od[2]:.2f}"
