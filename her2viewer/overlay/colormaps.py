"""Colormaps and legends for score maps, without Qt.

Colormaps are 256-entry RGB lookup tables taken once from matplotlib's colormap
registry, so ``coolwarm`` is exactly the map CLAM draws its heatmaps with, and the
viewer and the exported PNG/TIFF colour every score from the same tables. Masks take
their class colours from the Okabe-Ito palette, safe for the common colour-vision
deficiencies.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

import numpy as np

from her2viewer.stats.style import PALETTE

#: Colormap names offered to users, each a name in matplotlib's colormap registry.
COLORMAPS = (
    "coolwarm", "jet", "viridis", "inferno", "magma", "plasma", "turbo", "hot", "cividis", "RdBu",
)  # fmt: skip
#: The heatmap default: CLAM draws its attention heatmaps with coolwarm (diverging, so the
#: 0.5 midpoint reads as neutral), and viewers compare ours with its reference pictures.
DEFAULT_COLORMAP = "coolwarm"
#: Default class colours of masks (RGB): class ``k`` (1, 2, ...) takes the k-th
#: Okabe-Ito colour; class 0 is background.
MASK_COLORS = {label: tuple(rgb) for label, rgb in enumerate(PALETTE[:-1], start=1)}


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
    import matplotlib  # deferred: only the first lookup of each map pays for it

    rgba = matplotlib.colormaps[name](np.linspace(0.0, 1.0, 256), bytes=True)
    lut = np.ascontiguousarray(rgba[:, :3])
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
