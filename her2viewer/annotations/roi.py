"""The region an analysis is restricted to: chosen annotations minus the Ignore* ones.

A pathologist scores the invasive tumor, not the whole slide: :func:`region_from_features`
joins the area annotations (polygons, rectangles, ellipses) of the chosen classes (or ids)
into one :class:`Region` and subtracts every annotation of an ``Ignore*`` class; lines and
points have no area and are left out (the description says so). Analyses test patch
centres with :meth:`Region.contains_patches`, rasterise it with :meth:`Region.mask`, and
put :meth:`Region.summary` (which region, its area) into their results. Coordinates are
level-0 pixels of the slide the annotations were drawn on.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import shapely
from shapely.geometry import Polygon
from shapely.geometry.base import BaseGeometry

from her2viewer.annotations.formats import read_annotations
from her2viewer.errors import Her2ViewerError
from her2viewer.geometry.shapes import apply_matrix, measure
from her2viewer.slide import SlideInfo

#: Geometry types that have an area (everything else is a line or points).
AREA_TYPES = ("Polygon", "MultiPolygon")
#: Summary keys of a region (the description; the area in um^2/mm^2 or px^2).
SUMMARY_PREFIX = "region"


class RoiError(Her2ViewerError):
    """A region cannot be made from the annotations given (no such class, no area, off-slide)."""


def is_ignore_class(class_name: str | None) -> bool:
    """Whether ``class_name`` is one of QuPath's exclusion classes (``Ignore*``)."""
    return bool(class_name) and class_name.lower().startswith("ignore")


@dataclass(frozen=True)
class Region:
    """A region of interest in level-0 pixels.

    Attributes
    ----------
    geometry : shapely geometry
        Polygon or MultiPolygon: the union of the chosen annotations minus Ignore* ones.
    description : str
        Which annotations, in words (e.g. ``"3 Tumor annotations (minus 1 Ignore*) from
        tumor.geojson"``).
    ids : tuple of str
        The ids of the annotations the region was made of.
    """

    geometry: BaseGeometry
    description: str
    ids: tuple[str, ...] = ()

    def area(self, mpp: float | None) -> dict:
        """``area_um2`` and ``area_mm2`` when ``mpp`` is known, else ``area_px2``."""
        return {k: v for k, v in measure(self.geometry, mpp).items() if k.startswith("area")}

    def summary(self, mpp: float | None) -> dict:
        """What a result says of its region: ``region`` (the description) and its area."""
        area = {f"{SUMMARY_PREFIX}_{k}": round(v, 6) for k, v in self.area(mpp).items()}
        return {SUMMARY_PREFIX: self.description, **area}

    @property
    def key(self) -> str:
        """A short digest of the geometry, for cache keys."""
        return hashlib.sha256(shapely.to_wkb(self.geometry)).hexdigest()[:16]

    def contains(self, x, y) -> np.ndarray:
        """Whether each point ``(x, y)`` (level-0, array-like) lies inside the region."""
        shapely.prepare(self.geometry)
        return shapely.contains_xy(self.geometry, np.asarray(x, float), np.asarray(y, float))

    def contains_patches(self, coords: np.ndarray, size0: float) -> np.ndarray:
        """Whether each square patch's centre (top-left ``coords``, side ``size0``) is inside."""
        centres = np.asarray(coords, float).reshape(-1, 2) + size0 / 2
        return self.contains(centres[:, 0], centres[:, 1])

    def intersects_boxes(self, boxes: np.ndarray) -> np.ndarray:
        """Whether each box ``(x0, y0, x1, y1)`` (level-0 rows) touches the region."""
        boxes = np.asarray(boxes, float).reshape(-1, 4)
        return shapely.intersects(self.geometry, shapely.box(*boxes.T))

    def mask(
        self, shape: tuple[int, int], downsample: float, origin: tuple[float, float] = (0, 0)
    ) -> np.ndarray:
        """The region as a bool raster: a pixel is in when its centre is.

        Parameters
        ----------
        shape : (int, int)
            ``(rows, cols)`` of the mask.
        downsample : float
            Level-0 pixels per mask pixel.
        origin : (float, float)
            Level-0 ``(x, y)`` of the mask's top-left corner.

        Returns
        -------
        numpy.ndarray
            ``shape`` bool.
        """
        rows, cols = shape
        x0, y0 = origin
        window = shapely.box(x0, y0, x0 + cols * downsample, y0 + rows * downsample)
        if not self.geometry.intersects(window):
            return np.zeros(shape, bool)
        if self.geometry.contains(window):
            return np.ones(shape, bool)
        xs = x0 + (np.arange(cols) + 0.5) * downsample
        ys = y0 + (np.arange(rows) + 0.5) * downsample
        return self.contains(*np.meshgrid(xs, ys))

    def transformed(self, matrix: np.ndarray, how: str) -> Region:
        """The region mapped by a 3x3 level-0 matrix (e.g. H&E -> IHC), ``how`` added to its
        description."""
        return Region(apply_matrix(self.geometry, matrix), f"{self.description}, {how}", self.ids)

    def on_slide(self, info: SlideInfo) -> Region:
        """The part of the region on the slide.

        Raises
        ------
        RoiError
            When the region lies outside the slide.
        """
        slide = shapely.box(0, 0, info.width, info.height)
        inside = _polygonal(shapely.intersection(self.geometry, slide))
        if inside.is_empty:
            raise RoiError(
                f"The region ({self.description}) lies outside {Path(info.path).name} "
                f"({info.width} x {info.height} px); was it drawn on another slide?"
            )
        return self if inside.equals(self.geometry) else Region(inside, self.description, self.ids)


