"""How a slide's pixels are shown: levels (brightness, contrast, gamma), stain views, image type.

Qt-free and numpy only, so that the viewer's tile workers apply a pane's
:class:`DisplaySettings` to each tile as it is read (a 256-entry lookup table per
channel through ``cv2.LUT``, and for a stain view one colour deconvolution), and the
GUI thread still draws one opaque image per tile.

Levels follow QuPath's display range: ``black`` and ``white`` are the input values
drawn as 0 and 255, then ``gamma`` bends the ramp between them. Brightness and
contrast are the centre and the inverse width of that range (see
:meth:`Levels.from_brightness_contrast`). A stain view shows one stain of the colour
deconvolution alone, recomposed as its own colour on white (as QuPath's channel
viewer does for "Brightfield H-DAB") or in grey.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import cv2
import numpy as np

from her2viewer.stain.deconvolution import (
    BACKGROUND_INTENSITY,
    HDAB,
    HE,
    tissue_pixels,
)

#: The stains a stain view can show per image type: name -> row of the stain matrix.
STAINS = {
    "brightfield-he": {"hematoxylin": 0, "eosin": 1},
    "brightfield-hdab": {"hematoxylin": 0, "dab": 1},
}
#: Reference stain matrix per brightfield image type (Ruifrok & Johnston).
REFERENCE_MATRICES = {"brightfield-he": HE, "brightfield-hdab": HDAB}
#: Percentiles of the overview stretched to black and white by "Auto".
AUTO_PERCENTILES = (0.5, 99.5)
#: An overview whose median grey is below this has a dark background: fluorescence.
DARK_BACKGROUND = 80.0
#: Median magenta-ness of tissue (red and blue above green, in 8-bit steps) above which a
#: brightfield slide is H&E: eosin makes tissue pink-purple, hematoxylin alone or DAB do not.
EOSIN_MAGENTA = 20.0
#: Optical density of each 8-bit value (a lookup instead of a logarithm per pixel).
_OD_TABLE = -np.log10(np.maximum(np.arange(256, dtype=np.float32), 1.0) / BACKGROUND_INTENSITY)
_RAMP = np.arange(256, dtype=np.float64)


@dataclass(frozen=True)
class Levels:
    """The display range of one channel.

    Attributes
    ----------
    black, white : float
        Input values drawn as 0 and 255 (``white > black``).
    gamma : float
        Exponent of the ramp between them (above 1 brightens the mid-tones).
    """

    black: float = 0.0
    white: float = 255.0
    gamma: float = 1.0

    @property
    def neutral(self) -> bool:
        """Whether these levels leave pixels unchanged."""
        return self.black == 0.0 and self.white == 255.0 and self.gamma == 1.0

    @property
    def brightness(self) -> float:
        """-1 (darkest) to 1 (brightest): how far the range's centre is below mid-grey."""
        return (127.5 - (self.black + self.white) / 2) / 127.5

    @property
    def contrast(self) -> float:
        """How many times narrower than 0-255 the range is (1: unchanged)."""
        return 255.0 / (self.white - self.black)

    @classmethod
    def from_brightness_contrast(
        cls, brightness: float, contrast: float, gamma: float = 1.0
    ) -> Levels:
        """The levels of a brightness (-1 to 1), a contrast (> 0) and a gamma (> 0)."""
        centre = 127.5 * (1.0 - brightness)
        half = 127.5 / contrast
        return cls(centre - half, centre + half, gamma)

    def lut(self) -> np.ndarray:
        """The 256-entry uint8 lookup table of these levels."""
        ramp = np.clip((_RAMP - self.black) / (self.white - self.black), 0.0, 1.0)
        return np.rint(255.0 * ramp ** (1.0 / self.gamma)).astype(np.uint8)


NEUTRAL = (Levels(), Levels(), Levels())


@dataclass(frozen=True)
class DisplaySettings:
    """Everything that changes how a pane draws its slide; hashable, so it keys tiles.

    Attributes
    ----------
    levels : tuple of three Levels
        Red, green and blue display ranges (equal for brightfield, per channel for
        fluorescence).
    stain : str or None
        The stain shown alone ("hematoxylin", "eosin", "dab"), ``None`` for the slide.
    matrix : tuple or None
        The slide's stain matrix (rows of unit OD vectors) used by a stain view.
    grey : bool
        Draw the stain view in grey rather than in the stain's own colour.
    """

    levels: tuple[Levels, Levels, Levels] = NEUTRAL
    stain: str | None = None
    matrix: tuple[tuple[float, float, float], ...] | None = None
    grey: bool = False

    @property
    def neutral(self) -> bool:
        """Whether the slide is drawn as it is (tiles need no display step)."""
        return self.stain is None and all(level.neutral for level in self.levels)

    def with_levels(self, levels: Levels, channel: int | None = None) -> DisplaySettings:
        """These settings with ``levels`` on every channel, or on ``channel`` (0-2) only."""
        if channel is None:
            return replace(self, levels=(levels, levels, levels))
        new = list(self.levels)
        new[channel] = levels
        return replace(self, levels=tuple(new))

    def with_stain(
        self, stain: str | None, matrix: np.ndarray | None = None, grey: bool = False
    ) -> DisplaySettings:
        """These settings showing ``stain`` alone (deconvolved with ``matrix``), or the slide."""
        rows = None if stain is None else tuple(tuple(map(float, row)) for row in matrix)
        return replace(self, stain=stain, matrix=rows, grey=grey and stain is not None)


