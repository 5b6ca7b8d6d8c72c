"""Synthetic IHC fields and slides drawn cell by cell, with the truth of every cell.

Each cell has a nucleus (hematoxylin, with DAB for nuclear markers) and, for HER2, a
membrane ring whose DAB intensity and completeness follow its class. The image is made by
Beer-Lambert from the stain amounts with the standard H-DAB vectors, plus sensor noise, so
colour deconvolution recovers the amounts the field was drawn with. Used to measure the
cell engine (detection F1, per-class confusion, category accuracy) and its speed.

Every cell is planned first (:func:`plan_cells`: centre, class, nucleus shape, membrane
arc), then any window is rendered from the plan alone (:func:`render_cells`): cells are
local, so a slide of any size is drawn tile by tile and the tiles agree at their edges.
:func:`write_cell_case` writes such a slide as a pyramidal Aperio-style TIFF with its cell
truth (``cells.csv``).

Classes (index: HER2 membrane / nuclear marker):
0 unstained / negative, 1 faint incomplete / weak, 2 weak-moderate complete / moderate,
3 strong complete / strong.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from scipy import ndimage

from her2viewer.outputs import atomic_output
from her2viewer.slide.synthetic import write_slide
from her2viewer.tables import write_csv

#: H-DAB stain vectors (rows: hematoxylin, DAB), unit optical density directions.
H_VECTOR = np.array([0.650, 0.704, 0.286], np.float32)
DAB_VECTOR = np.array([0.268, 0.570, 0.776], np.float32)

#: HER2 membrane (DAB OD of the ring, fraction of the circumference) per class.
MEMBRANE = {0: (0.0, 0.0), 1: (0.2, 0.4), 2: (0.45, 1.0), 3: (0.95, 1.0)}
#: Nuclear DAB OD per class (ER, PR, Ki67), mid-way in QuPath's 0.2 / 0.4 / 0.6 bins.
NUCLEAR = {0: 0.0, 1: 0.3, 2: 0.55, 3: 0.95}
#: Half width of a membrane on each side of the boundary between two cells (um), so that a
#: membrane is as wide at 40x as at 20x and stays visible when a 40x slide is downsampled.
MEMBRANE_HALF_UM = 1.0
#: Hematoxylin OD of the cytoplasm and stroma between nuclei (the counterstain's tint).
CYTOPLASM_OD = 0.04
#: Largest window rendered at once (pixels per side; bounds the temporary memory).
RENDER_TILE = 1024
#: Farthest a cell reaches from its centre, in cell spacings (jittered grid: < 0.75).
CELL_REACH = 0.75
#: Sensor noise (standard deviation, 8-bit levels).
NOISE = 3.0


@dataclass
class CellField:
    """A drawn field and its truth.

    Attributes
    ----------
    rgb : numpy.ndarray
        ``(h, w, 3)`` uint8 image.
    x, y : numpy.ndarray
        Nucleus centres in pixels.
    classes : numpy.ndarray
        int8 class per cell (see the module docstring).
    mpp : float
        Micrometres per pixel.
    """

    rgb: np.ndarray
    x: np.ndarray
    y: np.ndarray
    classes: np.ndarray
    mpp: float


@dataclass
class CellPlan:
    """Every cell of a field or slide, before any pixel is drawn.

    Attributes
    ----------
    x, y : numpy.ndarray
        Nucleus centres in level-0 pixels.
    classes : numpy.ndarray
        int8 class per cell.
    marker : str
        her2 (membranes) or er / pr / ki67 (nuclear DAB).
    mpp : float
        Micrometres per pixel.
    spacing : float
        Distance between neighbouring cells (pixels).
    radius, aspect, angle, darkness, phase : numpy.ndarray
        Per cell: nucleus radius (px), axis ratio, orientation (degrees), hematoxylin OD,
        and the direction (radians) the stained arc of an incomplete membrane faces.
    seed : int
        Seed of the sensor noise.
    """

    x: np.ndarray
    y: np.ndarray
    classes: np.ndarray
    marker: str
    mpp: float
    spacing: float
    radius: np.ndarray
    aspect: np.ndarray
    angle: np.ndarray
    darkness: np.ndarray
    phase: np.ndarray
    seed: int

    def __len__(self) -> int:
        return int(self.x.size)


Inside = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _centres(rng, width, height, spacing_px) -> np.ndarray:
    """Jittered grid of cell centres, at least ~0.7 spacing apart."""
    gx, gy = np.meshgrid(
        np.arange(spacing_px / 2, width, spacing_px), np.arange(spacing_px / 2, height, spacing_px)
    )
    points = np.column_stack([gx.ravel(), gy.ravel()])
    points = points + rng.uniform(-0.15, 0.15, points.shape) * spacing_px
    keep = (points[:, 0] > 2) & (points[:, 0] < width - 2)
    keep &= (points[:, 1] > 2) & (points[:, 1] < height - 2)
    return points[keep]


def plan_cells(
    width: int,
    height: int,
    class_fractions: tuple[float, float, float, float],
    marker: str = "her2",
    mpp: float = 0.5,
    seed: int = 0,
    cell_diameter_um: float = 14.0,
    nucleus_diameter_um: tuple[float, float] = (6.0, 9.0),
    inside: Inside | None = None,
) -> CellPlan:
    """Place and class every cell of a ``width`` x ``height`` field.

    Parameters
    ----------
    width, height : int
        Field size in pixels.
    class_fractions : tuple of 4 floats
        Fraction of cells of class 0, 1, 2, 3 (normalised; met exactly up to rounding).
    marker : {"her2", "er", "pr", "ki67"}
        HER2 draws membranes; the others nuclear DAB.
    mpp : float
        Micrometres per pixel.
    seed : int
        Random seed.
    cell_diameter_um, nucleus_diameter_um : float
        Cell spacing and nucleus size range.
    inside : callable, optional
        ``inside(x, y) -> bool array``: only cells whose centre it accepts are kept
        (the tissue of a slide); every cell by default.

    Returns
    -------
    CellPlan
    """
    rng = np.random.default_rng(seed)
    spacing = cell_diameter_um / mpp
    centres = _centres(rng, width, height, spacing)
    if inside is not None:
        centres = centres[inside(centres[:, 0], centres[:, 1])]
    n = len(centres)
    classes = _clustered_classes(rng, centres, class_fractions, width, height, spacing)
    return CellPlan(
        x=centres[:, 0],
        y=centres[:, 1],
        classes=classes,
        marker=marker,
        mpp=mpp,
        spacing=spacing,
        radius=rng.uniform(*nucleus_diameter_um, n) / 2 / mpp,
        aspect=rng.uniform(0.85, 1.15, n),
        angle=rng.uniform(0, 180, n),
        darkness=rng.uniform(0.5, 0.8, n),
        phase=rng.uniform(-np.pi, np.pi, n),
        seed=seed,
    )


def _clustered_classes(rng, centres, fractions, width, height, spacing) -> np.ndarray:
    """Classes in clones, as staining is in tissue: a smooth random field, cut at quantiles.

    Neighbouring cells mostly share a class, so a membrane between two cells is rarely
    claimed by two different truths; the fractions are met exactly (up to rounding).
    """
    small = (max(2, int(height // spacing)), max(2, int(width // spacing)))
    field = cv2.GaussianBlur(rng.standard_normal(small).astype(np.float32), (0, 0), 1.5)
    coords = [centres[:, 1] * small[0] / height - 0.5, centres[:, 0] * small[1] / width - 0.5]
    values = ndimage.map_coordinates(field, coords, order=1, mode="nearest")
    p = np.asarray(fractions, np.float64) / np.sum(fractions)
    bounds = np.round(np.cumsum(p)[:-1] * len(values)).astype(int)
    classes = np.zeros(len(values), np.int8)
    order = np.argsort(values, kind="stable")
    for edge in bounds:
        classes[order[edge:]] += 1
    return classes


def render_cells(plan: CellPlan, x0: int, y0: int, width: int, height: int) -> np.ndarray:
    """Draw the window ``(x0, y0, width, height)`` of a planned field.

    The window is drawn with a margin wide enough for every cell reaching into it, so
    windows side by side agree at their edges; the sensor noise is seeded by the plan's
    seed and the window's corner.

    Returns
    -------
    numpy.ndarray
        ``(height, width, 3)`` uint8 RGB.
    """
    margin = int(math.ceil(plan.spacing * CELL_REACH)) + 2 * _membrane_half_px(plan.mpp) + 4
    wx, wy = x0 - margin, y0 - margin
    shape = (height + 2 * margin, width + 2 * margin)
    reach = margin + plan.spacing
    near = (plan.x > x0 - reach) & (plan.x < x0 + width + reach)
    near &= (plan.y > y0 - reach) & (plan.y < y0 + height + reach)
    index = np.flatnonzero(near)
    cx, cy = plan.x[index] - wx, plan.y[index] - wy
    owner, distance = _voronoi(cx, cy, shape)
    cell = np.where(distance <= plan.spacing * CELL_REACH, owner, 0)
    hematoxylin = np.where(cell > 0, np.float32(CYTOPLASM_OD), np.float32(0.0))
    dab = np.zeros(shape, np.float32)
    _draw_nuclei(plan, index, cx, cy, hematoxylin, dab)
    if plan.marker == "her2":
        dab = _membranes(plan, index, cx, cy, cell)
    od = hematoxylin[..., None] * H_VECTOR + dab[..., None] * DAB_VECTOR
    od = cv2.GaussianBlur(od, (0, 0), 0.7)[margin : margin + height, margin : margin + width]
    rng = np.random.default_rng([plan.seed, 1, x0, y0])
    rgb = 255.0 * np.power(10.0, -od) + rng.normal(0, NOISE, od.shape)
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def _voronoi(cx, cy, shape) -> tuple[np.ndarray, np.ndarray]:
    """Nearest cell (1-based, 0 without cells) and the distance to it, for every pixel."""
    seeds = np.ones(shape, np.uint8)
    if cx.size == 0:
        return np.zeros(shape, np.int32), np.full(shape, np.inf, np.float32)
    px = np.clip(np.rint(cx).astype(np.int64), 0, shape[1] - 1)
    py = np.clip(np.rint(cy).astype(np.int64), 0, shape[0] - 1)
    seeds[py, px] = 0
    distance, nearest = cv2.distanceTransformWithLabels(
        seeds, cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_PIXEL
    )
    # DIST_LABEL_PIXEL numbers the zero pixels 1..K in raster order
    ids = np.zeros(shape, np.int32)
    ids[py, px] = np.arange(1, cx.size + 1, dtype=np.int32)
    owners = np.concatenate([[0], ids[seeds == 0]]).astype(np.int32)
    return owners[nearest], distance


def _draw_nuclei(plan, index, cx, cy, hematoxylin, dab) -> None:
    for i, x, y in zip(index, cx, cy, strict=True):
        r = plan.radius[i]
        axes = (max(1, int(round(r * plan.aspect[i]))), max(1, int(round(r))))
        centre = (int(round(x)), int(round(y)))
        angle = float(plan.angle[i])
        cv2.ellipse(hematoxylin, centre, axes, angle, 0, 360, float(plan.darkness[i]), -1)
        level = NUCLEAR[int(plan.classes[i])]
        if plan.marker != "her2" and level > 0:
            cv2.ellipse(dab, centre, axes, angle, 0, 360, level, -1)


def _membrane_half_px(mpp: float) -> int:
    """:data:`MEMBRANE_HALF_UM` in pixels at ``mpp`` (at least one)."""
    return max(1, int(round(MEMBRANE_HALF_UM / mpp)))


def _membranes(plan, index, cx, cy, cell) -> np.ndarray:
    """DAB of each cell's membrane: a band along its outline, on the arc its class stains."""
    side = 2 * _membrane_half_px(plan.mpp) + 1
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (side, side))
    labels = cell.astype(np.float32)  # exact for labels below 2**24
    low = cv2.erode(labels, kernel, borderType=cv2.BORDER_REPLICATE)
    high = cv2.dilate(labels, kernel, borderType=cv2.BORDER_REPLICATE)
    ys, xs = np.nonzero((cell > 0) & ((low != labels) | (high != labels)))
    local = cell[ys, xs] - 1
    classes = plan.classes[index[local]]
    intensity = np.array([MEMBRANE[c][0] for c in range(4)], np.float32)[classes]
    fraction = np.array([MEMBRANE[c][1] for c in range(4)], np.float32)[classes]
    angle = np.arctan2(ys - cy[local], xs - cx[local])
    on_arc = np.cos(angle - plan.phase[index[local]]) >= 1 - 2 * fraction
    dab = np.zeros(cell.shape, np.float32)
    dab[ys, xs] = np.where(on_arc, intensity, 0.0)
    return dab


