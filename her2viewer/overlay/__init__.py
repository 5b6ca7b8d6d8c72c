"""Score maps, masks and vectors in level-0 coordinates -> coloured RGBA, without Qt."""

from her2viewer.overlay.colormaps import (
    COLORMAPS,
    DEFAULT_COLORMAP,
    Legend,
    apply_colormap,
    colormap_lut,
)
from her2viewer.overlay.layers import (
    HeatmapLayer,
    MaskLayer,
    OverlayError,
    OverlayLayer,
    VectorLayer,
    render_level,
)

__all__ = [
    "COLORMAPS",
    "DEFAULT_COLORMAP",
    "HeatmapLayer",
    "Legend",
    "MaskLayer",
    "OverlayError",
    "OverlayLayer",
    "VectorLayer",
    "apply_colormap",
    "colormap_lut",
    "render_level",
]
