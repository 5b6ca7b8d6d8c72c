"""Slides read through OpenSlide: SVS, NDPI, MRXS, SCN, BIF, Philips TIFF, tiled TIFF, DICOM."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import openslide

from her2viewer.errors import SlideError
from her2viewer.slide.base import (
    LevelInfo,
    Slide,
    SlideInfo,
    composite_on_white,
    estimate_objective_power,
)
from her2viewer.slide.fingerprint import file_fingerprint


def _float_property(properties, key: str) -> float | None:
    try:
        value = float(properties[key])
    except (KeyError, TypeError, ValueError):
        return None
    return value if value > 0 else None


def _rgb(image) -> np.ndarray:
    """Convert a PIL image from OpenSlide (RGBA, straight alpha) to RGB on white."""
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[2] == 4:
        if cv2.minMaxLoc(cv2.extractChannel(array, 3))[0] == 255:  # opaque: the common case
            return cv2.cvtColor(array, cv2.COLOR_RGBA2RGB)
        return composite_on_white(array)
    return np.ascontiguousarray(np.asarray(image.convert("RGB")))


class OpenSlideSlide(Slide):
    """A slide in any format OpenSlide reads."""

    def __init__(self, path: Path):
        self._path = path
        try:
            self._osr = openslide.OpenSlide(str(path))
        except openslide.OpenSlideUnsupportedFormatError as exc:
            raise SlideError(f"{path.name} is not in a slide format OpenSlide reads.") from exc
        except openslide.OpenSlideError as exc:
            raise SlideError(f"{path.name} is damaged or incomplete: {exc}.") from exc
        super().__init__(self._build_info())

    def _build_info(self) -> SlideInfo:
        osr = self._osr
        props = {str(k): str(v) for k, v in osr.properties.items()}
        width, height = osr.dimensions
        if width <= 0 or height <= 0:
            raise SlideError(f"{self._path.name} has a zero-size image ({width}x{height}).")
        levels = tuple(
            LevelInfo(int(w), int(h), float(ds))
            for (w, h), ds in zip(osr.level_dimensions, osr.level_downsamples, strict=True)
        )
        mpp_x = _float_property(props, openslide.PROPERTY_NAME_MPP_X)
        mpp_y = _float_property(props, openslide.PROPERTY_NAME_MPP_Y)
        power = _float_property(props, openslide.PROPERTY_NAME_OBJECTIVE_POWER)
        return SlideInfo(
            path=str(self._path),
            vendor=props.get(openslide.PROPERTY_NAME_VENDOR, "unknown"),
            width=int(width),
            height=int(height),
            levels=levels,
            mpp_x=mpp_x,
            mpp_y=mpp_y,
            objective_power=power,
            objective_power_estimate=None if power else estimate_objective_power(mpp_x),
            associated_images=tuple(sorted(osr.associated_images.keys())),
            fingerprint=file_fingerprint(self._path, props.get("openslide.quickhash-1", "")),
            properties=props,
        )

    def _read(self, x: int, y: int, level: int, width: int, height: int) -> np.ndarray:
        try:
            region = self._osr.read_region((x, y), level, (width, height))
        except openslide.OpenSlideError as exc:
            raise SlideError(
                f"{self._path.name} could not be decoded at ({x}, {y}): {exc}."
            ) from exc
        return _rgb(region)

    def _associated(self, name: str) -> np.ndarray:
        try:
            return _rgb(self._osr.associated_images[name])
        except openslide.OpenSlideError as exc:
            raise SlideError(f"{self._path.name}: associated image '{name}' is damaged.") from exc

    def close(self) -> None:
        """Close the OpenSlide handle (closing twice is harmless)."""
        if self._osr is not None:
            self._osr.close()
            self._osr = None
