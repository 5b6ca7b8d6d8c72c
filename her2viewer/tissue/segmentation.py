"""Tissue segmentation as CLAM does it, plus guards for dark and empty slides.

Method (Lu et al. 2021, ``WholeSlideImage.segmentTissue``): read one low-resolution
level (downsample ~64), take the HSV saturation channel, median blur, threshold
(fixed or Otsu), morphological close, find contours with holes, and keep contours
and holes by area relative to a 512 px reference patch.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import cv2
import numpy as np

from her2viewer.errors import TissueError
from her2viewer.slide.base import Slide

#: Level-0 downsample CLAM segments at when ``seg_level`` is -1.
SEG_DOWNSAMPLE = 64
#: CLAM's reference patch side for the area filters (level-0 pixels).
REF_PATCH_SIZE = 512
#: A pixel whose brightest channel is below this is background (black), never tissue.
DARK_VALUE = 50
#: A slide whose median brightness is below this is dark-field / fluorescence.
DARK_SLIDE_MEDIAN = 60


@dataclass(frozen=True)
class SegmentationParams:
    """CLAM's segmentation and contour-filter parameters.

    Attributes
    ----------
    seg_level : int
        Level to segment; -1 picks the level nearest downsample 64.
    sthresh : int
        Saturation threshold (0-255) when ``use_otsu`` is False.
    mthresh : int
        Median blur kernel size (odd).
    close : int
        Morphological closing kernel size; 0 disables.
    use_otsu : bool
        Otsu threshold instead of ``sthresh``.
    otsu_floor : int
        Lowest threshold Otsu may choose, so that an all-white slide has no tissue.
    a_t, a_h : float
        Minimum tissue / hole area in units of 512x512 level-0 reference patches.
    max_n_holes : int
        Largest holes kept per tissue contour.
    """

    seg_level: int = -1
    sthresh: int = 8
    mthresh: int = 7
    close: int = 4
    use_otsu: bool = False
    otsu_floor: int = 8
    a_t: float = 1.0
    a_h: float = 1.0
    max_n_holes: int = 8


#: Our default keeps tissue down to one 512x512 reference patch (biopsies, TMA cores);
#: ``clam_default`` is CLAM's ``create_patches_fp.py`` default (a_t=100, for resections);
#: the others are CLAM's presets (``presets/*.csv`` in the reference repository), and
#: ``ihc`` keeps the paler tissue of a HER2 IHC slide (IHC scoring and registration).
PRESETS: dict[str, SegmentationParams] = {
    "default": SegmentationParams(),
    "ihc": SegmentationParams(sthresh=4),
    "clam_default": SegmentationParams(a_t=100, a_h=16, max_n_holes=8),
    "tcga": SegmentationParams(sthresh=8, mthresh=7, close=4, a_t=16, a_h=4, max_n_holes=8),
    "bwh_biopsy": SegmentationParams(sthresh=15, mthresh=11, close=2, a_t=1, a_h=1, max_n_holes=2),
    "bwh_resection": SegmentationParams(
        sthresh=15, mthresh=11, close=4, a_t=100, a_h=16, max_n_holes=8
    ),
}


@dataclass
class TissueSegmentation:
    """Tissue found on a slide.

    Attributes
    ----------
    mask : numpy.ndarray
        Boolean tissue mask (contours filled, holes removed) at ``downsample``.
    downsample : float
        Level-0 pixels per mask pixel.
    seg_level : int
        Slide level the mask was computed from.
    contours : list of numpy.ndarray
        Outer tissue contours, ``(N, 2)`` float level-0 ``(x, y)``.
    holes : list of list of numpy.ndarray
        Holes of each contour, level-0.
    params : SegmentationParams
        Parameters used.
    warnings : list of str
        Things the user should know (for example a dark background).
    """

    mask: np.ndarray
    downsample: float
    seg_level: int
    contours: list[np.ndarray]
    holes: list[list[np.ndarray]]
    params: SegmentationParams
    warnings: list[str] = field(default_factory=list)
    level_image: np.ndarray | None = field(default=None, repr=False)

    @property
    def tissue_area_level0(self) -> float:
        """Tissue area in level-0 square pixels."""
        return float(self.mask.sum()) * self.downsample**2


def resolve_params(
    params: SegmentationParams | str | None = None, **overrides
) -> SegmentationParams:
    """Return parameters from a preset name, an object or the defaults, with overrides.

    Raises
    ------
    TissueError
        For an unknown preset name.
    """
    if params is None:
        params = PRESETS["default"]
    elif isinstance(params, str):
        if params not in PRESETS:
            raise TissueError(
                f"Unknown segmentation preset '{params}'; choose one of {', '.join(PRESETS)}."
            )
        params = PRESETS[params]
    overrides = {k: v for k, v in overrides.items() if v is not None}
    return replace(params, **overrides) if overrides else params


def _binary_tissue(rgb: np.ndarray, params: SegmentationParams) -> np.ndarray:
    saturation = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)[..., 1]
    kernel = params.mthresh if params.mthresh % 2 else params.mthresh + 1
    blurred = cv2.medianBlur(saturation, kernel)
    if params.use_otsu:
        otsu, _ = cv2.threshold(blurred, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
        threshold = max(otsu, params.otsu_floor)
    else:
        threshold = params.sthresh
    binary = np.where(blurred > threshold, 255, 0).astype(np.uint8)
    binary[rgb.max(axis=2) < DARK_VALUE] = 0
    if params.close > 0:
        binary = cv2.morphologyEx(
            binary, cv2.MORPH_CLOSE, np.ones((params.close, params.close), np.uint8)
        )
    return binary


def _filter_contours(binary: np.ndarray, min_area: float, min_hole: float, max_holes: int):
    """CLAM's ``_filter_contours``: keep big contours net of holes, and their biggest holes."""
    contours, hierarchy = cv2.findContours(binary, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_NONE)
    if hierarchy is None:
        return [], []
    parents = hierarchy[0][:, 3]
    kept, kept_holes = [], []
    for index in np.flatnonzero(parents == -1):
        hole_ids = np.flatnonzero(parents == index)
        area = cv2.contourArea(contours[index]) - sum(
            cv2.contourArea(contours[h]) for h in hole_ids
        )
        if area == 0 or area <= min_area:
            continue
        holes = sorted((contours[h] for h in hole_ids), key=cv2.contourArea, reverse=True)
        kept.append(contours[index])
        kept_holes.append([h for h in holes[:max_holes] if cv2.contourArea(h) > min_hole])
    return kept, kept_holes