def stain_index(stain: str) -> int:
    """Row of ``stain`` in a stain matrix of its image type (hematoxylin 0, eosin or DAB 1)."""
    return 0 if stain == "hematoxylin" else 1


def stain_view(rgb: np.ndarray, matrix: np.ndarray, index: int, grey: bool = False) -> np.ndarray:
    """One stain of an RGB image alone, recomposed on white (colour deconvolution).

    Parameters
    ----------
    rgb : numpy.ndarray
        ``(h, w, 3)`` uint8 image.
    matrix : numpy.ndarray
        ``(3, 3)`` stain matrix, rows unit OD vectors.
    index : int
        The stain (row of ``matrix``) shown.
    grey : bool
        Grey (the stain's optical density, dark where it is strong) instead of its colour.

    Returns
    -------
    numpy.ndarray
        ``(h, w, 3)`` uint8 RGB.
    """
    matrix = np.asarray(matrix, np.float64)
    unmix = np.linalg.inv(matrix)[:, index].astype(np.float32)
    colour = np.full(3, 1 / math.sqrt(3)) if grey else matrix[index]
    scale = (-math.log(10.0) * colour).astype(np.float32)
    # OpenCV all the way (no numpy temporaries): tile workers then hold the GIL only briefly,
    # so the GUI thread's frames do not wait for them
    od = cv2.LUT(np.ascontiguousarray(rgb[..., :3]), _OD_TABLE)
    amount = cv2.transform(od, unmix[None, :])  # (h, w) amount of the stain
    amount = cv2.threshold(amount, 0.0, 0.0, cv2.THRESH_TOZERO)[1]
    out = cv2.exp(cv2.transform(amount[..., None], scale[:, None]))
    return cv2.convertScaleAbs(out, alpha=BACKGROUND_INTENSITY)


def apply_display(rgb: np.ndarray, settings: DisplaySettings) -> np.ndarray:
    """``rgb`` (uint8, ``(h, w, 3)``) as ``settings`` draw it: stain view, then levels."""
    if settings.stain is not None:
        rgb = stain_view(rgb, np.array(settings.matrix), stain_index(settings.stain), settings.grey)
    if all(level.neutral for level in settings.levels):
        return rgb
    table = np.stack([level.lut() for level in settings.levels], axis=-1)[:, None, :]
    return cv2.LUT(np.ascontiguousarray(rgb), table)


def auto_levels(
    overview: np.ndarray, per_channel: bool, percentiles: tuple[float, float] = AUTO_PERCENTILES
) -> tuple[Levels, Levels, Levels]:
    """Levels stretching the ``percentiles`` of an overview image to black and white.

    Parameters
    ----------
    overview : numpy.ndarray
        ``(h, w, 3)`` uint8 image as displayed before levels (e.g. a stain view of it).
    per_channel : bool
        Stretch each channel by itself (fluorescence) or all by one range (brightfield,
        keeping the colours' balance).
    percentiles : (float, float)
        Lower and upper percentiles.
    """
    pixels = overview.reshape(-1, 3).astype(np.float32)
    if per_channel:
        low, high = np.percentile(pixels, percentiles, axis=0)
    else:
        low, high = (np.full(3, v) for v in np.percentile(pixels, percentiles))
    pairs = zip(low, high, strict=True)
    return tuple(Levels(float(lo), float(max(hi, lo + 1.0))) for lo, hi in pairs)


def guess_image_type(overview: np.ndarray) -> str:
    """Guess a slide's image type from its overview colours.

    A dark background means fluorescence; otherwise tissue whose red and blue both
    stand above green (eosin's pink with hematoxylin's purple) means H&E, and tissue
    that is bluish (hematoxylin alone) or brown (DAB) means H-DAB.

    Parameters
    ----------
    overview : numpy.ndarray
        ``(h, w, 3)`` uint8 RGB overview of the whole slide.

    Returns
    -------
    str
        A key of :data:`~her2viewer.slide.settings.IMAGE_TYPES`.
    """
    rgb = overview[..., :3]
    if float(np.median(rgb.mean(axis=-1))) < DARK_BACKGROUND:
        return "fluorescence"
    tissue = tissue_pixels(rgb)
    if not tissue.any():
        return "brightfield-he"
    red, green, blue = rgb[tissue].astype(np.float32).T
    magenta = float(np.median(np.minimum(red - green, blue - green)))
    return "brightfield-he" if magenta > EOSIN_MAGENTA else "brightfield-hdab"