def region_summary(region: Region | None, mpp: float | None) -> dict:
    """:meth:`Region.summary`, or ``{"region": None}`` for a whole-slide result."""
    return region.summary(mpp) if region is not None else {SUMMARY_PREFIX: None}


def summary_region(summary: dict) -> dict:
    """The region entries of a result's summary (to rebuild a result that was saved)."""
    return {k: v for k, v in summary.items() if k.split("_")[0] == SUMMARY_PREFIX}


def region_text(summary: dict) -> str:
    """A result's region in words: which annotations and the area, or ``whole slide``."""
    if not summary.get(SUMMARY_PREFIX):
        return "whole slide"
    if "region_area_mm2" in summary:
        area = f"{summary['region_area_mm2']:.3g} mm²"
    else:
        area = f"{summary.get('region_area_px2', 0):.0f} px² (the slide has no pixel size)"
    return f"{summary[SUMMARY_PREFIX]}, {area}"


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def _class_label(classes: Sequence[str] | None) -> str:
    return "/".join(classes) + " " if classes else ""


def _chosen(annotations: list, classes, ids, source: str) -> list:
    """The non-Ignore* annotations of ``classes`` / ``ids`` (every one by default)."""
    chosen = [f for f in annotations if not is_ignore_class(f.class_name)]
    if ids is not None:
        wanted = set(ids)
        chosen = [f for f in chosen if f.id in wanted]
    if classes:
        wanted = {name.lower() for name in classes}
        chosen = [f for f in chosen if (f.class_name or "").lower() in wanted]
    if not chosen:
        found = sorted({f.class_name or "unclassified" for f in annotations})
        what = f"of class {', '.join(classes)}" if classes else "to use as a region"
        has = f"the classes there are {', '.join(found)}" if found else "there are none"
        raise RoiError(f"No annotation {what} in {source or 'the annotations'}; {has}.")
    return chosen


def region_from_features(
    features: Sequence,
    classes: Sequence[str] | None = None,
    ids: Sequence[str] | None = None,
    source: str = "",
) -> Region:
    """Join the chosen area annotations into a :class:`Region`, minus every Ignore* one.

    Parameters
    ----------
    features : sequence
        :class:`~her2viewer.geometry.geojson.Feature` or
        :class:`~her2viewer.annotations.model.Annotation` objects (``geometry``,
        ``class_name``, ``id``); detections and cells are not regions.
    classes : sequence of str, optional
        Class names to use (any case); every class but Ignore* by default.
    ids : sequence of str, optional
        Only these annotations (a selection).
    source : str
        Where they come from (a file name), for the description and errors.

    Raises
    ------
    RoiError
        One sentence when no annotation is chosen, none has an area, or nothing is left
        once the Ignore* ones are subtracted.
    """
    annotations = [f for f in features if getattr(f, "object_type", "annotation") == "annotation"]
    chosen = _chosen(annotations, classes, ids, source)
    areas = [f for f in chosen if f.geometry.geom_type in AREA_TYPES and f.geometry.area > 0]
    skipped = len(chosen) - len(areas)
    where = source or "the annotations"
    if not areas:
        raise RoiError(
            f"The {_class_label(classes)}annotations of {where} are lines or points; "
            "a region needs an area (polygon, rectangle, ellipse)."
        )
    ignore = [
        f
        for f in annotations
        if is_ignore_class(f.class_name) and f.geometry.geom_type in AREA_TYPES
    ]
    geometry = shapely.union_all([f.geometry for f in areas])
    if ignore:
        geometry = shapely.difference(geometry, shapely.union_all([f.geometry for f in ignore]))
    geometry = _polygonal(geometry)
    text = _plural(len(areas), f"{_class_label(classes)}annotation")
    text += f" (minus {_plural(len(ignore), 'Ignore*')})" if ignore else ""
    text += f" from {Path(source).name}" if source else ""
    text += f"; {_plural(skipped, 'line/point annotation')} left out" if skipped else ""
    if geometry.is_empty:
        raise RoiError(f"Nothing is left of the region ({text}) once Ignore* is subtracted.")
    return Region(geometry, text, tuple(f.id for f in areas))


def _polygonal(geometry: BaseGeometry) -> BaseGeometry:
    """The polygons of a union/difference (dropping the slivers' lines and points)."""
    parts = [p for p in shapely.get_parts(geometry) if p.geom_type in AREA_TYPES]
    return shapely.union_all(parts) if parts else Polygon()


def load_region(path: str | Path, classes: Sequence[str] | None = None) -> Region:
    """Read an annotation file (GeoJSON, ASAP or ImageScope XML) and make its :class:`Region`.

    Raises
    ------
    RoiError
        One sentence when the file has no annotation of ``classes`` or none with an area.
    Her2ViewerError
        When the file cannot be read (the format reader's sentence).
    """
    return region_from_features(read_annotations(path), classes, source=str(path))
