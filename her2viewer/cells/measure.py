"""From nuclei to cells and their measurements.

A cell is its nucleus grown by up to ``cell_expansion_um``, each pixel going to the nearest
nucleus (a Voronoi partition, as QuPath's cell expansion), giving cytoplasm and a membrane
ring of ``membrane_width_um`` at the cell's edge. Every per-cell figure is a ``bincount``
over the label image, so tens of thousands of cells cost a few passes over the pixels.

Membrane completeness is the fraction of the cell's circumference whose DAB passes the
threshold: the cell is cut into :data:`SECTORS` angular sectors around the nucleus' centre
and a sector counts as stained when its strongest DAB outside the nucleus (the membrane
along that ray) reaches the threshold.

Two touching cells share the membrane between them: a stained cell's membrane also lies
on the ray of its unstained neighbour. A stained sector that faces a neighbour therefore
goes to the neighbour alone when the neighbour's other sectors are clearly better stained
than the cell's and the neighbour's membrane is nearly complete, or the cell has no
staining elsewhere (:func:`_unshared`): an unstained cell beside a stained clone stays
unstained, two stained cells share their membrane.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import cv2
import numpy as np
from scipy import ndimage

from her2viewer.cells.detect import boundary_lengths

#: Angular sectors of the membrane ring for the completeness measure (10 degrees each).
SECTORS = 36
#: A shared membrane sector counts for a cell when the stained fraction of its other sectors
#: is at least the neighbour's (over the neighbour's other sectors) minus this margin.
SHARED_MARGIN = 0.25
#: ... and only a neighbour whose other sectors are stained at least this often claims it.
SHARED_CLAIM = 0.8
#: ... or, any neighbour, when the cell's own other sectors are stained less often than this.
SHARED_FLOOR = 0.05
#: Label above every cell label (labels are exact in float32 below 2**24).
_NO_CELL = np.float32(2**24)


@dataclass
class CellTable:
    """One row per cell; coordinates in level-0 pixels, sizes in um (or px without mpp).

    Attributes
    ----------
    x, y : numpy.ndarray
        Nucleus centroid.
    nucleus_area, nucleus_perimeter, circularity, cell_area : numpy.ndarray
        Shape of the nucleus (um^2, um, 4 pi A / P^2) and area of the whole cell (um^2).
    h_nucleus : numpy.ndarray
        Mean hematoxylin OD in the nucleus.
    dab_nucleus, dab_nucleus_max, dab_cytoplasm, dab_membrane, dab_membrane_max : numpy.ndarray
        DAB OD: mean (and max) in the nucleus, cytoplasm and membrane ring.
    membrane_completeness : numpy.ndarray
        Fraction of the ring's sectors whose DAB reaches the membrane threshold.
    dab_membrane_stained : numpy.ndarray
        Median over the stained sectors of their membrane DAB OD (the intensity of the
        staining that is there, not diluted by the unstained part of an incomplete
        membrane, nor raised by a stronger neighbour's share of it); 0 if none.
    """

    x: np.ndarray
    y: np.ndarray
    nucleus_area: np.ndarray
    nucleus_perimeter: np.ndarray
    circularity: np.ndarray
    cell_area: np.ndarray
    h_nucleus: np.ndarray
    dab_nucleus: np.ndarray
    dab_nucleus_max: np.ndarray
    dab_cytoplasm: np.ndarray
    dab_membrane: np.ndarray
    dab_membrane_max: np.ndarray
    membrane_completeness: np.ndarray
    dab_membrane_stained: np.ndarray

    def __len__(self) -> int:
        return int(self.x.size)

    @classmethod
    def empty(cls) -> CellTable:
        """A table with no cells."""
        return cls(**{f.name: np.zeros(0, np.float32) for f in fields(cls)})

    def take(self, index: np.ndarray) -> CellTable:
        """The rows selected by a boolean mask or an index array."""
        return CellTable(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    def shifted(self, dx: float, dy: float) -> CellTable:
        """The same cells with their centroids moved by ``(dx, dy)``."""
        table = self.take(slice(None))
        table.x, table.y = self.x + dx, self.y + dy
        return table

    @classmethod
    def concatenate(cls, tables: list[CellTable]) -> CellTable:
        """One table of the rows of several."""
        if not tables:
            return cls.empty()
        return cls(
            **{f.name: np.concatenate([getattr(t, f.name) for t in tables]) for f in fields(cls)}
        )

    def columns(self) -> dict[str, np.ndarray]:
        """The columns by name, in declaration order."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _ragged_take(xy: np.ndarray, offsets: np.ndarray, rows: np.ndarray):
    """Rows ``rows`` of a ragged array (points ``xy`` split at ``offsets``)."""
    lengths = np.diff(offsets)[rows]
    starts = offsets[:-1][rows]
    new_offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    points = np.repeat(starts - new_offsets[:-1], lengths) + np.arange(new_offsets[-1])
    return xy[points], new_offsets


def _outline(mask: np.ndarray) -> np.ndarray:
    """The outer contour (x, y pixel centres) of the largest part of a small bool mask."""
    contours, _ = cv2.findContours(
        mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
    )
    if not contours:
        return np.zeros((0, 2), np.float32)
    return max(contours, key=cv2.contourArea).reshape(-1, 2).astype(np.float32)


@dataclass
class CellOutlines:
    """Nucleus and cell outlines of a table's rows, as ragged point arrays.

    Row ``i``'s nucleus is ``nucleus_xy[nucleus_offsets[i]:nucleus_offsets[i + 1]]`` (and
    likewise its cell), in the same pixel frame as the table's ``x``/``y``.
    """

    nucleus_xy: np.ndarray
    nucleus_offsets: np.ndarray
    cell_xy: np.ndarray
    cell_offsets: np.ndarray

    def __len__(self) -> int:
        return int(self.nucleus_offsets.size - 1)

    @classmethod
    def empty(cls) -> CellOutlines:
        """Outlines of no cells."""
        none = np.zeros((0, 2), np.float32)
        return cls(none, np.zeros(1, np.int64), none, np.zeros(1, np.int64))

    @classmethod
    def of_labels(
        cls, nuclei: np.ndarray, cells: np.ndarray, labels: np.ndarray, origin=(0, 0)
    ) -> CellOutlines:
        """Trace the outlines of ``labels`` in a field's nucleus and cell label images.

        ``origin`` (the field's top-left corner) is added to every point.
        """
        shapes = []
        for image in (nuclei, cells):
            boxes = ndimage.find_objects(image)
            rings = []
            for label in labels:
                box = boxes[label - 1] if label - 1 < len(boxes) else None
                if box is None:
                    rings.append(np.zeros((0, 2), np.float32))
                    continue
                ring = _outline(image[box] == label)
                rings.append(ring + np.array([box[1].start, box[0].start], np.float32) + origin)
            lengths = [len(r) for r in rings]
            offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
            shapes += [np.concatenate(rings) if rings else np.zeros((0, 2), np.float32), offsets]
        return cls(*shapes)

    @classmethod
    def concatenate(cls, parts: list[CellOutlines]) -> CellOutlines:
        """One set of outlines of the rows of several."""
        if not parts:
            return cls.empty()
        out = []
        for xy, offsets in (("nucleus_xy", "nucleus_offsets"), ("cell_xy", "cell_offsets")):
            starts = np.cumsum([0] + [getattr(p, xy).shape[0] for p in parts[:-1]])
            out.append(np.concatenate([getattr(p, xy) for p in parts]))
            tails = [getattr(p, offsets)[1:] + s for p, s in zip(parts, starts, strict=True)]
            out.append(np.concatenate([[0], *tails]).astype(np.int64))
        return cls(*out)

    def take(self, index) -> CellOutlines:
        """The rows selected by a boolean mask or an index array."""
        rows = np.arange(len(self))[index]
        nucleus_xy, nucleus_offsets = _ragged_take(self.nucleus_xy, self.nucleus_offsets, rows)
        cell_xy, cell_offsets = _ragged_take(self.cell_xy, self.cell_offsets, rows)
        return CellOutlines(nucleus_xy, nucleus_offsets, cell_xy, cell_offsets)

    def scaled(self, factor: float) -> CellOutlines:
        """The outlines with every coordinate multiplied by ``factor`` (to level 0)."""
        return CellOutlines(
            self.nucleus_xy * factor, self.nucleus_offsets, self.cell_xy * factor, self.cell_offsets
        )

    def nucleus(self, row: int) -> np.ndarray:
        """The nucleus outline of one row, ``(k, 2)``."""
        return self.nucleus_xy[self.nucleus_offsets[row] : self.nucleus_offsets[row + 1]]

    def cell(self, row: int) -> np.ndarray:
        """The cell outline of one row, ``(k, 2)``."""
        return self.cell_xy[self.cell_offsets[row] : self.cell_offsets[row + 1]]


def expand_cells(nuclei: np.ndarray, distance_px: float) -> np.ndarray:
    """Grow each nucleus by up to ``distance_px``, every pixel going to the nearest nucleus.

    Uses OpenCV's labelled distance transform (a discrete Voronoi diagram of the nucleus
    pixels), so the cost does not depend on the number of cells.
    """
    if distance_px <= 0 or nuclei.max() == 0:
        return nuclei.copy()
    background = (nuclei == 0).astype(np.uint8)
    distance, nearest = cv2.distanceTransformWithLabels(
        background, cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_PIXEL
    )
    # DIST_LABEL_PIXEL numbers the zero pixels 1..K in raster order
    owners = np.concatenate([[0], nuclei[nuclei > 0]]).astype(np.int32)
    cells = owners[nearest]
    cells[distance > distance_px] = 0
    return cells


def membrane_ring(cells: np.ndarray, width_px: float) -> np.ndarray:
    """Pixels of each cell within ``width_px`` of its outline (a neighbour or the outside)."""
    side = max(3, int(round(2 * width_px + 1)) | 1)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (side, side))
    as_float = cells.astype(np.float32)  # exact for labels below 2**24
    low = cv2.erode(as_float, kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0)
    high = cv2.dilate(as_float, kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0)
    return (cells > 0) & ((low != as_float) | (high != as_float))


