"""Patch grids over tissue, CLAM-compatible coordinate files.

A :class:`PatchGrid` lists level-0 top-left corners of square patches of
``target_size`` pixels at a magnification. Containment follows CLAM's
``process_contour`` (contour check functions ``four_pt``, ``four_pt_hard``, ``center``,
``basic``; patches whose centre falls in a hole are dropped); seed 004's background
filter then drops patches that are more than ``max_background`` white.
"""

from __future__ import annotations

import io
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import h5py
import numpy as np

from her2viewer.errors import SlideError, TissueError
from her2viewer.outputs import prepare_output_dir, write_bytes_atomic
from her2viewer.slide.base import Slide
from her2viewer.tissue.segmentation import TissueSegmentation

CONTOUR_FUNCTIONS = ("four_pt", "four_pt_hard", "center", "basic")
#: A pixel brighter than this (HSV value) and less saturated than WHITE_SATURATION is
#: white background (seed 004 drops patches that are more than 60% white); pale but
#: coloured tissue, such as IHC stroma, is not white.
WHITE_VALUE = 200
WHITE_SATURATION = 12
#: Patches with a larger fraction of white pixels are background (seed 004: 60%).
MAX_BACKGROUND = 0.6
#: Largest patch side (pixels, at the read level or delivered) a grid may ask for.
MAX_PATCH_SIZE = 4096
#: Rasterised-contour margin (mask pixels) beyond which the exact polygon test is skipped.
_SURE_MARGIN = 2


@dataclass
class PatchGrid:
    """Square patches over tissue.

    Attributes
    ----------
    coords : numpy.ndarray
        ``(N, 2)`` int64 level-0 top-left ``(x, y)``.
    patch_level : int
        Level read for each patch.
    patch_size : int
        Patch side at ``patch_level`` (CLAM's ``patch_size`` attribute).
    patch_size_level0 : int
        Patch side in level-0 pixels.
    target_size : int
        Side of a patch as delivered (after resizing to the magnification).
    magnification : float or None
        Objective magnification of delivered patches; None when the slide has none.
    mpp : float or None
        Microns per pixel of delivered patches.
    level_dim : tuple of int
        ``(width, height)`` of ``patch_level``.
    downsample : float
        Level-0 downsample of ``patch_level``.
    name : str
        Slide name (file stem).
    warnings : list of str
        Things the user should know, e.g. a fallback to level 0.
    fingerprint : str
        Fingerprint of the slide the grid was laid on ("" when unknown, as in CLAM's files).
    """

    coords: np.ndarray
    patch_level: int
    patch_size: int
    patch_size_level0: int
    target_size: int
    magnification: float | None
    mpp: float | None
    level_dim: tuple[int, int]
    downsample: float
    name: str
    warnings: list[str] = field(default_factory=list)
    fingerprint: str = ""

    def __len__(self) -> int:
        return len(self.coords)

    def read_patch(self, slide: Slide, index: int) -> np.ndarray:
        """Read patch ``index`` as RGB uint8 ``(target_size, target_size, 3)``."""
        x, y = (int(v) for v in self.coords[index])
        image = slide.read_region((x, y), self.patch_level, (self.patch_size, self.patch_size))
        if self.patch_size != self.target_size:
            image = cv2.resize(
                image, (self.target_size, self.target_size), interpolation=cv2.INTER_AREA
            )
        return image