def render_region(plan: CellPlan, x0: int, y0: int, width: int, height: int) -> np.ndarray:
    """Any region of a planned field, drawn in windows of :data:`RENDER_TILE` (bounded memory)."""
    rgb = np.empty((height, width, 3), np.uint8)
    for y in range(0, height, RENDER_TILE):
        for x in range(0, width, RENDER_TILE):
            w, h = min(RENDER_TILE, width - x), min(RENDER_TILE, height - y)
            rgb[y : y + h, x : x + w] = render_cells(plan, x0 + x, y0 + y, w, h)
    return rgb


def draw_cell_field(
    width: int,
    height: int,
    class_fractions: tuple[float, float, float, float],
    marker: str = "her2",
    mpp: float = 0.5,
    seed: int = 0,
    cell_diameter_um: float = 14.0,
    nucleus_diameter_um: tuple[float, float] = (6.0, 9.0),
) -> CellField:
    """Draw a field of cells with the given class mix (see :func:`plan_cells`).

    Returns
    -------
    CellField
    """
    plan = plan_cells(
        width, height, class_fractions, marker, mpp, seed, cell_diameter_um, nucleus_diameter_um
    )
    return CellField(render_region(plan, 0, 0, width, height), plan.x, plan.y, plan.classes, mpp)