def _zone_means(cells: np.ndarray, zones: np.ndarray, *values: np.ndarray) -> list[np.ndarray]:
    """Mean of each of ``values`` per zone and cell, ``(3, n)`` each: one pass per image.

    ``zones`` is 0 outside every cell, then 1, 2, 3 (nucleus, cytoplasm, membrane ring);
    a cell with no pixel in a zone gets 0 there.
    """
    n = int(cells.max())
    key = (zones.astype(np.int64) * (n + 1) + cells).ravel()
    count = np.maximum(np.bincount(key, minlength=4 * (n + 1)), 1)
    return [
        (np.bincount(key, weights=v.ravel(), minlength=4 * (n + 1)) / count)
        .reshape(4, n + 1)[1:, 1:]
        .astype(np.float32)
        for v in values
    ]


def _maxima(labels: np.ndarray, values: np.ndarray, where: np.ndarray, n: int) -> np.ndarray:
    out = np.zeros(n + 1, np.float32)
    np.maximum.at(out, labels[where], values[where].astype(np.float32))
    return out[1:]


def _neighbours(cells: np.ndarray) -> np.ndarray:
    """At each cell pixel touching another cell, that cell's label; 0 elsewhere."""
    kernel = np.ones((3, 3), np.uint8)
    labels = cells.astype(np.float32)
    high = cv2.dilate(labels, kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0)
    low = cv2.erode(
        np.where(cells > 0, labels, _NO_CELL), kernel, borderType=cv2.BORDER_CONSTANT,
        borderValue=float(_NO_CELL),
    )  # fmt: skip
    other = np.where(high != labels, high, np.where(low < _NO_CELL, low, labels))
    return np.where((cells > 0) & (other != labels), other, 0).astype(np.int64)


