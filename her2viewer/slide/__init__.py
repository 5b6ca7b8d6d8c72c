"""Open any slide — OpenSlide formats or plain images — behind one small API.

>>> from her2viewer.slide import open_slide
>>> with open_slide("case.svs") as slide:  # doctest: +SKIP
...     tile = slide.read_region((0, 0), 0, (256, 256))
"""

from __future__ import annotations

import os
from pathlib import Path

import openslide

from her2viewer.errors import SlideError
from her2viewer.slide.base import LevelInfo, Slide, SlideInfo
from her2viewer.slide.image_backend import PIL_SUFFIXES, TIFF_SUFFIXES, ImageSlide
from her2viewer.slide.openslide_backend import OpenSlideSlide
from her2viewer.slide.settings import apply_pixel_size, load_settings

__all__ = ["LevelInfo", "Slide", "SlideError", "SlideInfo", "open_slide", "SUPPORTED_SUFFIXES"]

#: File suffixes offered in open dialogs (OpenSlide formats and plain images).
SUPPORTED_SUFFIXES = (
    ".svs",
    ".tif",
    ".tiff",
    ".ndpi",
    ".vms",
    ".vmu",
    ".scn",
    ".mrxs",
    ".bif",
    ".svslide",
    ".dcm",
    ".png",
    ".jpg",
    ".jpeg",
    ".bmp",
)


def _check_file(path: Path) -> None:
    if not path.exists():
        raise SlideError(f"{path}: no such file.")
    if path.is_dir():
        raise SlideError(
            f"{path} is a directory, not a slide file; "
            "for a DICOM slide open one of its .dcm files."
        )
    if not os.access(path, os.R_OK):
        raise SlideError(f"{path}: permission denied.")
    if path.stat().st_size == 0:
        raise SlideError(f"{path.name} is empty (0 bytes).")


def _detect_openslide_format(path: Path) -> str | None:
    try:
        return openslide.OpenSlide.detect_format(str(path))
    except openslide.OpenSlideError:
        return None


def open_slide(path: str | os.PathLike) -> Slide:
    """Open a whole-slide image or a plain image as a :class:`Slide`.

    Parameters
    ----------
    path : str or PathLike
        A file in a format OpenSlide reads (SVS, NDPI, MRXS, SCN, BIF, Philips TIFF,
        tiled TIFF, DICOM) or a plain PNG/JPEG/BMP/flat TIFF image.

    Returns
    -------
    Slide
        An open slide; close it (or use it as a context manager) when done. A file
        without a pixel size gets the one the user stored for it (``slide.settings``).

    Raises
    ------
    SlideError
        With a one-line reason naming the file when it is missing, empty, damaged
        or in an unsupported format.
    """
    path = Path(path).expanduser()
    _check_file(path)
    slide = _open_backend(path)
    if slide.info.mpp_x is None:  # the pixel size the user gave this slide, if any
        apply_pixel_size(slide, load_settings(slide.info.fingerprint).mpp)
    return slide


def _open_backend(path: Path) -> Slide:
    suffix = path.suffix.lower()
    if suffix in PIL_SUFFIXES:
        return ImageSlide(path)
    if _detect_openslide_format(path) is not None:
        return OpenSlideSlide(path)
    if suffix in TIFF_SUFFIXES:
        return ImageSlide(path)
    raise SlideError(
        f"{path.name} is not a supported slide: OpenSlide does not recognise it and it is not "
        f"a plain image (supported: {', '.join(SUPPORTED_SUFFIXES)})."
    )
