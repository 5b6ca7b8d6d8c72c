"""Synthetic IHC fields drawn cell by cell, with the truth of every cell.

Each cell has a nucleus (hematoxylin, with DAB for nuclear markers) and, for HER2, a
membrane ring whose DAB intensity and completeness follow its class. The image is made by
Beer-Lambert from the stain amounts with the standard H-DAB vectors, plus sensor noise, so
colour deconvolution recovers the amounts the field was drawn with. Used to measure the
cell engine (detection F1, per-class confusion, category accuracy) and its speed.

Classes (index: HER2 membrane / nuclear marker):
0 unstained / negative, 1 faint incomplete / weak, 2 weak-moderate complete / moderate,
3 strong complete / strong.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy.spatial import cKDTree

#: H-DAB stain vectors (rows: hematoxylin, DAB), unit optical density directions.
H_VECTOR = np.array([0.650, 0.704, 0.286], np.float32)
DAB_VECTOR = np.array([0.268, 0.570, 0.776], np.float32)

#: HER2 membrane (DAB OD of the ring, fraction of the circumference) per class.
MEMBRANE = {0: (0.0, 0.0), 1: (0.2, 0.4), 2: (0.45, 1.0), 3: (0.95, 1.0)}
#: Nuclear DAB OD per class (ER, PR, Ki67), mid-way in QuPath's 0.2 / 0.4 / 0.6 bins.
NUCLEAR = {0: 0.0, 1: 0.3, 2: 0.55, 3: 0.95}
#: Width of a membrane across the boundary between two cells (pixels, both sides).
MEMBRANE_BAND_PX = 4.0


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


def _centres(rng, width, height, spacing_px) -> np.ndarray:
    """Jittered grid of cell centres, at least ~0.8 spacing apart."""
    gx, gy = np.meshgrid(
        np.arange(spacing_px / 2, width, spacing_px), np.arange(spacing_px / 2, height, spacing_px)
    )
    points = np.column_stack([gx.ravel(), gy.ravel()])
    points = points + rng.uniform(-0.15, 0.15, points.shape) * spacing_px
    keep = (points[:, 0] > 2) & (points[:, 0] < width - 2)
    keep &= (points[:, 1] > 2) & (points[:, 1] < height - 2)
    return points[keep]


def draw_cell_field(
    width: int,
    height: int,
    class_fractions: tuple[float, float, float, float],
    marker: str = "her2",
    mpp: float = 0.5,
    seed: int = 0,
    cell_diameter_um: float = 14.0,
    nucleus_diameter_um: tuple[float, float] = (6.0, 9.0),
    noise: float = 3.0,
) -> CellField:
    """Draw a field of cells with the given class mix.

    Parameters
    ----------
    width, height : int
        Field size in pixels.
    class_fractions : tuple of 4 floats
        Expected fraction of cells of class 0, 1, 2, 3 (normalised).
    marker : {"her2", "er", "pr", "ki67"}
        HER2 draws membranes; the others nuclear DAB.
    mpp : float
        Micrometres per pixel.
    seed : int
        Random seed.
    cell_diameter_um, nucleus_diameter_um : float
        Cell spacing and nucleus size range.
    noise : float
        Standard deviation of the sensor noise in 8-bit levels.

    Returns
    -------
    CellField
    """
    rng = np.random.default_rng(seed)
    spacing = cell_diameter_um / mpp
    centres = _centres(rng, width, height, spacing)
    classes = _clustered_classes(rng, centres, class_fractions, width, height, spacing)
    hematoxylin = np.zeros((height, width), np.float32)
    dab = np.zeros((height, width), np.float32)
    radii = rng.uniform(*nucleus_diameter_um, len(centres)) / 2 / mpp
    for (x, y), r, c in zip(centres, radii, classes, strict=True):
        axes = (max(1, int(round(r * rng.uniform(0.85, 1.15)))), max(1, int(round(r))))
        angle = float(rng.uniform(0, 180))
        centre = (int(round(x)), int(round(y)))
        cv2.ellipse(hematoxylin, centre, axes, angle, 0, 360, float(rng.uniform(0.5, 0.8)), -1)
        if marker != "her2" and NUCLEAR[int(c)] > 0:
            cv2.ellipse(dab, centre, axes, angle, 0, 360, NUCLEAR[int(c)], -1)
    if marker == "her2":
        dab = _membranes(rng, centres, classes, width, height, spacing)
    od = hematoxylin[..., None] * H_VECTOR + dab[..., None] * DAB_VECTOR
    od = cv2.GaussianBlur(od, (0, 0), 0.7)
    rgb = 255.0 * np.power(10.0, -od) + rng.normal(0, noise, od.shape)
    rgb = np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
    return CellField(rgb, centres[:, 0], centres[:, 1], classes, mpp)


def _clustered_classes(rng, centres, fractions, width, height, spacing) -> np.ndarray:
    """Classes in clones, as staining is in tissue: a smooth random field, cut at quantiles.

    Neighbouring cells mostly share a class, so a membrane between two cells is rarely
    claimed by two different truths; the fractions are met exactly (up to rounding).
    """
    small = (max(2, height // int(spacing)), max(2, width // int(spacing)))
    field = cv2.GaussianBlur(rng.standard_normal(small).astype(np.float32), (0, 0), 1.5)
    field = cv2.resize(field, (width, height), interpolation=cv2.INTER_CUBIC)
    values = field[centres[:, 1].astype(int), centres[:, 0].astype(int)]
    p = np.asarray(fractions, np.float64) / np.sum(fractions)
    bounds = np.round(np.cumsum(p)[:-1] * len(values)).astype(int)
    classes = np.zeros(len(values), np.int8)
    for edge in bounds:
        classes[np.argsort(values, kind="stable")[edge:]] += 1
    return classes


def _membranes(rng, centres, classes, width, height, spacing) -> np.ndarray:
    """DAB of membranes drawn on the Voronoi edges between cells, per cell's class."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    tree = cKDTree(centres)
    dist, idx = tree.query(np.column_stack([xx.ravel(), yy.ravel()]), k=2, workers=-1)
    owner = idx[:, 0].reshape(height, width)
    edge = (dist[:, 1] - dist[:, 0]).reshape(height, width)
    inside = dist[:, 0].reshape(height, width) < spacing * 0.75
    angle = np.arctan2(yy - centres[owner, 1], xx - centres[owner, 0])
    intensity = np.array([MEMBRANE[int(c)][0] for c in classes], np.float32)
    fraction = np.array([MEMBRANE[int(c)][1] for c in classes], np.float32)
    phase = rng.uniform(-np.pi, np.pi, len(centres)).astype(np.float32)
    arc = np.cos(angle - phase[owner])
    on_arc = arc >= 1 - 2 * fraction[owner]
    ring = (edge < MEMBRANE_BAND_PX) & inside & on_arc
    return np.where(ring, intensity[owner], 0.0).astype(np.float32)