@dataclass(frozen=True)
class CellCaseSpec:
    """One synthetic case whose IHC slide is drawn cell by cell.

    Attributes
    ----------
    case_id : str
        Folder name and identifier.
    marker : str
        her2, er, pr or ki67.
    class_fractions : tuple of 4 floats
        Fraction of cells of class 0..3.
    width, height : int
        Level-0 size of the slide.
    seed : int
        The case's own seed (cells, tissue and noise).
    cell_diameter_um : float
        Spacing of the cells: below ~12 um nuclei of 6-9 um start to touch.
    """

    case_id: str
    marker: str
    class_fractions: tuple[float, float, float, float]
    width: int
    height: int
    seed: int
    mpp: float = 0.5
    app_mag: int = 20
    cell_diameter_um: float = 14.0


def tissue_outline(seed: int, width: int, height: int) -> Inside:
    """A rounded piece of tissue with an irregular edge, leaving glass around it."""
    rng = np.random.default_rng([seed, 2])
    grid = 64
    yy, xx = (np.mgrid[0:grid, 0:grid] + 0.5) / grid - 0.5
    noise = cv2.GaussianBlur(rng.standard_normal((grid, grid)).astype(np.float32), (0, 0), 4)
    level = 1.0 - (xx / 0.4) ** 2 - (yy / 0.4) ** 2 + 0.2 * noise / (noise.std() + 1e-6)
    mask = (level > 0).astype(np.float32)
    mask[[0, 1, -2, -1]] = mask[:, [0, 1, -2, -1]] = 0  # glass along every edge

    def inside(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        coords = [y * grid / height - 0.5, x * grid / width - 0.5]
        return ndimage.map_coordinates(mask, coords, order=0, mode="constant") > 0

    return inside


class _CellRenderer:
    """Level-0 strips of a planned slide, for :func:`synthetic.write_slide`."""

    def __init__(self, plan: CellPlan, width: int):
        self.plan = plan
        self.width = width

    def strip(self, y0: int, rows: int) -> np.ndarray:
        return render_region(self.plan, 0, y0, self.width, rows)


def write_cell_case(spec: CellCaseSpec, out_dir: str | Path) -> tuple[CellPlan, dict]:
    """Write a case's cell-by-cell IHC slide (``ihc.svs``) and its truth (``cells.csv``).

    ``cells.csv`` has one row per cell: ``x``, ``y`` (nucleus centre, level-0 pixels) and
    ``class`` (0-3, see the module docstring). The case's category is the guideline's
    reading of these classes; the cells room adds it (the slide room knows no guideline).

    Returns
    -------
    (CellPlan, dict)
        The plan and the files and counts written.
    """
    case_dir = Path(out_dir) / spec.case_id
    case_dir.mkdir(parents=True, exist_ok=True)
    plan = plan_cells(
        spec.width,
        spec.height,
        spec.class_fractions,
        spec.marker,
        spec.mpp,
        spec.seed,
        spec.cell_diameter_um,
        inside=tissue_outline(spec.seed, spec.width, spec.height),
    )
    with atomic_output(case_dir / "ihc.svs") as tmp:
        write_slide(tmp, spec, None, spec.marker, _CellRenderer(plan, spec.width))
    rows = zip(np.round(plan.x, 2), np.round(plan.y, 2), plan.classes.tolist(), strict=True)
    write_csv(case_dir / "cells.csv", ["x", "y", "class"], rows)
    counts = np.bincount(plan.classes.astype(np.int64), minlength=4)[:4]
    return plan, {
        "ihc_path": "ihc.svs",
        "cells_path": "cells.csv",
        "n_cells": len(plan),
        "class_counts": [int(c) for c in counts],
    }
