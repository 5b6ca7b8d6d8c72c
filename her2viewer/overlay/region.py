"""Export a region of a slide as PNG or TIFF, at full resolution or a chosen downsample.

A TIFF is written tile by tile from a generator (``tifffile``), each tile read from
the slide's best pyramid level and shrunk, so a region far larger than memory is
exported with memory that does not grow with it. A PNG needs the whole image at
once and is refused above :data:`MAX_PNG_PIXELS` with a sentence suggesting TIFF.
Both are written atomically (:func:`~her2viewer.outputs.atomic_output`).

>>> export_region(slide, (0, 0, 20000, 20000), 1.0, "region.tif")  # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from her2viewer.errors import Her2ViewerError
from her2viewer.outputs import atomic_output
from her2viewer.overlay.display import DisplaySettings, apply_display
from her2viewer.overlay.export import write_image
from her2viewer.slide.base import Slide

#: Largest PNG written (pixels): the encoder holds the whole image in memory.
MAX_PNG_PIXELS = 8192 * 8192
#: Side of the tiles read from the slide and written to a TIFF (output pixels).
TILE = 512
SUFFIXES = {".png": "PNG", ".tif": "TIFF", ".tiff": "TIFF"}


class RegionError(Her2ViewerError):
    """A region cannot be exported as asked (outside the slide, too large for PNG, ...)."""


def output_size(rect: tuple[int, int, int, int], downsample: float) -> tuple[int, int]:
    """Width and height in pixels of level-0 ``rect`` exported at ``downsample``."""
    return tuple(max(1, math.ceil(side / downsample)) for side in rect[2:])


def check_region(
    slide: Slide, rect: tuple[int, int, int, int], downsample: float, path: str | Path
) -> str:
    """Refuse in one sentence what cannot be exported; return the format ("PNG"/"TIFF").

    Raises
    ------
    RegionError
        When the rectangle is empty or leaves the slide, the downsample is below 1,
        the suffix is not .png/.tif/.tiff, or a PNG would be too large.
    """
    x, y, w, h = rect
    info = slide.info
    if w <= 0 or h <= 0:
        raise RegionError(f"The region {w}x{h} is empty; give a positive width and height.")
    if x < 0 or y < 0 or x + w > info.width or y + h > info.height:
        raise RegionError(
            f"The region {x},{y},{w},{h} leaves the slide ({info.width} x {info.height} px "
            "at level 0); give x,y,w,h inside it."
        )
    if not (math.isfinite(downsample) and downsample >= 1):
        raise RegionError(f"The downsample {downsample} is below 1; use 1 for full resolution.")
    kind = SUFFIXES.get(Path(path).suffix.lower())
    if kind is None:
        raise RegionError(f"{Path(path).name}: export a region as .png, .tif or .tiff.")
    out_w, out_h = output_size(rect, downsample)
    if kind == "PNG" and out_w * out_h > MAX_PNG_PIXELS:
        raise RegionError(
            f"{Path(path).name} would be {out_w} x {out_h} px, too large for PNG (at most "
            f"{MAX_PNG_PIXELS // 1_000_000} megapixels); write a .tif, which is written in "
            "tiles, or choose a larger downsample."
        )
    return kind


def read_scaled(
    slide: Slide, rect: tuple[int, int, int, int], downsample: float, size: tuple[int, int]
) -> np.ndarray:
    """Level-0 ``rect`` of ``slide`` as ``size`` (w, h) RGB pixels, read from the best level."""
    x, y, w, h = rect
    level = slide.best_level_for_downsample(downsample)
    ds = slide.info.levels[level].downsample
    src = (max(1, math.ceil(w / ds)), max(1, math.ceil(h / ds)))
    rgb = slide.read_region((x, y), level, src)
    if src != tuple(size):
        rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    return rgb


def region_tiles(
    slide: Slide,
    rect: tuple[int, int, int, int],
    downsample: float,
    display: DisplaySettings | None = None,
    tile: int = TILE,
) -> Iterator[np.ndarray]:
    """The output tiles of a region, row by row (edge tiles smaller), as shown by ``display``."""
    x0, y0, w, h = rect
    out_w, out_h = output_size(rect, downsample)
    for top in range(0, out_h, tile):
        for left in range(0, out_w, tile):
            size = (min(tile, out_w - left), min(tile, out_h - top))
            x, y = x0 + round(left * downsample), y0 + round(top * downsample)
            part = (
                x,
                y,
                min(round(size[0] * downsample), x0 + w - x),
                min(round(size[1] * downsample), y0 + h - y),
            )
            rgb = read_scaled(slide, part, downsample, size)
            yield rgb if display is None or display.neutral else apply_display(rgb, display)


def export_region(
    slide: Slide,
    rect: tuple[int, int, int, int],
    downsample: float,
    path: str | Path,
    display: DisplaySettings | None = None,
) -> Path:
    """Write level-0 ``rect`` (x, y, w, h) of ``slide`` at ``downsample`` as PNG or TIFF.

    Parameters
    ----------
    slide : Slide
        The open slide.
    rect : (int, int, int, int)
        The region in level-0 pixels.
    downsample : float
        Level-0 pixels per output pixel (1: full resolution).
    path : path
        The file; its suffix (.png, .tif, .tiff) picks the format.
    display : DisplaySettings, optional
        Levels and stain view applied to the pixels (as a pane shows them).

    Returns
    -------
    Path
        The file written (atomically; nothing is left on failure).

    Raises
    ------
    RegionError
        See :func:`check_region`.
    OutputError
        When the file cannot be written (full disk, no permission).
    """
    kind = check_region(slide, rect, downsample, path)
    tiles = region_tiles(slide, rect, downsample, display)
    out_w, out_h = output_size(rect, downsample)
    if kind == "PNG":
        image = np.empty((out_h, out_w, 3), np.uint8)
        columns = math.ceil(out_w / TILE)
        for index, rgb in enumerate(tiles):
            top, left = (step * TILE for step in divmod(index, columns))
            image[top : top + rgb.shape[0], left : left + rgb.shape[1]] = rgb
        return write_image(path, image, ".png")
    return _write_tiff(path, tiles, (out_h, out_w, 3), slide.info.mpp_x, downsample)


def _write_tiff(path, tiles, shape, mpp: float | None, downsample: float) -> Path:
    """Write ``tiles`` (row by row) as one tiled, deflate-compressed RGB TIFF page."""
    import tifffile

    options = dict(tile=(TILE, TILE), photometric="rgb", compression="zlib")
    if mpp:
        per_cm = 1e4 / (mpp * downsample)
        options.update(resolution=(per_cm, per_cm), resolutionunit="CENTIMETER")
    with atomic_output(path) as tmp, tifffile.TiffWriter(tmp, bigtiff=True) as tif:
        tif.write(tiles, shape=shape, dtype=np.uint8, **options)
    return Path(path)
