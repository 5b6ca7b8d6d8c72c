"""Plain images (PNG, JPEG, BMP, flat TIFF — TMA cores, tiles) as in-memory pyramids."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import tifffile
from PIL import Image, UnidentifiedImageError

from her2viewer.errors import SlideError
from her2viewer.slide.base import (
    LevelInfo,
    Slide,
    SlideInfo,
    composite_on_white,
    estimate_objective_power,
)
from her2viewer.slide.fingerprint import file_fingerprint

#: Plain image suffixes read by Pillow.
PIL_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"})
TIFF_SUFFIXES = frozenset({".tif", ".tiff"})
#: Pyramid levels are built until the longest side is at most this.
SMALLEST_LEVEL_SIDE = 512
#: A recorded resolution coarser than this (um/px) is a screen default, not a scanner's.
MAX_PLAUSIBLE_MPP = 10.0
#: Most pixels a plain image may have: it is decoded whole into memory (about 4 bytes a
#: pixel for the pyramid, up to 12 at the peak of decoding a 16-bit RGBA file), so one
#: gigapixel fits a 24 GB machine. Larger images must be tiled pyramidal TIFFs.
MAX_IMAGE_PIXELS = 2**30
#: Pixels converted to 8 bits at a time, so that the conversion needs little extra memory.
CONVERT_CHUNK_PIXELS = 2**22


def _check_pixel_count(path: Path, width: int, height: int) -> None:
    """Refuse, before decoding, an image too large to hold in memory."""
    if width * height > MAX_IMAGE_PIXELS:
        raise SlideError(
            f"{path.name} declares {width} x {height} pixels ({width * height / 1e9:.1f} "
            f"gigapixels), more than the {MAX_IMAGE_PIXELS / 1e9:.2f} gigapixels a plain image "
            "may have; convert it to a tiled pyramidal TIFF (e.g. vips tiffsave --tile --pyramid)."
        )


def _scaled_chunk(chunk: np.ndarray) -> np.ndarray:
    """Scale integer (full range) or float (0..1) samples to uint8, in float32."""
    if np.issubdtype(chunk.dtype, np.integer):
        values = chunk.astype(np.float32) * np.float32(255.0 / np.iinfo(chunk.dtype).max)
        values = values.round()
    else:
        values = np.nan_to_num(chunk.astype(np.float32, copy=False), nan=0.0) * np.float32(255)
    return np.clip(values, 0, 255).astype(np.uint8)


def _to_uint8(array: np.ndarray) -> np.ndarray:
    """Convert samples of any depth to uint8 a band of rows at a time (1-bit: 0 or 255)."""
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.bool_:
        return array.view(np.uint8) * np.uint8(255)
    out = np.empty(array.shape, np.uint8)
    rows = max(1, CONVERT_CHUNK_PIXELS // max(1, array[0].size))
    for start in range(0, array.shape[0], rows):
        out[start : start + rows] = _scaled_chunk(array[start : start + rows])
    return out


def _to_rgb8(array: np.ndarray, name: str) -> np.ndarray:
    """Convert grey/RGB/RGBA arrays of any integer or float depth to RGB uint8."""
    if array.ndim == 3 and array.shape[0] in (3, 4) and array.shape[2] not in (3, 4):
        array = np.moveaxis(array, 0, -1)
    if array.ndim not in (2, 3) or array.size == 0 or min(array.shape[:2]) == 0:
        raise SlideError(f"{name} has a zero-size or unsupported image of shape {array.shape}.")
    array = _to_uint8(array)
    if array.ndim == 2:
        return np.repeat(array[..., None], 3, axis=2)
    channels = array.shape[2]
    if channels == 1:
        return np.repeat(array, 3, axis=2)
    if channels == 2:  # grey + alpha
        return composite_on_white(np.concatenate([array[..., :1]] * 3 + [array[..., 1:]], axis=2))
    if channels == 4:
        return composite_on_white(array)
    return np.ascontiguousarray(array[..., :3])


def _mpp_from_resolution(pixels_per_unit: float | None, unit_cm: float) -> float | None:
    if not pixels_per_unit or pixels_per_unit <= 0:
        return None
    mpp = unit_cm * 1e4 / pixels_per_unit
    return round(mpp, 6) if mpp <= MAX_PLAUSIBLE_MPP else None


def _load_pil(path: Path) -> tuple[np.ndarray, float | None]:
    previous, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None  # checked here instead
    try:
        with Image.open(path) as image:
            _check_pixel_count(path, *image.size)
            image.load()
            dpi = image.info.get("dpi")
            array = np.asarray(image.convert("RGBA") if image.mode == "P" else image)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise SlideError(f"{path.name} is not a readable image: {exc}.") from exc
    finally:
        Image.MAX_IMAGE_PIXELS = previous
    mpp = _mpp_from_resolution(float(dpi[0]), 2.54) if dpi else None
    return array, mpp


def _load_tiff(path: Path) -> tuple[np.ndarray, float | None]:
    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages.first
            _check_pixel_count(path, int(page.imagewidth), int(page.imagelength))
            array = page.asarray()
            tags = page.tags
            unit = tags.get("ResolutionUnit")
            xres = tags.get("XResolution")
            mpp = None
            if xres is not None and unit is not None and int(unit.value) in (2, 3):
                numerator, denominator = xres.value
                unit_cm = 2.54 if int(unit.value) == 2 else 1.0
                mpp = _mpp_from_resolution(numerator / max(denominator, 1), unit_cm)
    except (tifffile.TiffFileError, OSError, ValueError, IndexError, KeyError) as exc:
        raise SlideError(f"{path.name} is not a readable TIFF image: {exc}.") from exc
    return array, mpp


def _build_pyramid(base: np.ndarray) -> list[np.ndarray]:
    levels = [base]
    while max(levels[-1].shape[:2]) > SMALLEST_LEVEL_SIDE:
        previous = levels[-1]
        size = (max(1, previous.shape[1] // 2), max(1, previous.shape[0] // 2))
        levels.append(cv2.resize(previous, size, interpolation=cv2.INTER_AREA))
    return levels


class ImageSlide(Slide):
    """A plain image held in memory as a power-of-two pyramid."""

    def __init__(self, path: Path):
        loader = _load_tiff if path.suffix.lower() in TIFF_SUFFIXES else _load_pil
        raw, mpp = loader(path)
        rgb = _to_rgb8(raw, path.name)
        self._levels = _build_pyramid(rgb)
        for array in self._levels:
            array.setflags(write=False)
        height, width = rgb.shape[:2]
        levels = tuple(LevelInfo(a.shape[1], a.shape[0], width / a.shape[1]) for a in self._levels)
        super().__init__(
            SlideInfo(
                path=str(path),
                vendor="image",
                width=width,
                height=height,
                levels=levels,
                mpp_x=mpp,
                mpp_y=mpp,
                objective_power=None,
                objective_power_estimate=estimate_objective_power(mpp),
                associated_images=(),
                fingerprint=file_fingerprint(path),
                properties={"image.format": path.suffix.lower().lstrip(".")},
            )
        )

    def _read(self, x: int, y: int, level: int, width: int, height: int) -> np.ndarray:
        array = self._levels[level]
        downsample = self.info.levels[level].downsample
        left, top = int(x // downsample), int(y // downsample)
        out = np.full((height, width, 3), 255, dtype=np.uint8)
        src_x0, src_y0 = max(left, 0), max(top, 0)
        src_x1 = min(left + width, array.shape[1])
        src_y1 = min(top + height, array.shape[0])
        if src_x1 > src_x0 and src_y1 > src_y0:
            out[src_y0 - top : src_y1 - top, src_x0 - left : src_x1 - left] = array[
                src_y0:src_y1, src_x0:src_x1
            ]
        return out

    def _associated(self, name: str) -> np.ndarray:  # pragma: no cover - none exist
        raise SlideError(f"{self.info.path} has no associated images.")
