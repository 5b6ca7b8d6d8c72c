"""What a radiology viewer needs from a volume, without Qt: windows, ROI outlines, slices.

Window presets are the usual CT windows in Hounsfield units (width, level): soft
tissue W400/L40, lung W1500/L-600, bone W2000/L300. MR intensities have no fixed
scale, so ``auto`` windows them to the 0.5-99.5th percentiles of the volume.
"""

from __future__ import annotations

import numpy as np

#: Preset name -> (window width, window level) in HU.
WINDOW_PRESETS: dict[str, tuple[float, float]] = {
    "soft tissue": (400.0, 40.0),
    "lung": (1500.0, -600.0),
    "bone": (2000.0, 300.0),
}
AUTO = "auto"
PRESET_NAMES = (*WINDOW_PRESETS, AUTO)


def looks_like_ct(array: np.ndarray) -> bool:
    """Whether intensities look like CT Hounsfield units (air near -1000 present)."""
    return bool(array.size) and float(array.min()) <= -500


def default_preset(array: np.ndarray) -> str:
    """Soft tissue for CT, ``auto`` for anything else (MR)."""
    return "soft tissue" if looks_like_ct(array) else AUTO


def window_range(preset: str, array: np.ndarray) -> tuple[float, float]:
    """Display range (lowest, highest value) of a window preset.

    Parameters
    ----------
    preset : str
        One of :data:`PRESET_NAMES`.
    array : numpy.ndarray
        The volume (used by ``auto`` only).

    Returns
    -------
    (float, float)
        ``level - width / 2`` and ``level + width / 2`` (``auto``: the 0.5 and 99.5th
        percentiles, widened to at least 1 so that a flat volume still shows).
    """
    if preset == AUTO:
        low, high = (float(v) for v in np.percentile(array, [0.5, 99.5]))
        return low, max(high, low + 1.0)
    width, level = WINDOW_PRESETS[preset]
    return level - width / 2, level + width / 2


def outline_segments(mask: np.ndarray) -> np.ndarray:
    """Voxel-edge outline of a 2D mask as line segments.

    Parameters
    ----------
    mask : numpy.ndarray
        2D boolean array indexed ``(row, column)``.

    Returns
    -------
    numpy.ndarray
        ``(N, 2, 2)`` segments of ``(x, y)`` end points, where pixel ``(r, c)``
        spans ``x`` in ``[c, c + 1]`` and ``y`` in ``[r, r + 1]``; every edge between a
        pixel inside and one outside the mask (or the array border) appears once.
    """
    padded = np.pad(np.asarray(mask, bool), 1)
    rows, cols = np.nonzero(padded[1:, :] != padded[:-1, :])  # horizontal edges at y = rows
    horizontal = np.stack([np.stack([cols - 1, rows], 1), np.stack([cols, rows], 1)], axis=1)
    rows, cols = np.nonzero(padded[:, 1:] != padded[:, :-1])  # vertical edges at x = cols
    vertical = np.stack([np.stack([cols, rows - 1], 1), np.stack([cols, rows], 1)], axis=1)
    return np.concatenate([horizontal, vertical]).astype(float).reshape(-1, 2, 2)


def roi_slices(mask: np.ndarray) -> np.ndarray:
    """Indices of the slices (first axis) that hold part of the ROI."""
    return np.flatnonzero(np.asarray(mask, bool).any(axis=(1, 2)))


def largest_roi_slice(mask: np.ndarray) -> int:
    """The slice with the largest ROI area (the middle slice when the mask is empty)."""
    areas = np.asarray(mask, bool).sum(axis=(1, 2))
    return int(np.argmax(areas)) if areas.any() else mask.shape[0] // 2
