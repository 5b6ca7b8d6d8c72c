"""Automatic rigid/affine registration of two slides at low resolution.

Method: both slides are read at the same physical pixel size (about 400 px on
the long side), turned into a stain-independent grayscale (hematoxylin optical
density from a per-slide Macenko estimate, which H&E and IHC share) and a tissue
mask (:func:`her2viewer.tissue.segment_tissue`). A search over rotations (every
6 degrees, with and without a mirror flip) aligns the masks' centroids and scores
the grayscale correlation; the best candidates are refined with ECC
(``cv2.findTransformECC``, affine), and the winner is refined again with ECC at a
twice finer level. The measured error is the median residual shift of
local blocks over the tissue (phase correlation at the fine level). A pair whose
masks or textures do not agree after registration is refused with
:class:`~her2viewer.errors.RegistrationError` instead of returning a wrong answer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from her2viewer.errors import RegistrationError
from her2viewer.jobs import JobContext
from her2viewer.registration.transform import Registration
from her2viewer.slide import Slide
from her2viewer.stain import rgb_to_od
from her2viewer.tissue import PRESETS, segment_tissue

COARSE_SIDE = 400
FINE_FACTOR = 2
MAX_FINE_SIDE = 2048
ANGLE_STEP = 6
CANDIDATES = 3
#: Registration is refused below these figures.
MIN_DICE = 0.8
MIN_CORRELATION = 0.85
MAX_RESIDUAL_FINE_PX = 4.0
BLOCK = 64
TISSUE_PARAMS = PRESETS["ihc"]
#: The steps of :func:`register_slides`, reported through its job context.
STEPS = (
    "tissue of the fixed slide",
    "tissue of the moving slide",
    "rotation and flip search",
    "affine refinement",
    "quality check",
)


@dataclass
class _View:
    """A slide at one resolution: grayscale, tissue mask and low-res -> level-0 matrix."""

    gray: np.ndarray
    mask: np.ndarray
    to_level0: np.ndarray


def _scale_matrix(sx: float, sy: float) -> np.ndarray:
    """Low-res pixel centres -> level-0 pixel centres."""
    return np.array([[sx, 0, 0.5 * sx - 0.5], [0, sy, 0.5 * sy - 0.5], [0, 0, 1.0]])


def _density(rgb: np.ndarray) -> np.ndarray:
    """Summed optical density, smoothed and scaled to about 0..1: stain-agnostic tissue density."""
    gray = cv2.GaussianBlur(rgb_to_od(rgb).sum(axis=-1), (0, 0), 1.5)
    return gray / max(float(np.percentile(gray, 99.5)), 1e-6)


def _view(slide: Slide, downsample: float, tissue) -> _View:
    w = max(8, round(slide.info.width / downsample))
    h = max(8, round(slide.info.height / downsample))
    level = slide.best_level_for_downsample(downsample)
    rgb = cv2.resize(slide.level_image(level), (w, h), interpolation=cv2.INTER_AREA)
    mask = cv2.resize(tissue.mask.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST)
    return _View(
        _density(rgb).astype(np.float32),
        mask > 0,
        _scale_matrix(slide.info.width / w, slide.info.height / h),
    )


def _centroid(mask: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    return np.array([xs.mean(), ys.mean()])


def _candidate(fixed: _View, moving: _View, angle: float, flip: bool, scale: float):
    """Affine fixed low-res -> moving low-res: rotate (and mirror) about the centroids."""
    cf, cm = _centroid(fixed.mask), _centroid(moving.mask)
    t = np.deg2rad(angle)
    rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]]) / scale
    if flip:
        rot = rot @ np.diag([-1.0, 1.0])
    return np.hstack([rot, (cm - rot @ cf)[:, None]]).astype(np.float32)


def _warp(view: _View, affine: np.ndarray, shape) -> np.ndarray:
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    return cv2.warpAffine(view.gray, affine, shape[::-1], flags=flags)


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / (np.sqrt((a * a).sum() * (b * b).sum()) + 1e-9))


def _ecc(fixed: _View, moving: _View, affine: np.ndarray, iterations: int):
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, iterations, 1e-5)
    warp = affine.astype(np.float32).copy()
    try:
        rho, warp = cv2.findTransformECC(
            fixed.gray, moving.gray, warp, cv2.MOTION_AFFINE, criteria, None, 3
        )
    except cv2.error:
        return -1.0, affine
    return float(rho), warp


def _coarse(fixed: _View, moving: _View) -> np.ndarray:
    scale = np.sqrt(fixed.mask.sum() / max(moving.mask.sum(), 1))
    scored = []
    for flip in (False, True):
        for angle in range(0, 360, ANGLE_STEP):
            affine = _candidate(fixed, moving, angle, flip, scale)
            corr = _correlation(fixed.gray, _warp(moving, affine, fixed.gray.shape))
            scored.append((corr, affine))
    scored.sort(key=lambda item: -item[0])
    refined = [_ecc(fixed, moving, affine, 60) for _, affine in scored[:CANDIDATES]]
    return max(refined, key=lambda item: item[0])[1]


def _refine_scale(affine: np.ndarray, coarse_f: _View, fine_f: _View, coarse_m, fine_m):
    """Express a coarse fixed->moving affine at the fine resolution."""
    full = np.vstack([affine, [0, 0, 1]])
    fine = np.linalg.inv(fine_m.to_level0) @ coarse_m.to_level0 @ full
    fine = fine @ np.linalg.inv(coarse_f.to_level0) @ fine_f.to_level0
    return fine[:2].astype(np.float32)


def _residuals(fixed: _View, warped: np.ndarray) -> np.ndarray:
    """Local shifts (fine px) between fixed and registered moving blocks inside tissue."""
    window = cv2.createHanningWindow((BLOCK, BLOCK), cv2.CV_32F)
    shifts = []
    for y in range(0, fixed.gray.shape[0] - BLOCK + 1, BLOCK // 2):
        for x in range(0, fixed.gray.shape[1] - BLOCK + 1, BLOCK // 2):
            if fixed.mask[y : y + BLOCK, x : x + BLOCK].mean() < 0.9:
                continue
            a = fixed.gray[y : y + BLOCK, x : x + BLOCK]
            b = warped[y : y + BLOCK, x : x + BLOCK]
            (dx, dy), _ = cv2.phaseCorrelate(a, b, window)
            shifts.append(np.hypot(dx, dy))
    return np.asarray(shifts, float)


def _step_reporter(context: JobContext | None):
    """Return ``report(done)``: ``done`` of the :data:`STEPS`, named by the next one."""

    def report(done: int) -> None:
        if context is not None:
            context.report(done, len(STEPS), STEPS[done] if done < len(STEPS) else "done")

    return report


def _downsamples(fixed: Slide, moving: Slide) -> tuple[float, float, float]:
    """Coarse fixed downsample, fine fixed downsample, moving/fixed pixel-size ratio."""
    coarse = max(fixed.info.width, fixed.info.height) / COARSE_SIDE
    fine = max(coarse / FINE_FACTOR, max(fixed.info.width, fixed.info.height) / MAX_FINE_SIDE, 1)
    mpp_f, mpp_m = fixed.info.mpp_x, moving.info.mpp_x
    return coarse, fine, (mpp_f / mpp_m) if mpp_f and mpp_m else 1.0


def register_slides(
    fixed_slide: Slide, moving_slide: Slide, context: JobContext | None = None
) -> Registration:
    """Register ``moving_slide`` (e.g. IHC) onto ``fixed_slide`` (e.g. H&E) automatically.

    Rotations of any angle and mirror flips are searched; scale may differ a little
    (affine). Works on the low-resolution levels only, so it takes seconds.

    Parameters
    ----------
    fixed_slide, moving_slide : Slide
        Open slides of the same tissue (any stains).
    context : JobContext, optional
        Progress per step (:data:`STEPS`) and cancellation.

    Returns
    -------
    Registration
        ``.matrix`` is 3x3, moving level-0 px -> fixed level-0 px (apply with
        ``.transform_points``; ``.inverse()`` goes the other way), ``.method``,
        ``.error_px`` (median local residual in fixed level-0 px) and ``.quality``
        (``dice``, ``correlation``, residual percentiles). Save with ``.save(path)``,
        read back with ``Registration.load(path)``. The viewer uses the matrix to
        move the panes in step.

    Raises
    ------
    RegistrationError
        With a one-line reason when either slide has no tissue or when the slides
        do not match (mask overlap, texture correlation or local residuals too poor).
    """
    report = _step_reporter(context)
    report(0)
    tissue_f = segment_tissue(fixed_slide, TISSUE_PARAMS)
    report(1)
    tissue_m = segment_tissue(moving_slide, TISSUE_PARAMS)
    report(2)
    for slide, tissue in ((fixed_slide, tissue_f), (moving_slide, tissue_m)):
        if not tissue.mask.any():
            raise RegistrationError(f"{slide.info.path}: no tissue found, nothing to register.")
    coarse, fine, ratio = _downsamples(fixed_slide, moving_slide)
    coarse_f, coarse_m = (
        _view(fixed_slide, coarse, tissue_f),
        _view(moving_slide, coarse * ratio, tissue_m),
    )
    affine = _coarse(coarse_f, coarse_m)
    report(3)
    fine_f, fine_m = _view(fixed_slide, fine, tissue_f), _view(moving_slide, fine * ratio, tissue_m)
    rho, affine = _ecc(
        fine_f, fine_m, _refine_scale(affine, coarse_f, fine_f, coarse_m, fine_m), 80
    )
    report(4)
    warped = _warp(fine_m, affine, fine_f.gray.shape)
    warped_mask = (
        _warp(
            _View(fine_m.mask.astype(np.float32), fine_m.mask, fine_m.to_level0),
            affine,
            fine_f.gray.shape,
        )
        > 0.5
    )
    dice = 2 * (warped_mask & fine_f.mask).sum() / max(warped_mask.sum() + fine_f.mask.sum(), 1)
    residual = _residuals(fine_f, warped)
    median = float(np.median(residual)) if residual.size else float("inf")
    quality = {
        "dice": float(dice),
        "correlation": rho,
        "residual_median_px": median * fine,
        "residual_p90_px": float(np.percentile(residual, 90)) * fine if residual.size else None,
        "residual_blocks": int(residual.size),
        "fine_downsample": fine,
    }
    if dice < MIN_DICE or rho < MIN_CORRELATION or median > MAX_RESIDUAL_FINE_PX:
        raise RegistrationError(
            f"Could not register {moving_slide.info.path} to {fixed_slide.info.path}: "
            f"tissue overlap {dice:.2f}, correlation {rho:.2f}, local residual "
            f"{median * fine:.0f} px; are they sections of the same block?"
        )
    report(5)
    full = np.vstack([affine, [0, 0, 1]])  # fixed fine px -> moving fine px
    matrix = fine_f.to_level0 @ np.linalg.inv(full) @ np.linalg.inv(fine_m.to_level0)
    return Registration(
        matrix,
        "rotation-flip-search+ecc-affine (hematoxylin OD)",
        median * fine,
        quality,
        str(fixed_slide.info.path),
        str(moving_slide.info.path),
    )


def registration_from_landmarks(moving_points, fixed_points) -> Registration:
    """Fit an affine registration to 3 or more landmark pairs (manual correction).

    Parameters
    ----------
    moving_points, fixed_points : array_like, shape (N, 2)
        Level-0 points picked on the moving and fixed slides, pairwise.

    Returns
    -------
    Registration
        ``method`` ``landmarks``; ``error_px`` is the RMS landmark residual.

    Raises
    ------
    RegistrationError
        With fewer than 3 pairs, mismatched counts or collinear points.
    """
    src = np.asarray(moving_points, float).reshape(-1, 2)
    dst = np.asarray(fixed_points, float).reshape(-1, 2)
    if len(src) != len(dst) or len(src) < 3:
        raise RegistrationError(
            f"Landmark registration needs 3 or more pairs, got {len(src)} and {len(dst)} points."
        )
    design = np.hstack([src, np.ones((len(src), 1))])
    if np.linalg.matrix_rank(design) < 3:
        raise RegistrationError("The landmarks are collinear; pick points that span the tissue.")
    solution, *_ = np.linalg.lstsq(design, dst, rcond=None)
    matrix = np.vstack([solution.T, [0, 0, 1]])
    residual = design @ solution - dst
    rms = float(np.sqrt((residual**2).sum(axis=1).mean()))
    return Registration(matrix, "landmarks", rms, {"landmarks": len(src)})


def _read_window(slide: Slide, x0: int, y0: int, w0: int, h0: int, downsample: float):
    """Read a level-0 window at ``downsample``; return it and its px -> level-0 matrix."""
    level = slide.best_level_for_downsample(downsample)
    ds = slide.info.levels[level].downsample
    read_w, read_h = max(1, math.ceil(w0 / ds)), max(1, math.ceil(h0 / ds))
    out_w, out_h = max(8, round(w0 / downsample)), max(8, round(h0 / downsample))
    rgb = slide.read_region((x0, y0), level, (read_w, read_h))
    rgb = cv2.resize(rgb, (out_w, out_h), interpolation=cv2.INTER_AREA)
    shift = np.array([[1, 0, x0], [0, 1, y0], [0, 0, 1.0]])
    return rgb, shift @ _scale_matrix(read_w * ds / out_w, read_h * ds / out_h)


def refine_local(
    fixed_slide: Slide,
    moving_slide: Slide,
    registration: Registration,
    center: tuple[float, float],
    size: int = 4096,
    downsample: float = 4.0,
) -> Registration:
    """Refine a registration around a viewport at higher resolution (ECC, affine).

    Parameters
    ----------
    fixed_slide, moving_slide : Slide
        The registered pair.
    registration : Registration
        The global moving -> fixed transform.
    center : (float, float)
        Viewport centre in fixed level-0 pixels.
    size : int
        Side of the refined window in fixed level-0 pixels.
    downsample : float
        Level-0 pixels per analysed pixel (4: about 2 um at 20x).

    Returns
    -------
    Registration
        Valid near ``center``; ``quality`` holds the local correlation and the shift
        of the centre relative to the global transform.

    Raises
    ------
    RegistrationError
        When the window has too little texture or ECC does not converge; keep the
        global transform then.
    """
    x0, y0 = int(center[0] - size / 2), int(center[1] - size / 2)
    fixed_rgb, fixed_px = _read_window(fixed_slide, x0, y0, size, size, downsample)
    corners = np.array([[0, 0], [size, 0], [0, size], [size, size]], float) + [x0, y0]
    inverse = np.linalg.inv(registration.matrix)
    moving_corners = corners @ inverse[:2, :2].T + inverse[:2, 2]
    (mx0, my0), (mx1, my1) = moving_corners.min(0).astype(int), moving_corners.max(0).astype(int)
    moving_rgb, moving_px = _read_window(moving_slide, mx0, my0, mx1 - mx0, my1 - my0, downsample)
    start = np.linalg.inv(moving_px) @ inverse @ fixed_px  # fixed window px -> moving px
    fixed = _View(_density(fixed_rgb), np.ones(fixed_rgb.shape[:2], bool), fixed_px)
    moving = _View(_density(moving_rgb), np.ones(moving_rgb.shape[:2], bool), moving_px)
    rho, affine = _ecc(fixed, moving, start[:2].astype(np.float32), 100)
    if rho < MIN_CORRELATION:
        raise RegistrationError(
            f"Local refinement did not converge here (correlation {rho:.2f}); "
            "keeping the global transform."
        )
    matrix = fixed_px @ np.linalg.inv(np.vstack([affine, [0, 0, 1]])) @ np.linalg.inv(moving_px)
    probe = inverse @ np.array([center[0], center[1], 1.0])
    shift = float(np.hypot(*((matrix @ probe)[:2] - center)))
    quality = {"local_correlation": rho, "center_shift_px": shift, "window_px": size}
    return Registration(
        matrix,
        registration.method + " + local ECC",
        registration.error_px,
        {**registration.quality, **quality},
        registration.fixed,
        registration.moving,
    )