def _other_sides(stained, present, facing) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per (cell, neighbour) pair: the cell's stained fraction over its other shared sectors.

    Only sectors facing some other neighbour count (a free edge, where the expansion may
    stop short of the membrane, is no evidence either way); a cell that faces no other
    neighbour gets its stained fraction over every sector. Returns the pairs' cell and
    neighbour indices (0-based) and that fraction.
    """
    n = stained.shape[0]
    shared = present & (facing > 0)
    rows, cols = np.nonzero(shared)
    neighbour = facing[rows, cols] - 1
    keys, inverse = np.unique(rows * n + neighbour, return_inverse=True)
    facing_present = np.bincount(inverse, minlength=keys.size)
    facing_stained = np.bincount(inverse, weights=stained[rows, cols], minlength=keys.size)
    cell = keys // n
    rest = shared.sum(axis=1)[cell] - facing_present
    rest_stained = (stained & shared).sum(axis=1)[cell] - facing_stained
    overall = stained.sum(axis=1) / np.maximum(present.sum(axis=1), 1)
    fraction = np.where(rest > 0, rest_stained / np.maximum(rest, 1), overall[cell])
    return cell, keys % n, fraction


def _unshared(stained: np.ndarray, present: np.ndarray, facing: np.ndarray) -> np.ndarray:
    """The stained sectors that belong to the cell, not only to the neighbour they face.

    A stained sector facing neighbour ``m`` goes to ``m`` alone when ``m``'s other shared
    sectors are stained more often than the cell's by over :data:`SHARED_MARGIN`, and
    either ``m``'s membrane is nearly complete (:data:`SHARED_CLAIM`) or the cell's other
    sectors are all but unstained (:data:`SHARED_FLOOR`). Two stained cells keep their
    shared membrane; an unstained cell beside a stained one gives it up, and a faint
    incomplete cell keeps its own arc beside another faint one.
    """
    n = stained.shape[0]
    cell, neighbour, fraction = _other_sides(stained, present, facing)
    if cell.size == 0:
        return stained
    keys = cell * n + neighbour
    back = neighbour * n + cell
    found = np.minimum(np.searchsorted(keys, back), keys.size - 1)
    overall = stained.sum(axis=1) / np.maximum(present.sum(axis=1), 1)
    theirs = np.where(keys[found] == back, fraction[found], overall[neighbour])
    claimed = (theirs >= SHARED_CLAIM) | (fraction < SHARED_FLOOR)
    keep_pair = (fraction >= theirs - SHARED_MARGIN) | ~claimed
    rows, cols = np.nonzero(stained & (facing > 0))
    pair = np.searchsorted(keys, rows * n + facing[rows, cols] - 1)
    kept = stained.copy()
    kept[rows, cols] = keep_pair[pair]
    return kept


def _completeness(
    cells: np.ndarray, outside: np.ndarray, dab: np.ndarray, cx: np.ndarray, cy: np.ndarray,
    threshold: float,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Stained fraction of each cell's circumference and the intensity of its stained part.

    Along each of :data:`SECTORS` rays from the nucleus centre the membrane is the
    strongest DAB between the nucleus and the cell's edge (``outside``: the cell without
    its nucleus), so the measure does not depend on where exactly the expansion put the
    cell's outline; a sector is stained when that maximum reaches ``threshold``.
    """
    n = cx.size
    ys, xs = np.nonzero(outside)
    lab = cells[ys, xs]
    angle = np.arctan2(ys - cy[lab - 1], xs - cx[lab - 1])
    sector = ((angle + np.pi) / (2 * np.pi) * SECTORS).astype(np.int64) % SECTORS
    key = (lab.astype(np.int64) - 1) * SECTORS + sector
    peak = np.full(n * SECTORS, -np.inf, np.float32)
    np.maximum.at(peak, key, dab[ys, xs].astype(np.float32))
    peak = peak.reshape(n, SECTORS)
    present = np.isfinite(peak)
    facing = np.zeros(n * SECTORS, np.int64)
    np.maximum.at(facing, key, _neighbours(cells)[ys, xs])
    stained = _unshared(present & (peak >= threshold), present, facing.reshape(n, SECTORS))
    n_stained = stained.sum(axis=1)
    completeness = n_stained / np.maximum(present.sum(axis=1), 1)
    ranked = np.sort(np.where(stained, peak, np.inf), axis=1)  # stained peaks first
    rows = np.arange(n)
    low, high = np.maximum(n_stained - 1, 0) // 2, n_stained // 2
    median = (ranked[rows, low] + ranked[rows, np.minimum(high, SECTORS - 1)]) / 2
    intensity = np.where(n_stained > 0, median, 0.0)
    return completeness.astype(np.float32), intensity.astype(np.float32)


