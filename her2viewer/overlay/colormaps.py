"""Colormaps and legends for score maps, without Qt.

Colormaps are 256-entry RGB lookup tables taken from OpenCV's built-in maps, or
interpolated from published control points where OpenCV has no such map (the
diverging ``coolwarm`` of Moreland 2009, CLAM's heatmap default), so there is one
source of truth for every colour the viewer and the exports draw.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

import cv2
import numpy as np

#: Moreland's "cool to warm" diverging map, RGB at nine evenly spaced points.
_COOLWARM = (
    (59, 76, 192), (98, 130, 234), (141, 176, 254), (184, 208, 249), (221, 221, 221),
    (245, 196, 173), (244, 154, 123), (222, 96, 77), (180, 4, 38),
)  # fmt: skip

#: Colormap names offered to users, mapped to OpenCV's colormap codes or control points.
COLORMAPS = {
    "coolwarm": _COOLWARM,
    "jet": cv2.COLORMAP_JET,
    "viridis": cv2.COLORMAP_VIRIDIS,
    "inferno": cv2.COLORMAP_INFERNO,
    "magma": cv2.COLORMAP_MAGMA,
    "plasma": cv2.COLORMAP_PLASMA,
    "turbo": cv2.COLORMAP_TURBO,
    "hot": cv2.COLORMAP_HOT,
    "cividis": cv2.COLORMAP_CIVIDIS,
}
DEFAULT_COLORMAP = "jet"


@cache
def colormap_lut(name: str) -> np.ndarray:
    """Return a colormap as a read-only ``(256, 3)`` uint8 RGB lookup table.

    Parameters
    ----------
    name : str
        One of :data:`COLORMAPS`.

    Raises
    ------
    ValueError
        For an unknown name.
    """
    if name not in COLORMAPS:
        raise ValueError(f"unknown colormap {name!r}; choose one of {', '.join(COLORMAPS)}")
    spec = COLORMAPS[name]
    if isinstance(spec, tuple):
        points = np.asarray(spec, dtype=np.float64)
        at = np.linspace(0.0, 1.0, len(points))
        ramp = np.linspace(0.0, 1.0, 256)
        lut = np.stack([np.interp(ramp, at, points[:, c]) for c in range(3)], axis=1)
        lut = np.round(lut).astype(np.uint8)
    else:
        ramp = np.arange(256, dtype=np.uint8).reshape(256, 1)
        bgr = cv2.applyColorMap(ramp, spec).reshape(256, 3)
        lut = np.ascontiguousarray(bgr[:, ::-1])
    lut.setflags(write=False)
    return lut


def apply_colormap(
    values: np.ndarray,
    name: str = DEFAULT_COLORMAP,
    vmin: float = 0.0,
    vmax: float = 1.0,
    threshold: float | None = None,
) -> np.ndarray:
    """Colour a float array into straight-alpha RGBA uint8.

    Parameters
    ----------
    values : numpy.ndarray
        ``(H, W)`` scores; NaN means "no value" and comes out transparent.
    name : str
        Colormap name.
    vmin, vmax : float
        Values mapped to the first and last colour (clipped outside).
    threshold : float, optional
        Values below it come out transparent.

    Returns
    -------
    numpy.ndarray
        ``(H, W, 4)`` uint8 RGBA, alpha 255 where a value is shown.
    """
    if vmax <= vmin:
        raise ValueError(f"vmax ({vmax}) must be greater than vmin ({vmin})")
    values = np.asarray(values, dtype=np.float32)
    valid = np.isfinite(values)
    if threshold is not None:
        valid &= values >= threshold
    scaled = (np.nan_to_num(values, nan=vmin) - vmin) * (255.0 / (vmax - vmin))
    index = np.clip(scaled, 0, 255).astype(np.uint8)
    rgba = np.empty(values.shape + (4,), np.uint8)
    rgba[..., :3] = colormap_lut(name)[index]
    rgba[..., 3] = np.where(valid, 255, 0)
    return rgba


def nice_ticks(vmin: float, vmax: float, count: int = 5) -> list[float]:
    """Return round tick values covering ``[vmin, vmax]`` (about ``count`` of them)."""
    if vmax <= vmin:
        return [vmin]
    raw = (vmax - vmin) / max(count - 1, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.ceil(vmin / step - 1e-9) * step
    ticks = []
    value = first
    while value <= vmax + step * 1e-9:
        ticks.append(round(value, 10))
        value += step
    return ticks


def format_value(value: float) -> str:
    """Format a score for a legend or a readout with as few digits as it needs."""
    if value == 0:
        return "0"
    if abs(value) >= 1000 or abs(value) < 0.01:
        return f"{value:.2e}"
    return f"{value:.3g}"


@dataclass(frozen=True)
class Legend:
    """What a heatmap legend shows: a colour bar and its numbers.

    Attributes
    ----------
    colormap : str
        Colormap name.
    vmin, vmax : float
        Values at the two ends of the bar.
    title : str
        What the values are (e.g. "attention (percentile)").
    threshold : float or None
        Values below it are not drawn.
    """

    colormap: str
    vmin: float
    vmax: float
    title: str = ""
    threshold: float | None = None

    def ticks(self, count: int = 5) -> list[tuple[float, float, str]]:
        """Return ``(value, position 0..1 along the bar, label)`` for each tick."""
        span = self.vmax - self.vmin
        return [
            (v, (v - self.vmin) / span, format_value(v))
            for v in nice_ticks(self.vmin, self.vmax, count)
        ]

    def bar(self, length: int = 256, thickness: int = 16, vertical: bool = False) -> np.ndarray:
        """Return the colour bar as RGBA uint8, low values left (or bottom when vertical)."""
        values = np.linspace(self.vmin, self.vmax, length, dtype=np.float32)[None, :]
        rgba = apply_colormap(values, self.colormap, self.vmin, self.vmax)
        rgba[..., 3] = 255
        if self.threshold is not None:
            rgba[0, values[0] < self.threshold, 3] = 60
        image = np.repeat(rgba, thickness, axis=0)
        return np.ascontiguousarray(np.rot90(image)) if vertical else image
