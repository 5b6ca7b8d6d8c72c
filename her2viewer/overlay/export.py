"""Exporters of overlays: images (PNG, JPEG, TIFF, BMP) and pyramidal RGBA TIFF overlays.

Every file is written atomically (:mod:`her2viewer.outputs`), so a full disk or a
killed run leaves no half-written image behind.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from her2viewer.errors import OutputError
from her2viewer.outputs import atomic_output, write_bytes_atomic
from her2viewer.overlay.layers import OverlayLayer, render_level

#: Image formats :func:`write_image` may write, by suffix.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


def write_image(path: str | Path, image: np.ndarray, suffix: str | None = None) -> Path:
    """Encode an RGB or grey ``uint8`` image and write it atomically.

    Parameters
    ----------
    path : path
        The file to write.
    image : ndarray
        ``(H, W, 3)`` RGB or ``(H, W)`` grey, ``uint8``.
    suffix : str, optional
        The format, as a suffix such as ``".png"``; by default ``path``'s own suffix.

    Raises
    ------
    OutputError
        One sentence when the image cannot be encoded in that format or written.
    """
    import cv2

    path = Path(path)
    suffix = suffix or path.suffix
    pixels = cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if image.ndim == 3 else image
    try:
        ok, encoded = cv2.imencode(suffix, pixels)
    except cv2.error:
        ok = False
    if not ok:
        raise OutputError(f"cannot write {path}: the image could not be encoded as {suffix}.")
    return write_bytes_atomic(path, encoded.tobytes())


def blend_layer(
    base: np.ndarray, layer: OverlayLayer, downsample: float, alpha: float
) -> np.ndarray:
    """Return the RGB ``base`` image (one pyramid level) with ``layer`` painted over it.

    Parameters
    ----------
    base : ndarray
        ``(H, W, 3)`` image of the slide at ``downsample`` level-0 pixels per pixel.
    layer : OverlayLayer
        The overlay, in level-0 coordinates.
    downsample : float
        The level's downsample.
    alpha : float
        Opacity of the layer (0-1), multiplied by the layer's own alpha.
    """
    height, width = base.shape[:2]
    rgba = render_level(layer, downsample, (width, height)).astype(np.float32)
    weight = alpha * rgba[..., 3:] / 255.0
    blended = base.astype(np.float32) * (1 - weight) + rgba[..., :3] * weight
    return blended.round().astype(np.uint8)


def write_overlay_tiff(
    path: str | Path,
    layer: OverlayLayer,
    slide_size: tuple[int, int],
    downsample: float,
    mpp: float | None = None,
    tile: int = 256,
) -> Path:
    """Write an overlay layer as a tiled, pyramidal RGBA TIFF aligned with the slide.

    The full-resolution page covers the whole slide at ``downsample`` level-0 pixels
    per pixel (recorded in the ImageDescription and, with ``mpp``, as the TIFF
    resolution), followed by SubIFDs halving down to one tile. Written atomically.

    Raises
    ------
    OutputError
        One sentence when the file cannot be written (full disk, no permission).
    """
    import cv2
    import tifffile

    width, height = (max(1, int(np.ceil(s / downsample))) for s in slide_size)
    levels = [render_level(layer, downsample, (width, height))]
    while max(levels[-1].shape[:2]) > tile:
        h, w = levels[-1].shape[:2]
        size = (max(1, w // 2), max(1, h // 2))
        levels.append(cv2.resize(levels[-1], size, interpolation=cv2.INTER_AREA))
    description = json.dumps({"level0_downsample": downsample, "slide_size": list(slide_size)})
    options = dict(
        tile=(tile, tile), photometric="rgb", extrasamples=["unassalpha"], compression="zlib"
    )
    if mpp:
        per_cm = 1e4 / (mpp * downsample)
        options.update(resolution=(per_cm, per_cm), resolutionunit="CENTIMETER")
    with atomic_output(path) as tmp, tifffile.TiffWriter(tmp, bigtiff=True) as tif:
        tif.write(levels[0], subifds=len(levels) - 1, description=description, **options)
        for i, level in enumerate(levels[1:], start=1):
            if mpp:
                per_cm = 1e4 / (mpp * downsample * 2**i)
                options["resolution"] = (per_cm, per_cm)
            tif.write(level, subfiletype=1, **options)
    return Path(path)
