"""The cell engine: detect, measure and class every cell of a region, then apply the guideline.

A large region is processed in overlapping tiles. Each tile is read with a margin wide
enough to hold the largest cell, and keeps only the cells whose nucleus centre lies in its
own core; the cores tile the region without overlap, so every cell is counted exactly once
and no cell is cut by a tile edge.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

import cv2
import numpy as np
import shapely
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from her2viewer.cells import rules
from her2viewer.cells.detect import NucleusDetector, load_detector
from her2viewer.cells.measure import CellOutlines, CellTable, measure_cells
from her2viewer.cells.profiles import ScoringProfile
from her2viewer.jobs.core import JobContext
from her2viewer.stain.deconvolution import HDAB, separate_stains

#: Core size of the tiles a region is cut into (pixels at the analysis resolution).
TILE_PX = 1024
#: Ki67 counting methods (IKWG 2021): the whole tumor, or its densest circular hot spot.
KI67_METHODS = ("global", "hot-spot")
#: Hot-spot area (mm^2, a 40x high-power field) and the fewest cells it counts.
HOT_SPOT_MM2 = 0.2
HOT_SPOT_MIN_CELLS = 500
#: Grid step (um) of the positive-cell density the hot spot is searched on.
HOT_SPOT_GRID_UM = 10.0

#: Names of the per-cell classes, by marker.
CLASS_NAMES = {
    "her2": rules.MEMBRANE_CLASSES,
    "er": ("negative", "weak", "moderate", "strong"),
    "pr": ("negative", "weak", "moderate", "strong"),
    "ki67": ("negative", "weak", "moderate", "strong"),
}

Reader = Callable[[int, int, int, int], np.ndarray]


@dataclass
class Cells:
    """Every cell of a region with its class.

    Attributes
    ----------
    table : CellTable
        Measurements; ``x``/``y`` in the region's pixel frame plus ``origin``.
    classes : numpy.ndarray
        int8 class per cell, an index into :data:`CLASS_NAMES` of the marker.
    marker : str
        her2, er, pr or ki67.
    """

    table: CellTable
    classes: np.ndarray
    marker: str
    mpp: float
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.table)

    def take(self, index) -> Cells:
        """The cells selected by a boolean mask or index array."""
        return Cells(self.table.take(index), self.classes[index], self.marker, self.mpp, self.notes)

    def counts(self) -> np.ndarray:
        """Cells per class (length 4)."""
        return np.bincount(self.classes.astype(np.int64), minlength=4)[:4]


def class_of_cells(table: CellTable, profile: ScoringProfile, lateral: bool = False) -> np.ndarray:
    """Class every cell for the profile's marker.

    HER2: 3 strong complete, 2 weak-moderate complete, 1 stained but faint or incomplete,
    0 unstained; a membrane is complete when at least ``complete_fraction`` of it is stained
    (``lateral_fraction`` for gastric cancers, where lateral/basolateral staining counts),
    and the intensity is that of its stained part. ER, PR, Ki67: the nucleus' mean DAB
    against the weak / moderate / strong thresholds.
    """
    t = profile.thresholds
    if profile.marker != "her2":
        dab = table.dab_nucleus
        return ((dab >= t.weak).astype(np.int8) + (dab >= t.moderate) + (dab >= t.strong)).astype(
            np.int8
        )
    needed = profile.lateral_fraction if lateral else profile.complete_fraction
    complete = table.membrane_completeness >= needed
    stained = table.membrane_completeness >= profile.stained_fraction
    intensity = table.dab_membrane_stained
    classes = np.zeros(len(table), np.int8)
    classes[stained] = 1
    classes[complete & (intensity >= t.moderate)] = 2
    classes[complete & (intensity >= t.strong)] = 3
    return classes


def tile_cores(x: int, y: int, width: int, height: int, tile: int) -> Iterator[tuple[int, ...]]:
    """The non-overlapping core rectangles ``(x, y, w, h)`` that cover a region."""
    for ty in range(y, y + height, tile):
        for tx in range(x, x + width, tile):
            yield tx, ty, min(tile, x + width - tx), min(tile, y + height - ty)


def margin_px(profile: ScoringProfile, mpp: float) -> int:
    """Context read around each tile: the largest nucleus plus its cell expansion, twice."""
    nucleus = profile.nucleus
    reach = nucleus.max_diameter_um + 2 * nucleus.cell_expansion_um + nucleus.membrane_width_um
    return int(math.ceil(reach / mpp))


def _field_cells(
    rgb: np.ndarray,
    mpp: float,
    profile: ScoringProfile,
    detector: NucleusDetector,
    stain_matrix: np.ndarray,
) -> tuple[CellTable, np.ndarray, np.ndarray]:
    """The cells of one field: measurements, nucleus labels and cell labels."""
    stains = separate_stains(rgb, stain_matrix)
    nuclei = detector.detect(rgb, mpp, stains)
    table, cells = measure_cells(
        nuclei,
        stains[..., 0],
        stains[..., 1],
        mpp,
        profile.nucleus.cell_expansion_um,
        profile.nucleus.membrane_width_um,
        profile.thresholds.weak,
    )
    return table, nuclei, cells


def _tile_cells(
    read: Reader, core, bounds, margin, mpp, profile, detector, matrix, outlines: bool
) -> tuple[CellTable, CellOutlines | None]:
    cx, cy, cw, ch = core
    bx, by, bw, bh = bounds
    x0, y0 = max(bx, cx - margin), max(by, cy - margin)
    x1, y1 = min(bx + bw, cx + cw + margin), min(by + bh, cy + ch + margin)
    rgb = read(x0, y0, x1 - x0, y1 - y0)
    table, nuclei, cells = _field_cells(rgb, mpp, profile, detector, matrix)
    table = table.shifted(x0, y0)
    owned = (table.x >= cx) & (table.x < cx + cw) & (table.y >= cy) & (table.y < cy + ch)
    if not outlines:
        return table.take(owned), None
    labels = np.flatnonzero(owned) + 1
    shapes = CellOutlines.of_labels(nuclei, cells, labels, (x0, y0))
    return table.take(owned), shapes


def detect_cells(
    read: Reader,
    bounds: tuple[int, int, int, int],
    mpp: float,
    profile: ScoringProfile,
    detector: NucleusDetector | None = None,
    stain_matrix: np.ndarray = HDAB,
    context: JobContext | None = None,
    tile: int = TILE_PX,
    workers: int = 2,
) -> CellTable:
    """Detect and measure every cell of a region, tile by tile.

    Parameters
    ----------
    read : callable
        ``read(x, y, w, h) -> (h, w, 3) uint8`` at the analysis resolution; only called
        inside ``bounds``.
    bounds : tuple of int
        ``(x, y, w, h)`` of the region, in the reader's pixels.
    mpp : float
        Micrometres per pixel of the reader.
    profile : ScoringProfile
        Detection and measurement settings.
    detector : NucleusDetector, optional
        The classical detector of the profile by default.
    stain_matrix : numpy.ndarray
        The slide's stain vectors (hematoxylin, DAB, residual).
    context : JobContext, optional
        Progress per tile and cancellation.
    tile, workers : int
        Core tile size and threads (OpenCV and NumPy release the GIL).

    Returns
    -------
    CellTable
        Centroids in the reader's pixel frame; each cell once.
    """
    table, _ = detect_cell_shapes(
        read, bounds, mpp, profile, detector, stain_matrix, context, tile, workers
    )
    return table


def detect_cell_shapes(
    read: Reader,
    bounds: tuple[int, int, int, int],
    mpp: float,
    profile: ScoringProfile,
    detector: NucleusDetector | None = None,
    stain_matrix: np.ndarray = HDAB,
    context: JobContext | None = None,
    tile: int = TILE_PX,
    workers: int = 2,
    outlines: bool = False,
    keep_core: Callable[[tuple[int, int, int, int]], bool] | None = None,
) -> tuple[CellTable, CellOutlines | None]:
    """:func:`detect_cells`, with the cells' outlines and a choice of tiles.

    Parameters
    ----------
    read, bounds, mpp, profile, detector, stain_matrix, context, tile, workers
        As :func:`detect_cells`.
    outlines : bool
        Also trace every nucleus and cell outline (:class:`CellOutlines`, rows as the table's).
    keep_core : callable, optional
        ``keep_core((x, y, w, h))`` False skips that core tile (no tissue there, outside
        a region); every tile by default. Skipped tiles still lend their pixels as
        context to their neighbours, so no cell is cut.

    Returns
    -------
    (CellTable, CellOutlines or None)
    """
    detector = detector or load_detector(None, profile.nucleus)
    cores = [c for c in tile_cores(*bounds, tile) if keep_core is None or keep_core(c)]
    margin = margin_px(profile, mpp)
    args = (bounds, margin, mpp, profile, detector, stain_matrix, outlines)
    results = []
    pool = ThreadPoolExecutor(max_workers=max(1, workers))
    try:
        futures = [pool.submit(_tile_cells, read, core, *args) for core in cores]
        for done, future in enumerate(futures, start=1):
            results.append(future.result())
            if context is not None:
                context.report(done, len(cores), f"cells: tile {done}/{len(cores)}")
    finally:  # a cancelled or failed run does not wait for the tiles not yet started
        pool.shutdown(wait=True, cancel_futures=True)
    table = CellTable.concatenate([t for t, _ in results])
    shapes = CellOutlines.concatenate([s for _, s in results]) if outlines else None
    return table, shapes


def inside(table: CellTable, region, scale: float = 1.0) -> np.ndarray:
    """Which cells' centroids lie in a shapely region given in level-0 pixels.

    ``scale`` converts the table's pixels to level 0 (the analysis downsample).
    """
    return shapely.contains_xy(region, table.x * scale, table.y * scale)


def largest_clusters(cells: Cells, reach_um: float) -> dict[str, int]:
    """Largest group of touching tumor cells stained at least faint / weak-moderate / strong.

    Two cells touch when their nuclei are closer than ``reach_um`` (about two cell radii).
    """
    out = {}
    for name, least in (("faint", 1), ("weak_moderate", 2), ("strong", 3)):
        chosen = cells.classes >= least
        n = int(chosen.sum())
        if n == 0:
            out[name] = 0
            continue
        points = np.column_stack([cells.table.x[chosen], cells.table.y[chosen]]) * cells.mpp
        pairs = cKDTree(points).query_pairs(reach_um, output_type="ndarray")
        graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
        _, labels = connected_components(graph, directed=False)
        out[name] = int(np.bincount(labels).max())
    return out


@dataclass(frozen=True)
class HotSpot:
    """The circle with the most positive cells, and the cells counted in it.

    Attributes
    ----------
    x, y : float
        Centre, in the cells' pixel frame.
    radius_um, area_mm2 : float
        Size of the circle (grown past the asked area when that held too few cells).
    inside : numpy.ndarray
        Which cells lie in it (bool per cell).
    """

    x: float
    y: float
    radius_um: float
    area_mm2: float
    inside: np.ndarray

    def to_dict(self) -> dict:
        """The hot spot for a summary: centre (px), radius, area and the cells in it."""
        return {
            "x": round(self.x, 1),
            "y": round(self.y, 1),
            "radius_um": round(self.radius_um, 1),
            "area_mm2": round(self.area_mm2, 4),
            "n_cells": int(self.inside.sum()),
        }


def hot_spot(
    cells: Cells, area_mm2: float = HOT_SPOT_MM2, min_cells: int = HOT_SPOT_MIN_CELLS
) -> HotSpot:
    """The circular region of ``area_mm2`` with the most positive cells (IKWG 2021 hot spot).

    Positive cells are counted on a :data:`HOT_SPOT_GRID_UM` grid, the counts summed over a
    disc of the area's radius, and the disc's centre put at the largest sum. When fewer than
    ``min_cells`` cells lie in it, the circle grows about that centre until it holds them
    (or every cell).
    """
    radius_um = math.sqrt(area_mm2 / math.pi) * 1000.0
    step = HOT_SPOT_GRID_UM / cells.mpp
    xy = np.column_stack([cells.table.x, cells.table.y]).astype(np.float64)
    if len(cells) == 0:
        return HotSpot(0.0, 0.0, radius_um, area_mm2, np.zeros(0, bool))
    origin = xy.min(axis=0)
    grid_xy = ((xy - origin) / step).astype(np.int64)
    positive = np.zeros(grid_xy.max(axis=0)[::-1] + 1, np.float32)
    chosen = cells.classes >= 1
    np.add.at(positive, (grid_xy[chosen, 1], grid_xy[chosen, 0]), 1)
    r = radius_um / HOT_SPOT_GRID_UM
    side = 2 * int(math.ceil(r)) + 1
    yy, xx = np.mgrid[:side, :side] - side // 2
    disc = (xx**2 + yy**2 <= r * r).astype(np.float32)
    summed = cv2.filter2D(positive, -1, disc, borderType=cv2.BORDER_CONSTANT)
    row, col = np.unravel_index(int(np.argmax(summed)), summed.shape)
    centre = origin + (np.array([col, row]) + 0.5) * step
    distance_um = np.hypot(*(xy - centre).T) * cells.mpp
    if np.count_nonzero(distance_um <= radius_um) < min(min_cells, len(cells)):
        radius_um = float(np.sort(distance_um)[min(min_cells, len(cells)) - 1])
    area = math.pi * (radius_um / 1000.0) ** 2
    return HotSpot(float(centre[0]), float(centre[1]), radius_um, area, distance_um <= radius_um)


def decide(
    cells: Cells,
    tumor_site: str = "breast",
    specimen: str = "resection",
    ki67_method: str = "global",
) -> rules.Decision:
    """Apply the marker's guideline table to the classed cells.

    ``ki67_method`` "hot-spot" counts the Ki67 index inside :func:`hot_spot` only; its
    centre, size and cell count are in the decision's figures (``hot_spot``).
    """
    if cells.marker == "ki67" and ki67_method not in KI67_METHODS:
        raise rules.RuleError(
            f"Unknown Ki67 method {ki67_method!r}; choose one of {', '.join(KI67_METHODS)}."
        )
    if cells.marker == "ki67" and ki67_method == "hot-spot":
        spot = hot_spot(cells)
        counts = cells.take(spot.inside).counts()
        decision = rules.ki67(int(counts[1:].sum()), int(spot.inside.sum()), "hot spot")
        return replace(decision, figures={**decision.figures, "hot_spot": spot.to_dict()})
    c = [int(v) for v in cells.counts()]
    total = len(cells)
    if cells.marker == "her2" and tumor_site == "gastric":
        clusters = largest_clusters(cells, reach_um=12.0) if specimen == "biopsy" else None
        return rules.her2_gastric(c[1], c[2], c[3], total, specimen, clusters)
    return decide_counts(cells.marker, c, total)


def decide_counts(marker: str, counts, total: int) -> rules.Decision:
    """Apply the marker's breast guideline to the cells per class (``counts[0..3]``)."""
    c = [int(v) for v in counts]
    if marker == "her2":
        return rules.her2_breast(c[1], c[2], c[3], total)
    if marker == "ki67":
        return rules.ki67(c[1] + c[2] + c[3], total)
    return rules.er_pr(marker, c[1], c[2], c[3], total)
