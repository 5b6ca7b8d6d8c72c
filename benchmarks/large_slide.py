"""A 100000 x 80000 Aperio-style slide written in seconds, for benchmarks.

The high-resolution levels are pre-encoded JPEG tiles (one tissue tile, one glass tile,
chosen by a low-resolution tissue layout); the lowest level is rendered from the layout.
Reading any level gives consistent tissue geometry, at tile granularity above the lowest.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import cv2
import imagecodecs
import numpy as np
import tifffile

TILE = 256
TISSUE_RGB = (214, 150, 196)
GLASS_RGB = (244, 244, 246)


def _layout(width: int, height: int, scale: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    h, w = math.ceil(height / scale), math.ceil(width / scale)
    mask = np.zeros((h, w), np.uint8)
    for _ in range(5):
        centre = (int(rng.uniform(0.2, 0.8) * w), int(rng.uniform(0.2, 0.8) * h))
        axes = (int(rng.uniform(0.08, 0.2) * w), int(rng.uniform(0.08, 0.2) * h))
        cv2.ellipse(mask, centre, axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
    return mask


def _tile_bytes(rgb) -> bytes:
    rng = np.random.default_rng(1)
    tile = np.clip(np.array(rgb)[None, None] + rng.normal(0, 6, (TILE, TILE, 3)), 0, 255).astype(
        np.uint8
    )
    return imagecodecs.jpeg8_encode(tile, level=85)


def write_large_slide(path: Path, width: int, height: int, magnification: int = 20) -> None:
    """Write a large Aperio-style pyramid quickly (see module docstring).

    ``magnification`` is the scan's objective power (mpp = 10 / magnification).
    """
    sizes = [(width, height)]
    while max(sizes[-1]) // 4 >= 512:
        sizes.append((math.ceil(sizes[-1][0] / 4), math.ceil(sizes[-1][1] / 4)))
    lowest_ds = 4 ** (len(sizes) - 1)
    mask = _layout(width, height, lowest_ds)
    tissue, glass = _tile_bytes(TISSUE_RGB), _tile_bytes(GLASS_RGB)
    description = (
        f"Aperio Image Library v12.0.15 \r\n{width}x{height} (256x256) JPEG/RGB Q=85"
        f"|AppMag = {magnification}|MPP = {10 / magnification}"
    )
    with tifffile.TiffWriter(path, bigtiff=True) as tif:
        for index, (w, h) in enumerate(sizes[:-1]):
            ds = 4**index

            def tiles(w=w, h=h, ds=ds):
                for ty in range(math.ceil(h / TILE)):
                    for tx in range(math.ceil(w / TILE)):
                        my = min(mask.shape[0] - 1, int((ty + 0.5) * TILE * ds / lowest_ds))
                        mx = min(mask.shape[1] - 1, int((tx + 0.5) * TILE * ds / lowest_ds))
                        yield tissue if mask[my, mx] else glass

            tif.write(
                tiles(),
                shape=(h, w, 3),
                dtype=np.uint8,
                tile=(TILE, TILE),
                compression="jpeg",
                photometric="rgb",
                description=description if index == 0 else "level",
                metadata=None,
            )
            if index == 0:
                thumb = np.where(mask[..., None] > 0, TISSUE_RGB, GLASS_RGB).astype(np.uint8)
                tif.write(
                    cv2.resize(thumb, (512, 512 * thumb.shape[0] // thumb.shape[1])),
                    photometric="rgb",
                    compression="jpeg",
                    description="thumbnail",
                    metadata=None,
                )
        w, h = sizes[-1]
        low = np.where(mask[:h, :w, None] > 0, TISSUE_RGB, GLASS_RGB).astype(np.uint8)
        tif.write(
            low,
            tile=(TILE, TILE),
            compression="jpeg",
            photometric="rgb",
            description="level",
            metadata=None,
        )


def cached_large_slide(folder: Path, width: int, height: int) -> Path:
    """The slide :func:`write_large_slide` writes, kept in ``folder`` for later runs.

    Written under a temporary name and renamed, so a run killed while writing it leaves
    no half slide for the next one.
    """
    path = Path(folder) / f"large-{width}x{height}.svs"
    if not path.exists():
        partial = path.with_name(f"partial-{os.getpid()}-{path.name}")
        write_large_slide(partial, width, height)
        os.replace(partial, path)
    return path