def _sure_masks(polygon_seg: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    mask = np.zeros(shape, np.uint8)
    cv2.drawContours(mask, [polygon_seg.astype(np.int32)], -1, 1, thickness=cv2.FILLED)
    kernel = np.ones((2 * _SURE_MARGIN + 1, 2 * _SURE_MARGIN + 1), np.uint8)
    return cv2.erode(mask, kernel).astype(bool), cv2.dilate(mask, kernel).astype(bool)


def points_in_polygon(
    polygon: np.ndarray, points: np.ndarray, downsample: float, strict: bool = False
) -> np.ndarray:
    """Test level-0 points against a level-0 polygon exactly like ``cv2.pointPolygonTest``.

    Points clearly inside or outside are decided on a rasterised copy of the
    polygon at ``downsample``; only points near the boundary are tested exactly.

    Parameters
    ----------
    polygon : numpy.ndarray
        ``(K, 2)`` level-0 vertices (a contour scaled from ``downsample``).
    points : numpy.ndarray
        ``(M, 2)`` level-0 points.
    downsample : float
        Level-0 pixels per pixel of the level the polygon came from.
    strict : bool
        Require strictly inside (``> 0``) instead of inside or on the edge (``>= 0``).

    Returns
    -------
    numpy.ndarray
        Boolean ``(M,)``.
    """
    if len(points) == 0:
        return np.zeros(0, bool)
    seg_poly = polygon / downsample
    x0, y0 = np.floor(seg_poly.min(axis=0)).astype(int) - _SURE_MARGIN - 1
    x1, y1 = np.ceil(seg_poly.max(axis=0)).astype(int) + _SURE_MARGIN + 2
    sure_in, maybe_in = _sure_masks(seg_poly - [x0, y0], (y1 - y0, x1 - x0))
    cells = np.floor(points / downsample).astype(np.int64) - [x0, y0]
    valid = (
        (cells[:, 0] >= 0) & (cells[:, 1] >= 0) & (cells[:, 0] < x1 - x0) & (cells[:, 1] < y1 - y0)
    )
    result = np.zeros(len(points), bool)
    cx, cy = cells[valid, 0], cells[valid, 1]
    result[valid] = sure_in[cy, cx]
    uncertain = np.flatnonzero(valid)[maybe_in[cy, cx] & ~sure_in[cy, cx]]
    contour = polygon.reshape(-1, 1, 2).astype(np.float32)
    for i in uncertain:
        value = cv2.pointPolygonTest(contour, (float(points[i, 0]), float(points[i, 1])), False)
        result[i] = value > 0 if strict else value >= 0
    return result


def _check_points(origins: np.ndarray, size0: int, contour_fn: str) -> list[np.ndarray]:
    """CLAM's contour-check sample points for each patch origin."""
    center = origins + size0 // 2
    if contour_fn == "basic":
        return [origins]
    if contour_fn == "center":
        return [center]
    shift = int(size0 // 2 * 0.5)
    offsets = ([-shift, -shift], [shift, shift], [shift, -shift], [-shift, shift])
    return [center + offset for offset in offsets]


def _patches_in_contour(contour, holes, size0, step0, contour_fn, downsample):
    """CLAM's ``process_contour``: grid over the bounding box, containment, holes."""
    x0, y0 = np.floor(contour.min(axis=0)).astype(np.int64)
    x1, y1 = np.floor(contour.max(axis=0)).astype(np.int64) + 1
    xs = np.arange(x0, x1, step0, dtype=np.int64)
    ys = np.arange(y0, y1, step0, dtype=np.int64)
    gx, gy = np.meshgrid(xs, ys, indexing="ij")
    origins = np.stack([gx.ravel(), gy.ravel()], axis=1)
    tests = [
        points_in_polygon(contour, points, downsample)
        for points in _check_points(origins, size0, contour_fn)
    ]
    combine = np.logical_and if contour_fn == "four_pt_hard" else np.logical_or
    keep = combine.reduce(tests)
    centres = origins + size0 / 2
    for hole in holes:
        keep &= ~points_in_polygon(hole, centres, downsample, strict=True)
    return origins[keep]


def white_pixels(rgb: np.ndarray) -> np.ndarray:
    """Boolean mask of the white background pixels (bright and unsaturated) of an RGB image."""
    hsv = cv2.cvtColor(np.ascontiguousarray(rgb[..., :3]), cv2.COLOR_RGB2HSV)
    return (hsv[..., 2] > WHITE_VALUE) & (hsv[..., 1] < WHITE_SATURATION)


def _white_fraction(seg: TissueSegmentation, coords: np.ndarray, size0: int) -> np.ndarray:
    """Fraction of white pixels under each patch, from the segmentation level image.

    The part of a patch beyond the slide edge counts as white, as it reads white.
    """
    white = white_pixels(seg.level_image).astype(np.float64)
    integral = cv2.integral(white)
    h, w = white.shape
    scale = seg.downsample
    x0 = np.clip(np.floor(coords[:, 0] / scale).astype(int), 0, w - 1)
    y0 = np.clip(np.floor(coords[:, 1] / scale).astype(int), 0, h - 1)
    x1 = np.clip(np.ceil((coords[:, 0] + size0) / scale).astype(int), x0 + 1, w)
    y1 = np.clip(np.ceil((coords[:, 1] + size0) / scale).astype(int), y0 + 1, h)
    white_inside = integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0]
    clipped = (x1 - x0) * (y1 - y0)
    footprint = np.maximum((size0 / scale) ** 2, clipped)
    return (white_inside + footprint - clipped) / footprint


def patch_scale(slide: Slide, magnification: float | None, patch_size: int):
    """Return (level-0 patch side, warnings, delivered magnification) of patches of a slide."""
    if magnification is None:
        return patch_size, [], slide.info.magnification
    try:
        downsample = slide.downsample_for_magnification(magnification)
    except SlideError:
        return (
            patch_size,
            [
                f"{Path(slide.info.path).name} records no magnification or pixel size; "
                f"patches are {patch_size} px at level 0 instead of {magnification:g}x."
            ],
            None,
        )
    return max(1, int(round(patch_size * downsample))), [], magnification


def make_patch_grid(
    slide: Slide,
    segmentation: TissueSegmentation,
    magnification: float | None = 20.0,
    patch_size: int = 256,
    step_size: int | None = None,
    contour_fn: str = "four_pt",
    max_background: float | None = MAX_BACKGROUND,
    use_padding: bool = True,
) -> PatchGrid:
    """Lay a patch grid over the tissue of a slide.

    Parameters
    ----------
    slide : Slide
        The slide the segmentation came from.
    segmentation : TissueSegmentation
        Output of :func:`~her2viewer.tissue.segment_tissue`.
    magnification : float or None
        Magnification of delivered patches (20x in seed 000); None reads level 0.
    patch_size : int
        Side of delivered patches (256 for CLAM, 512 for HER2Net / seed 004, 224 for seed 003).
    step_size : int, optional
        Grid step at the delivered magnification; defaults to ``patch_size``.
    contour_fn : str
        CLAM's containment test: ``four_pt`` (default), ``four_pt_hard``, ``center``, ``basic``.
    max_background : float or None
        Drop patches with more than this fraction of white pixels (seed 004: 0.6).
    use_padding : bool
        Allow patches that run over the slide edge (CLAM's default).

    Returns
    -------
    PatchGrid
        The patches, ordered as CLAM orders them (by contour, then x-major).
    """
    if contour_fn not in CONTOUR_FUNCTIONS:
        raise TissueError(
            f"Unknown contour check '{contour_fn}'; use one of {', '.join(CONTOUR_FUNCTIONS)}."
        )
    if not 8 <= patch_size <= MAX_PATCH_SIZE:
        raise TissueError(
            f"Patch size {patch_size} is out of range; use 8 to {MAX_PATCH_SIZE} pixels."
        )
    size0, warnings, delivered_mag = patch_scale(slide, magnification, patch_size)
    step0 = max(1, int(round((step_size or patch_size) * size0 / patch_size)))
    level = slide.best_level_for_downsample(size0 / patch_size)
    level_info = slide.info.levels[level]
    size_at_level = max(1, int(round(size0 / level_info.downsample)))
    width, height = slide.info.width, slide.info.height
    found = []
    for contour, holes in zip(segmentation.contours, segmentation.holes, strict=True):
        origins = _patches_in_contour(
            contour, holes, size0, step0, contour_fn, segmentation.downsample
        )
        if not use_padding:
            inside = (origins[:, 0] + size0 <= width) & (origins[:, 1] + size0 <= height)
            origins = origins[inside]
        found.append(origins)
    coords = np.concatenate(found) if found else np.zeros((0, 2), np.int64)
    if max_background is not None and len(coords):
        coords = coords[_white_fraction(segmentation, coords, size0) <= max_background]
    mpp = slide.info.mpp_x * size0 / patch_size if slide.info.mpp_x else None
    return PatchGrid(
        coords=coords.astype(np.int64),
        patch_level=level,
        patch_size=size_at_level,
        patch_size_level0=size0,
        target_size=patch_size,
        magnification=delivered_mag,
        mpp=mpp,
        level_dim=(level_info.width, level_info.height),
        downsample=level_info.downsample,
        name=Path(slide.info.path).stem,
        warnings=segmentation.warnings + warnings,
        fingerprint=slide.info.fingerprint,
    )


def write_coords_h5(path: str | os.PathLike, grid: PatchGrid) -> Path:
    """Write a CLAM-compatible coordinates file, atomically.

    Parameters
    ----------
    path : str or PathLike
        Destination ``.h5`` file; its folder is created if needed.
    grid : PatchGrid
        Patches to write.

    Returns
    -------
    Path
        The written file.

    Raises
    ------
    OutputError
        One sentence when the file cannot be written (full disk, no permission).
    """
    path = Path(path)
    prepare_output_dir(path.parent)
    buffer = io.BytesIO()  # HDF5 meeting a full disk itself does not survive; Python does
    with h5py.File(buffer, "w") as h5:
        add_coords_dataset(h5, grid, path.parent)
    return write_bytes_atomic(path, buffer.getvalue())


def add_coords_dataset(h5: h5py.File, grid: PatchGrid, save_path: str | os.PathLike) -> None:
    """Add the ``coords`` dataset to an open h5 file.

    It carries CLAM's attributes (``patch_size``, ``patch_level``, ``downsample``,
    ``downsampled_level_dim``, ``level_dim``, ``name``, ``save_path``) plus
    ``magnification``, ``mpp``, ``patch_size_level0``, ``target_patch_size`` and the
    ``slide_fingerprint`` the grid was laid on.
    """
    data = h5.create_dataset("coords", data=grid.coords.astype(np.int64), maxshape=(None, 2))
    level_dim = np.asarray(grid.level_dim, np.int64)
    data.attrs.update(
        {
            "patch_size": np.int64(grid.patch_size),
            "patch_level": np.int64(grid.patch_level),
            "downsample": np.array([grid.downsample, grid.downsample], np.float64),
            "downsampled_level_dim": level_dim,
            "level_dim": level_dim,
            "name": grid.name,
            "save_path": str(save_path),
            "magnification": np.float64(grid.magnification or np.nan),
            "mpp": np.float64(grid.mpp or np.nan),
            "patch_size_level0": np.int64(grid.patch_size_level0),
            "target_patch_size": np.int64(grid.target_size),
            "slide_fingerprint": grid.fingerprint,
        }
    )


def _optional_float(attrs, key: str) -> float | None:
    """Return a positive finite attribute as a float; None when absent or unusable."""
    try:
        value = float(np.ravel(attrs.get(key, np.nan))[0])
    except (TypeError, ValueError, IndexError):
        return None
    return value if 0 < value < np.inf else None


def read_coords_h5(path: str | os.PathLike) -> PatchGrid:
    """Read a coordinates file written by this project or by CLAM's ``create_patches_fp.py``.

    Raises
    ------
    TissueError
        When the file is missing or not HDF5, has no ``coords`` dataset with CLAM's
        attributes, or holds an attribute or a row no slide can have (one sentence
        naming the file and the attribute or row).
    """
    path = Path(path)
    try:
        with h5py.File(path, "r") as h5:
            if "coords" not in h5:
                raise TissueError(f"{path.name} has no 'coords' dataset; it is not a patch file.")
            data = h5["coords"]
            raw = data[:]
            attrs = dict(data.attrs)
    except OSError as exc:
        raise TissueError(f"{path.name} cannot be read as an HDF5 patch file: {exc}.") from exc
    missing = [k for k in ("patch_size", "patch_level") if k not in attrs]
    if missing or raw.ndim != 2 or raw.shape[1] != 2:
        raise TissueError(
            f"{path.name} is not a CLAM coordinates file "
            f"(missing {', '.join(missing) or 'N x 2 coords'})."
        )
    coords = _checked_coords(raw, path)
    patch_size = _whole(attrs, "patch_size", path, 1, MAX_PATCH_SIZE)
    downsample = _number(attrs, "downsample", path, 1.0)
    if not 0 < downsample < np.inf:
        raise TissueError(f"{path.name}: attribute 'downsample' is {downsample:g}, not positive.")
    level0_default = max(1, math.floor(patch_size * downsample))
    try:
        level_dim = tuple(int(v) for v in np.ravel(attrs.get("level_dim", [0, 0]))[:2])
    except (TypeError, ValueError):
        raise TissueError(f"{path.name}: attribute 'level_dim' is not two numbers.") from None
    name = attrs.get("name", path.stem)
    return PatchGrid(
        coords=coords,
        patch_level=_whole(attrs, "patch_level", path, 0, 64),
        patch_size=patch_size,
        patch_size_level0=_whole(
            attrs, "patch_size_level0", path, 1, 64 * MAX_PATCH_SIZE, level0_default
        ),
        target_size=_whole(attrs, "target_patch_size", path, 1, MAX_PATCH_SIZE, patch_size),
        magnification=_optional_float(attrs, "magnification"),
        mpp=_optional_float(attrs, "mpp"),
        level_dim=level_dim,
        downsample=downsample,
        name=_text(name),
        fingerprint=_text(attrs.get("slide_fingerprint", "")),
    )


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _number(attrs: dict, key: str, path: Path, default: float) -> float:
    """Return attribute ``key`` (its first element) as a float, or ``default`` if absent."""
    try:
        return float(np.ravel(attrs.get(key, default))[0])
    except (TypeError, ValueError, IndexError):
        raise TissueError(f"{path.name}: attribute '{key}' is not a number.") from None


def _whole(attrs: dict, key: str, path: Path, low: int, high: int, default: int = 0) -> int:
    """Return attribute ``key`` as an int in ``[low, high]``, or raise naming the file."""
    value = _number(attrs, key, path, default)
    if not (value.is_integer() and low <= value <= high):
        raise TissueError(
            f"{path.name}: attribute '{key}' is {value:g}; use a whole number from {low} to {high}."
        )
    return int(value)


def _checked_coords(raw: np.ndarray, path: Path) -> np.ndarray:
    """Return N x 2 int64 coordinates, refusing non-numeric, non-finite or negative rows."""
    if raw.dtype.kind not in "iuf":
        raise TissueError(f"{path.name}: 'coords' holds {raw.dtype} values, not numbers.")
    bad = np.flatnonzero(~np.isfinite(raw).all(axis=1) | (raw < 0).any(axis=1))
    if bad.size:
        row = bad[0]
        raise TissueError(
            f"{path.name}: coords row {row} is {tuple(raw[row].tolist())}; "
            "coordinates must be finite and not negative."
        )
    return raw.astype(np.int64)


def check_grid_fits(grid: PatchGrid, slide: Slide, source: str | os.PathLike) -> None:
    """Check that every patch of ``grid`` can be read from ``slide``.

    Raises
    ------
    TissueError
        When the grid's level does not exist in the slide or a patch starts outside
        it; the sentence names ``source`` (the coordinates file).
    """
    name = Path(source).name
    levels = len(slide.info.levels)
    if grid.patch_level >= levels:
        raise TissueError(
            f"{name}: patch_level {grid.patch_level} does not exist; the slide has {levels}."
        )
    width, height = slide.info.width, slide.info.height
    outside = np.flatnonzero((grid.coords[:, 0] >= width) | (grid.coords[:, 1] >= height))
    if outside.size:
        row = outside[0]
        raise TissueError(
            f"{name}: coords row {row} {tuple(grid.coords[row].tolist())} lies outside "
            f"the {width} x {height} slide."
        )