def _to_level0(contour: np.ndarray, downsample: float) -> np.ndarray:
    return contour.reshape(-1, 2).astype(np.float64) * downsample


def segment_tissue(
    slide: Slide, params: SegmentationParams | str | None = None
) -> TissueSegmentation:
    """Find tissue on a slide with CLAM's method.

    Parameters
    ----------
    slide : Slide
        An open slide; only one low-resolution level is read.
    params : SegmentationParams or str, optional
        Parameters, or a preset name from :data:`PRESETS`.

    Returns
    -------
    TissueSegmentation
        Contours and holes in level-0 coordinates and the low-resolution mask.
        Empty (with a warning) on dark-field / fluorescence slides and blank glass.

    References
    ----------
    Lu, M.Y. et al. Data-efficient and weakly supervised computational pathology on
    whole-slide images. Nat Biomed Eng 5, 555-570 (2021).
    """
    params = resolve_params(params)
    level = params.seg_level
    if level < 0:
        level = slide.best_level_for_downsample(SEG_DOWNSAMPLE)
    if level >= slide.info.level_count:
        raise TissueError(
            f"Segmentation level {level} does not exist; the slide has "
            f"{slide.info.level_count} levels."
        )
    rgb = slide.level_image(level)
    downsample = slide.info.levels[level].downsample
    warnings: list[str] = []
    if float(np.median(rgb.max(axis=2))) < DARK_SLIDE_MEDIAN:
        warnings.append(
            "The slide has a dark background (fluorescence or dark-field); "
            "brightfield tissue detection does not apply, no tissue reported."
        )
        binary = np.zeros(rgb.shape[:2], np.uint8)
    else:
        binary = _binary_tissue(rgb, params)
    ref_area = int(REF_PATCH_SIZE**2 / downsample**2)
    contours, holes = _filter_contours(
        binary, params.a_t * ref_area, params.a_h * ref_area, params.max_n_holes
    )
    mask = np.zeros(binary.shape, np.uint8)
    cv2.drawContours(mask, contours, -1, 1, thickness=cv2.FILLED)
    for contour_holes in holes:
        cv2.drawContours(mask, contour_holes, -1, 0, thickness=cv2.FILLED)
    if not contours and not warnings:
        warnings.append("No tissue was found on the slide.")
    return TissueSegmentation(
        mask=mask.astype(bool),
        downsample=downsample,
        seg_level=level,
        contours=[_to_level0(c, downsample) for c in contours],
        holes=[[_to_level0(h, downsample) for h in hs] for hs in holes],
        params=params,
        warnings=warnings,
        level_image=rgb,
    )
