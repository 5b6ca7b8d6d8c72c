"""The one slide API the rest of the application sees.

A :class:`Slide` is a pyramid of RGB levels addressed in level-0 pixels. Backends
(OpenSlide formats, plain images) implement :meth:`Slide._read` and
:meth:`Slide._associated`; everything else — argument checks, level choice,
magnification arithmetic, thumbnails — lives here once.
"""

from __future__ import annotations

import math
import os
from abc import ABC, abstractmethod
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

import cv2
import numpy as np

from her2viewer.errors import SlideError

#: Levels larger than this many pixels are read in bands on several threads.
BAND_PIXELS = 1_000_000
MAX_BAND_THREADS = 4

#: Objective power assumed to give 1.0 um/px when only mpp is known (10x ~ 1 um/px).
MPP_AT_10X = 1.0


@dataclass(frozen=True)
class LevelInfo:
    """One level of the pyramid.

    Attributes
    ----------
    width, height : int
        Size of the level in its own pixels.
    downsample : float
        Level-0 pixels per level pixel.
    """

    width: int
    height: int
    downsample: float


@dataclass(frozen=True)
class SlideInfo:
    """What is known about a slide, never more.

    ``mpp_x``/``mpp_y`` and ``objective_power`` are ``None`` when the file does not
    record them. ``objective_power_estimate`` is an estimate from mpp (labelled as
    such), ``None`` when there is no mpp either.
    """

    path: str
    vendor: str
    width: int
    height: int
    levels: tuple[LevelInfo, ...]
    mpp_x: float | None
    mpp_y: float | None
    objective_power: float | None
    objective_power_estimate: float | None
    associated_images: tuple[str, ...]
    fingerprint: str
    properties: dict[str, str] = field(default_factory=dict, compare=False)
    #: The pixel size is the user's (``slide.settings``), the file records none.
    mpp_set_by_user: bool = False

    @property
    def level_count(self) -> int:
        """Number of pyramid levels."""
        return len(self.levels)

    @property
    def magnification(self) -> float | None:
        """Objective power, from the file or else estimated from mpp; ``None`` if neither."""
        return self.objective_power if self.objective_power else self.objective_power_estimate

    def to_json_dict(self, with_properties: bool = False) -> dict:
        """Return a JSON-serialisable dictionary of the info.

        Parameters
        ----------
        with_properties : bool
            Include the raw vendor properties.
        """
        data = asdict(self)
        data["levels"] = [asdict(level) for level in self.levels]
        data["associated_images"] = list(self.associated_images)
        if not with_properties:
            data.pop("properties")
        return data


def estimate_objective_power(mpp: float | None) -> float | None:
    """Estimate the objective power from the pixel size (10x ~ 1 um/px).

    Parameters
    ----------
    mpp : float or None
        Microns per pixel at level 0.

    Returns
    -------
    float or None
        The estimate rounded to one decimal, or ``None`` without mpp.
    """
    if not mpp or mpp <= 0:
        return None
    return round(10.0 * MPP_AT_10X / mpp, 1)


def composite_on_white(rgba: np.ndarray) -> np.ndarray:
    """Composite a straight-alpha RGBA uint8 image on white and return RGB uint8.

    Parameters
    ----------
    rgba : numpy.ndarray
        ``(H, W, 4)`` uint8 with non-premultiplied alpha.
    """
    alpha = rgba[..., 3:4]
    if alpha.min() == 255:
        return np.ascontiguousarray(rgba[..., :3])
    a = alpha.astype(np.uint16)
    rgb = (rgba[..., :3].astype(np.uint16) * a + 255 * (255 - a) + 127) // 255
    return rgb.astype(np.uint8)


