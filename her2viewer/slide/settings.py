"""What the user told the viewer about one slide: its image type and, when the file has
none, its pixel size. Kept per slide fingerprint under ``paths.data_dir()/slides/``.

>>> from her2viewer.slide.settings import SlideSettings, save_settings
>>> save_settings(slide.info.fingerprint, SlideSettings(mpp=0.25))  # doctest: +SKIP

:func:`~her2viewer.slide.open_slide` applies a stored pixel size to a file that records
none (:func:`apply_pixel_size`), so scale bars, magnifications and measurements use it.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from her2viewer.errors import SlideError
from her2viewer.outputs import output_error, write_text_atomic
from her2viewer.paths import data_dir
from her2viewer.slide.base import Slide, estimate_objective_power

#: Image types a slide can have, with the words the viewer shows.
IMAGE_TYPES = {
    "brightfield-he": "Brightfield (H&E)",
    "brightfield-hdab": "Brightfield (H-DAB)",
    "fluorescence": "Fluorescence",
}
#: Pixel sizes (um/px) accepted as an override: from a 1000x scan to a 4x overview.
MPP_RANGE = (0.01, 50.0)


@dataclass(frozen=True)
class SlideSettings:
    """The user's settings of one slide (``None``: not set).

    Attributes
    ----------
    image_type : str or None
        A key of :data:`IMAGE_TYPES`.
    mpp : float or None
        Pixel size in um/px for a file that records none.
    """

    image_type: str | None = None
    mpp: float | None = None

    def __post_init__(self) -> None:
        if self.image_type is not None and self.image_type not in IMAGE_TYPES:
            raise SlideError(
                f"Image type {self.image_type!r} is not one of {', '.join(IMAGE_TYPES)}."
            )
        if self.mpp is not None and not (
            math.isfinite(self.mpp) and MPP_RANGE[0] <= self.mpp <= MPP_RANGE[1]
        ):
            raise SlideError(
                f"Pixel size {self.mpp} um/px is outside {MPP_RANGE[0]}-{MPP_RANGE[1]} um/px."
            )


def settings_path(fingerprint: str) -> Path:
    """Return the settings file of the slide with ``fingerprint`` (it may not exist).

    Returns
    -------
    Path
        ``paths.data_dir()/slides/<fingerprint>.json``.
    """
    if not re.fullmatch(r"[0-9A-Za-z_-]+", fingerprint):
        raise SlideError(f"{fingerprint!r} is not a slide fingerprint (letters, digits, - and _).")
    return data_dir() / "slides" / f"{fingerprint}.json"


def load_settings(fingerprint: str) -> SlideSettings:
    """The stored settings of a slide; empty ones when none (or only a damaged file) exist.

    A damaged file is not an error: the slide opens as the file describes it, and the
    next :func:`save_settings` replaces it.
    """
    try:
        data = json.loads(settings_path(fingerprint).read_text(encoding="utf-8"))
        return SlideSettings(data.get("image_type"), data.get("mpp"))
    except (OSError, ValueError, TypeError, AttributeError, SlideError):
        return SlideSettings()


def save_settings(fingerprint: str, settings: SlideSettings) -> Path:
    """Store a slide's settings atomically; returns the file.

    Raises
    ------
    OutputError
        When the data folder cannot be written (one sentence naming it).
    """
    path = settings_path(fingerprint)
    try:
        path.parent.mkdir(exist_ok=True)
    except OSError as exc:
        raise output_error(path.parent, exc, what="create") from exc
    return write_text_atomic(path, json.dumps(asdict(settings), indent=2))


def apply_pixel_size(slide: Slide, mpp: float | None) -> Slide:
    """Give ``slide`` the user's pixel size when its file records none; returns it.

    The info then says ``mpp_set_by_user`` and estimates the objective power from the
    pixel size (unless the file records a power). ``None`` takes a user's pixel size
    away again; a pixel size the file records is never replaced.
    """
    info = slide.info
    if info.mpp_x and not info.mpp_set_by_user:
        return slide
    power = None if info.objective_power else estimate_objective_power(mpp)
    slide.info = replace(
        info, mpp_x=mpp, mpp_y=mpp, objective_power_estimate=power, mpp_set_by_user=bool(mpp)
    )
    return slide
