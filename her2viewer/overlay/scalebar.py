"""Scale bar arithmetic: a round physical length that fits a target on-screen width."""

from __future__ import annotations

import math

_STEPS = (1, 2, 5)


def _round_down(value: float) -> float:
    magnitude = 10 ** math.floor(math.log10(value))
    return max(s * magnitude for s in _STEPS if s * magnitude <= value * (1 + 1e-9))


def scale_bar(downsample: float, mpp: float | None, target_px: float = 120.0) -> tuple[float, str]:
    """Choose a scale bar for the current zoom.

    Parameters
    ----------
    downsample : float
        Level-0 pixels per screen pixel.
    mpp : float or None
        Microns per level-0 pixel; ``None`` when the slide does not record it.
    target_px : float
        Longest bar wanted, in screen pixels.

    Returns
    -------
    (float, str)
        Bar length in screen pixels and its label, e.g. ``"500 µm"``, ``"2 mm"``
        or ``"1000 px (no mpp)"`` when the pixel size is unknown.
    """
    if downsample <= 0 or target_px <= 0:
        raise ValueError("downsample and target_px must be positive")
    level0_px = target_px * downsample
    if not mpp:
        length = _round_down(level0_px)
        return length / downsample, f"{length:g} px (no mpp)"
    microns = _round_down(level0_px * mpp)
    label = f"{microns / 1000:g} mm" if microns >= 1000 else f"{microns:g} µm"
    return microns / mpp / downsample, label