def measure_cells(
    nuclei: np.ndarray,
    hematoxylin: np.ndarray,
    dab: np.ndarray,
    mpp: float,
    expansion_um: float,
    membrane_um: float,
    membrane_threshold: float,
) -> tuple[CellTable, np.ndarray]:
    """Grow the nuclei into cells and measure every cell.

    Parameters
    ----------
    nuclei : numpy.ndarray
        int32 labels 1..N (0 background).
    hematoxylin, dab : numpy.ndarray
        Stain optical densities of the field.
    mpp : float
        Micrometres per pixel.
    expansion_um, membrane_um : float
        Cell expansion and membrane ring width.
    membrane_threshold : float
        DAB OD at which a membrane sector counts as stained.

    Returns
    -------
    (CellTable, numpy.ndarray)
        The measurements (coordinates in the field's pixels) and the cell label image.
    """
    n = int(nuclei.max())
    if n == 0:
        return CellTable.empty(), np.zeros_like(nuclei)
    cells = expand_cells(nuclei, expansion_um / mpp)
    ring = membrane_ring(cells, membrane_um / mpp) & (nuclei == 0)
    in_nucleus = nuclei > 0
    zones = np.where(in_nucleus, 1, np.where(ring, 3, 2)).astype(np.uint8) * (cells > 0)
    h_means, dab_means = _zone_means(cells, zones, hematoxylin, dab)
    ys, xs = np.nonzero(in_nucleus)
    lab = nuclei[ys, xs]
    area_px = np.bincount(lab, minlength=n + 1)[1:].astype(np.float64)
    cx = np.bincount(lab, weights=xs, minlength=n + 1)[1:] / area_px
    cy = np.bincount(lab, weights=ys, minlength=n + 1)[1:] / area_px
    perimeter_px = boundary_lengths(nuclei)[1:]
    outside = (cells > 0) & ~in_nucleus
    completeness, stained_dab = _completeness(cells, outside, dab, cx, cy, membrane_threshold)
    table = CellTable(
        x=cx.astype(np.float32),
        y=cy.astype(np.float32),
        nucleus_area=(area_px * mpp * mpp).astype(np.float32),
        nucleus_perimeter=(perimeter_px * mpp).astype(np.float32),
        circularity=np.clip(4 * np.pi * area_px / np.maximum(perimeter_px, 1e-9) ** 2, 0, 1).astype(
            np.float32
        ),
        cell_area=(np.bincount(cells.ravel(), minlength=n + 1)[1:] * mpp * mpp).astype(np.float32),
        h_nucleus=h_means[0],
        dab_nucleus=dab_means[0],
        dab_nucleus_max=_maxima(nuclei, dab, in_nucleus, n),
        dab_cytoplasm=dab_means[1],
        dab_membrane=dab_means[2],
        dab_membrane_max=_maxima(cells, dab, ring, n),
        membrane_completeness=completeness,
        dab_membrane_stained=stained_dab,
    )
    return table, cells
