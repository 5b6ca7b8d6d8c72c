"""Non-overlapping tile layouts over a whole slide, the tile reader and the background test.

Unlike a :class:`~her2viewer.tissue.PatchGrid`, which keeps only patches over segmented
tissue, a :class:`TileLayout` covers the whole slide row by row (HER2Net's tiling, seed
002); the background tiles are dropped afterwards by their colour (:func:`is_background`).
Tile corners are level-0 pixels; tiles at the right/bottom edge are padded with white,
never resized.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import cv2
import numpy as np

from her2viewer.errors import TissueError
from her2viewer.slide import Slide

#: Default tile side at the layout's magnification (HER2Net's 512 px).
TILE_SIZE = 512
#: A tile whose mean HSV saturation (0..255) is at most this is background (HER2Net: 10).
BACKGROUND_SATURATION = 10.0


@dataclass(frozen=True)
class TileLayout:
    """Non-overlapping tiles covering a slide.

    Attributes
    ----------
    coords : numpy.ndarray
        ``(N, 2)`` int64 level-0 top-left corners, row by row.
    tile_size0 : int
        Tile side in level-0 pixels.
    out_size : int
        Side of the tile image handed to the networks.
    slide_size : (int, int)
        Level-0 ``(width, height)``.
    """

    coords: np.ndarray
    tile_size0: int
    out_size: int
    slide_size: tuple[int, int]

    @property
    def mask_downsample(self) -> float:
        """Level-0 pixels per pixel of a tile image (and of the slide masks)."""
        return self.tile_size0 / self.out_size

    @property
    def grid_shape(self) -> tuple[int, int]:
        """Tile rows and columns."""
        w, h = self.slide_size
        return math.ceil(h / self.tile_size0), math.ceil(w / self.tile_size0)


def tile_layout(
    slide: Slide, magnification: float, tile_size: int = TILE_SIZE, out_size: int | None = None
) -> TileLayout:
    """Cut a slide into ``tile_size`` px tiles at ``magnification``.

    Parameters
    ----------
    slide : Slide
        Open slide with a known pixel size or objective power.
    magnification : float
        Objective magnification of the tiles (e.g. 4 as in the seed, 20).
    tile_size : int
        Tile side at that magnification (512).
    out_size : int, optional
        Side of the returned tile images; ``tile_size`` by default.

    Raises
    ------
    TissueError
        When a size is not positive.
    """
    if tile_size < 1 or (out_size is not None and out_size < 1):
        raise TissueError("Tile and input sizes must be positive.")
    tile0 = max(1, round(tile_size * slide.downsample_for_magnification(magnification)))
    w, h = slide.info.width, slide.info.height
    ys, xs = np.mgrid[0 : math.ceil(h / tile0), 0 : math.ceil(w / tile0)]
    coords = np.stack([xs.ravel(), ys.ravel()], 1).astype(np.int64) * tile0
    return TileLayout(coords, int(tile0), int(out_size or tile_size), (w, h))


def read_tile(slide: Slide, layout: TileLayout, index: int) -> np.ndarray:
    """Read tile ``index``; the part outside the slide is white padding, never stretched.

    Returns
    -------
    numpy.ndarray
        RGB uint8 ``(out_size, out_size, 3)``.
    """
    x, y = (int(v) for v in layout.coords[index])
    scale = layout.out_size / layout.tile_size0
    inside_w = min(layout.tile_size0, layout.slide_size[0] - x)
    inside_h = min(layout.tile_size0, layout.slide_size[1] - y)
    out_w, out_h = max(1, round(inside_w * scale)), max(1, round(inside_h * scale))
    level = slide.best_level_for_downsample(1.0 / scale)
    ds = slide.info.levels[level].downsample
    rgb = slide.read_region((x, y), level, (math.ceil(inside_w / ds), math.ceil(inside_h / ds)))
    if rgb.shape[:2] != (out_h, out_w):
        rgb = cv2.resize(rgb, (out_w, out_h), interpolation=cv2.INTER_AREA)
    tile = np.full((layout.out_size, layout.out_size, 3), 255, np.uint8)
    tile[:out_h, :out_w] = rgb[..., :3]
    return tile


def read_tile_batches(
    slide: Slide, layout: TileLayout, size: int, workers: int
) -> Iterator[tuple[list[int], np.ndarray]]:
    """Yield ``(indices, tiles)`` batches; the next batch decodes in threads while this one runs.

    Parameters
    ----------
    slide : Slide
    layout : TileLayout
    size : int
        Tiles per batch.
    workers : int
        Reader threads.
    """
    n = len(layout.coords)
    batches = [list(range(i, min(n, i + size))) for i in range(0, n, size)]
    if not batches:
        return
    with ThreadPoolExecutor(max(1, workers)) as pool:

        def submit(batch):
            return [pool.submit(read_tile, slide, layout, i) for i in batch]

        pending = submit(batches[0])
        for k, batch in enumerate(batches):
            tiles = np.stack([f.result() for f in pending])
            if k + 1 < len(batches):
                pending = submit(batches[k + 1])
            yield batch, tiles


def tile_saturation(rgb: np.ndarray) -> float:
    """Mean HSV saturation (0..255) of an RGB tile."""
    hsv = cv2.cvtColor(np.ascontiguousarray(rgb[..., :3]), cv2.COLOR_RGB2HSV)
    return float(hsv[..., 1].mean())


def is_background(rgb: np.ndarray, threshold: float = BACKGROUND_SATURATION) -> bool:
    """True for a pure background tile: mean saturation <= ``threshold`` (HER2Net: 10)."""
    return tile_saturation(rgb) <= threshold