class Slide(ABC):
    """A whole-slide image as a pyramid of RGB levels in level-0 coordinates.

    Instances are safe to read from several threads at once.
    """

    def __init__(self, info: SlideInfo):
        self.info = info

    # -- backend hooks -------------------------------------------------------------
    @abstractmethod
    def _read(self, x: int, y: int, level: int, width: int, height: int) -> np.ndarray:
        """Return RGB uint8 ``(height, width, 3)`` at ``level``, origin in level-0 px."""

    @abstractmethod
    def _associated(self, name: str) -> np.ndarray:
        """Return the associated image ``name`` as RGB uint8."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release file handles; the slide cannot be read afterwards."""

    # -- public API ----------------------------------------------------------------
    def read_region(
        self, location: tuple[int, int], level: int, size: tuple[int, int]
    ) -> np.ndarray:
        """Read a region of one level.

        Parameters
        ----------
        location : (int, int)
            Top-left corner ``(x, y)`` in level-0 pixels.
        level : int
            Pyramid level to read from.
        size : (int, int)
            ``(width, height)`` in pixels of that level.

        Returns
        -------
        numpy.ndarray
            ``(height, width, 3)`` uint8 RGB; areas outside the slide or transparent
            are white.

        Raises
        ------
        SlideError
            When the file cannot be decoded at this place.
        """
        if not 0 <= level < self.info.level_count:
            raise ValueError(f"level {level} out of range 0..{self.info.level_count - 1}")
        width, height = int(size[0]), int(size[1])
        if width <= 0 or height <= 0:
            raise ValueError(f"region size must be positive, got {size}")
        return self._read(int(location[0]), int(location[1]), level, width, height)

    def best_level_for_downsample(self, downsample: float) -> int:
        """Return the highest-resolution-preserving level for a wanted downsample.

        This is the coarsest level whose downsample does not exceed ``downsample``
        (with a 1% tolerance), so that reading it and shrinking never upsamples.
        """
        best = 0
        for index, level in enumerate(self.info.levels):
            if level.downsample <= downsample * 1.01:
                best = index
        return best

    def downsample_for_magnification(self, magnification: float) -> float:
        """Return the level-0 downsample that gives ``magnification``.

        Raises
        ------
        SlideError
            When the slide records neither objective power nor mpp.
        """
        if magnification <= 0:
            raise ValueError("magnification must be positive")
        power = self.info.magnification
        if power is None:
            raise SlideError(
                f"{self.info.path} records neither objective power nor microns per pixel, "
                "so a magnification cannot be chosen; use level 0 or give the pixel size."
            )
        return power / magnification

    def level_for_magnification(self, magnification: float) -> int:
        """Return the level to read for ``magnification`` (never coarser than needed)."""
        return self.best_level_for_downsample(self.downsample_for_magnification(magnification))

    def level_image(self, level: int) -> np.ndarray:
        """Read one whole level (meant for the small, low-resolution levels).

        A level of more than :data:`BAND_PIXELS` pixels is read as horizontal bands on
        a few threads (reads are thread-safe and decode outside the GIL).
        """
        info = self.info.levels[level]
        bands = min(MAX_BAND_THREADS, os.cpu_count() or 1, info.width * info.height // BAND_PIXELS)
        if bands < 2:
            return self.read_region((0, 0), level, (info.width, info.height))
        rows = np.linspace(0, info.height, bands + 1).round().astype(int)
        ds = info.downsample

        def band(i: int) -> np.ndarray:
            top = math.ceil(rows[i] * ds)  # level-0 row whose level row is rows[i]
            return self.read_region((0, top), level, (info.width, int(rows[i + 1] - rows[i])))

        with ThreadPoolExecutor(bands) as pool:
            return np.concatenate(list(pool.map(band, range(bands))), axis=0)

    def thumbnail(self, max_size: int | tuple[int, int] = 512) -> np.ndarray:
        """Return an RGB thumbnail fitting in ``max_size`` with the slide's aspect ratio.

        Parameters
        ----------
        max_size : int or (int, int)
            Largest width and height of the result.
        """
        max_w, max_h = (max_size, max_size) if isinstance(max_size, int) else max_size
        scale = max(self.info.width / max_w, self.info.height / max_h, 1.0)
        out_w = max(1, math.floor(self.info.width / scale))
        out_h = max(1, math.floor(self.info.height / scale))
        level = self.best_level_for_downsample(scale)
        image = self.level_image(level)
        return cv2.resize(image, (out_w, out_h), interpolation=cv2.INTER_AREA)

    def associated_image(self, name: str) -> np.ndarray:
        """Return an associated image (``label``, ``macro``, ``thumbnail``) as RGB uint8."""
        if name not in self.info.associated_images:
            raise SlideError(
                f"{self.info.path} has no associated image '{name}' "
                f"(it has: {', '.join(self.info.associated_images) or 'none'})."
            )
        return self._associated(name)

    def __enter__(self) -> Slide:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        i = self.info
        return f"<{type(self).__name__} {i.path!r} {i.width}x{i.height} {i.level_count} levels>"
