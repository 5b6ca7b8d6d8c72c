"""The annotation document: immutable annotations, classes, hierarchy and measurements.

Coordinates are level-0 pixels. An :class:`Annotation` never changes: an edit
replaces it by a new one with the same ``id`` (that is what makes undo trivial).
The :class:`AnnotationDocument` holds them in drawing order, tells subscribers
about every change (the view, the panels, the store) and is changed only
through :mod:`her2viewer.annotations.commands`, which record each edit for undo.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import uuid
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import shapely
from shapely.geometry import MultiPoint
from shapely.geometry.base import BaseGeometry

from her2viewer.errors import Her2ViewerError
from her2viewer.geometry.geojson import Feature
from her2viewer.geometry.shapes import measure, repair


class AnnotationError(Her2ViewerError):
    """An annotation or a class cannot be created or changed as asked."""


@dataclass(frozen=True)
class PathClass:
    """A classification: a name and its display colour (RGB, 0-255)."""

    name: str
    color: tuple[int, int, int]


#: QuPath's default classes and colours (QuPath 0.4 ``PathClass``/``StandardPathClasses``).
DEFAULT_CLASSES: tuple[PathClass, ...] = (
    PathClass("Tumor", (200, 0, 0)),
    PathClass("Stroma", (150, 200, 150)),
    PathClass("Immune cells", (160, 90, 160)),
    PathClass("Necrosis", (50, 50, 50)),
    PathClass("Other", (255, 200, 0)),
    PathClass("Region*", (0, 0, 180)),
    PathClass("Ignore*", (180, 180, 180)),
    PathClass("Positive", (200, 50, 50)),
    PathClass("Negative", (90, 90, 180)),
)

#: QuPath's colour for an annotation without a class.
UNCLASSIFIED_COLOR = (255, 0, 0)

#: The label of annotations without a class in summaries and counts.
UNCLASSIFIED = "Unclassified"

KINDS = ("polygon", "rectangle", "ellipse", "line", "polyline", "points")

#: Where this application keeps its own fields inside a GeoJSON feature's properties.
PROPERTY_KEY = "her2viewer"

_POLYGONAL = ("Polygon", "MultiPolygon")


@dataclass(frozen=True)
class Annotation:
    """One shape a pathologist drew, with its class and name; immutable.

    The geometry is repaired (made valid) on construction. ``parent_id`` is the
    parent recorded in a file; :meth:`AnnotationDocument.hierarchy` computes the
    live one from the geometry.
    """

    geometry: BaseGeometry
    kind: str = "polygon"
    class_name: str | None = None
    name: str = ""
    locked: bool = False
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    parent_id: str | None = None
    transferred_from: str | None = None
    results: dict = field(default_factory=dict)
    copy_link: dict | None = None  # how a copy follows its pair's registration (gui pair.py)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise AnnotationError(
                f"annotation kind {self.kind!r} is unknown (known: {', '.join(KINDS)})."
            )
        geometry = repair(self.geometry)
        if geometry.is_empty:
            raise AnnotationError(f"annotation {self.name or self.id} has an empty geometry.")
        object.__setattr__(self, "geometry", geometry)

    def __hash__(self) -> int:  # equal annotations share their id; ``results`` is a dict
        return hash(self.id)

    def replace(self, **changes) -> Annotation:
        """Return a copy with ``changes`` applied (same ``id`` unless one is given)."""
        return dataclasses.replace(self, **changes)

    @property
    def is_area(self) -> bool:
        """True for polygons, rectangles and ellipses (annotations with an area)."""
        return self.geometry.geom_type in _POLYGONAL


@dataclass(frozen=True)
class DocumentChange:
    """What changed in a document: ``kind`` is added, removed, changed, classes or mpp."""

    kind: str
    ids: tuple[str, ...] = ()


def class_color(name: str) -> tuple[int, int, int]:
    """Return a stable colour for a class that is not in the class list (from its name)."""
    packed = zlib.crc32(name.encode("utf-8"))
    return ((packed >> 16) & 255, (packed >> 8) & 255, packed & 255)


def _kind_of(geometry: BaseGeometry) -> str:
    """Return the annotation kind a file's geometry implies (QuPath does not store one)."""
    if geometry.geom_type in ("Point", "MultiPoint"):
        return "points"
    if geometry.geom_type == "LineString" and len(geometry.coords) == 2:
        return "line"
    if geometry.geom_type in ("LineString", "MultiLineString", "LinearRing"):
        return "polyline"
    return "polygon"


def annotation_from_feature(feature: Feature) -> Annotation:
    """Return the annotation of one GeoJSON feature (QuPath's or this application's)."""
    extra = feature.properties.get(PROPERTY_KEY)
    extra = extra if isinstance(extra, dict) else {}
    geometry = feature.geometry
    if geometry.geom_type == "Point":
        geometry = MultiPoint([geometry])
    kind = extra.get("kind") if extra.get("kind") in KINDS else _kind_of(geometry)
    results = extra.get("results")
    return Annotation(
        geometry=geometry,
        kind=kind,
        class_name=feature.class_name,
        name=feature.name or "",
        locked=feature.locked,
        id=feature.id,
        parent_id=extra.get("parent_id"),
        transferred_from=extra.get("transferred_from"),
        results=dict(results) if isinstance(results, dict) else {},
        copy_link=extra["copy_link"] if isinstance(extra.get("copy_link"), dict) else None,
    )


def _known_mpp(value: float | None) -> float | None:
    """Return ``value`` as a pixel size in µm, or None for zero, NaN, infinity or None."""
    known = value is not None and math.isfinite(value) and value > 0
    return float(value) if known else None


class AnnotationDocument:
    """The annotations of one slide, in drawing order, with the class list.

    Reading is free; changes go through :mod:`~her2viewer.annotations.commands`
    (the ``_insert``/``_remove``/``_put``/``_set_classes`` methods), each of which
    notifies every subscriber with one :class:`DocumentChange` while holding
    :attr:`lock`, so a subscriber sees the document exactly as the change left it.
    Setting :attr:`mpp` notifies the same way (kind ``"mpp"``) but is no command:
    the pixel size is the slide's (the Display dock sets it), not an annotation edit
    to undo, and an annotation store does not save it.

    Parameters
    ----------
    annotations : iterable of Annotation
        The initial annotations, in drawing order.
    classes : sequence of PathClass
        The class list (QuPath's defaults unless given).
    mpp : float or None
        Micrometres per level-0 pixel of the slide; None when unknown (measures in pixels).
    """

    def __init__(
        self,
        annotations: Iterable[Annotation] = (),
        classes: Sequence[PathClass] = DEFAULT_CLASSES,
        mpp: float | None = None,
    ) -> None:
        self.classes: list[PathClass] = list(classes)
        self._mpp = _known_mpp(mpp)
        self.lock = threading.RLock()
        self._by_id: dict[str, Annotation] = {}
        self._order: list[str] = []
        self._subscribers: list[Callable[[DocumentChange], None]] = []
        self._hierarchy: dict[str, str | None] | None = None
        self._point_sets: list[Annotation] | None = None
        self._point_trees: dict[str, tuple[BaseGeometry, shapely.STRtree]] = {}
        for ann in annotations:
            self._check_new_id(ann.id)
            self._by_id[ann.id] = ann
            self._order.append(ann.id)

    @property
    def mpp(self) -> float | None:
        """Micrometres per level-0 pixel, None when the slide does not say (measures in px)."""
        return self._mpp

    @mpp.setter
    def mpp(self, value: float | None) -> None:
        """Set the pixel size (zero, NaN or None: unknown); a new one notifies subscribers."""
        with self.lock:
            value = _known_mpp(value)
            if value != self._mpp:
                self._mpp = value
                self._notify("mpp", ())

    # reading ----------------------------------------------------------------------------------

    def __iter__(self) -> Iterator[Annotation]:
        with self.lock:
            return iter([self._by_id[i] for i in self._order])

    def __len__(self) -> int:
        return len(self._order)

    def __contains__(self, ann_id: object) -> bool:
        return ann_id in self._by_id

    def get(self, ann_id: str) -> Annotation:
        """Return the annotation with ``ann_id`` (KeyError when there is none)."""
        return self._by_id[ann_id]

    def index(self, ann_id: str) -> int:
        """Return the drawing-order position of ``ann_id``."""
        return self._order.index(ann_id)

    def path_class(self, name: str | None) -> PathClass | None:
        """Return the class called ``name`` in the class list, or None."""
        return next((c for c in self.classes if c.name == name), None)

    def class_color_of(self, name: str | None) -> tuple[int, int, int]:
        """Return the colour of class ``name``: listed, derived from the name, or unclassified."""
        if name is None:
            return UNCLASSIFIED_COLOR
        known = self.path_class(name)
        return known.color if known is not None else class_color(name)

    def color_of(self, ann: Annotation) -> tuple[int, int, int]:
        """Return the display colour of ``ann`` (its class colour)."""
        return self.class_color_of(ann.class_name)

    def subscribe(self, callback: Callable[[DocumentChange], None]) -> None:
        """Call ``callback(change)`` after every change (under :attr:`lock`)."""
        self._subscribers.append(callback)

    def unsubscribe(self, callback: Callable[[DocumentChange], None]) -> None:
        """Stop calling ``callback``."""
        self._subscribers.remove(callback)

    # low-level mutations (commands only) -------------------------------------------------------

    def _check_new_id(self, ann_id: str) -> None:
        """Refuse a second annotation with the same id."""
        if ann_id in self._by_id:
            raise AnnotationError(f"an annotation with id {ann_id} is already in the document.")

    def _notify(self, kind: str, ids: Iterable[str]) -> None:
        """Forget cached derived data and tell every subscriber about one change."""
        self._hierarchy = self._point_sets = None
        change = DocumentChange(kind, tuple(ids))
        if kind == "removed":
            for ann_id in change.ids:
                self._point_trees.pop(ann_id, None)
        for callback in list(self._subscribers):
            callback(change)

    def _insert(self, anns: Sequence[Annotation], index: int | Sequence[int] | None = None) -> None:
        """Insert ``anns`` at ``index``: one position for the block, one per annotation, or the end.

        With one position per annotation, each is its final position (as
        :meth:`_remove` returned them), so a removal is undone exactly.
        """
        anns = list(anns)
        with self.lock:
            for ann in anns:
                self._check_new_id(ann.id)
            if index is None:
                positions = range(len(self._order), len(self._order) + len(anns))
            elif isinstance(index, int):
                positions = range(index, index + len(anns))
            else:
                positions = index
            for position, ann in sorted(zip(positions, anns, strict=True), key=lambda p: p[0]):
                self._order.insert(position, ann.id)
                self._by_id[ann.id] = ann
            self._notify("added", (a.id for a in anns))

    def _remove(self, ids: Iterable[str]) -> list[tuple[int, Annotation]]:
        """Remove the annotations ``ids`` and return ``(position, annotation)`` pairs, in order."""
        with self.lock:
            wanted = set(ids)
            removed = [(i, self._by_id[a]) for i, a in enumerate(self._order) if a in wanted]
            if len(removed) != len(wanted):
                missing = wanted - {a.id for _, a in removed}
                raise KeyError(f"no annotation {sorted(missing)[0]} in the document")
            self._order = [a for a in self._order if a not in wanted]
            for _, ann in removed:
                del self._by_id[ann.id]
            self._notify("removed", (a.id for _, a in removed))
            return removed

    def _put(self, *anns: Annotation) -> None:
        """Replace annotations by new versions with the same ids (in place)."""
        with self.lock:
            for ann in anns:
                if ann.id not in self._by_id:
                    raise KeyError(f"no annotation {ann.id} in the document")
            for ann in anns:
                self._by_id[ann.id] = ann
            self._notify("changed", (a.id for a in anns))

    def _set_classes(self, classes: Sequence[PathClass]) -> None:
        """Replace the class list."""
        with self.lock:
            self.classes = list(classes)
            self._notify("classes", ())

    # conversions ------------------------------------------------------------------------------

    def to_feature(self, ann: Annotation) -> Feature:
        """Return ``ann`` as a QuPath GeoJSON feature (its class colour included)."""
        extra: dict = {"kind": ann.kind}
        for key in ("parent_id", "transferred_from", "copy_link"):
            if getattr(ann, key) is not None:
                extra[key] = getattr(ann, key)
        if ann.results:
            extra["results"] = ann.results
        return Feature(
            geometry=ann.geometry,
            class_name=ann.class_name,
            color=None if ann.class_name is None else self.color_of(ann),
            name=ann.name or None,
            locked=ann.locked,
            id=ann.id,
            properties={PROPERTY_KEY: extra},
        )

    def to_features(self) -> list[Feature]:
        """Return every annotation as a feature, in drawing order, parents recorded."""
        with self.lock:
            parents = self.hierarchy()
            return [self.to_feature(a.replace(parent_id=parents[a.id])) for a in self]

    @classmethod
    def from_features(
        cls,
        features: Iterable[Feature],
        mpp: float | None = None,
        classes: Sequence[PathClass] = DEFAULT_CLASSES,
    ) -> AnnotationDocument:
        """Return a document of the annotation features (detections and cells are not annotations).

        A class a feature names that is not in ``classes`` is added with the
        feature's colour, so a QuPath file keeps its colours. A repeated id is
        replaced by a new one.
        """
        annotations: list[Annotation] = []
        seen: set[str] = set()
        class_list = list(classes)
        for feature in features:
            if feature.object_type != "annotation":
                continue
            ann = annotation_from_feature(feature)
            if ann.id in seen:  # files joined by hand repeat ids; each object stays
                ann = ann.replace(id=uuid.uuid4().hex)
            seen.add(ann.id)
            annotations.append(ann)
            name = feature.class_name
            if name is not None and all(c.name != name for c in class_list):
                class_list.append(PathClass(name, feature.color or class_color(name)))
        return cls(annotations, class_list, mpp)

    # derived data -----------------------------------------------------------------------------

    def hierarchy(self) -> dict[str, str | None]:
        """Return the parent of each annotation: the smallest area annotation that covers it.

        Of two annotations with the same area covering each other, the later one is
        the child. Annotations without a parent map to None.
        """
        with self.lock:
            if self._hierarchy is None:
                self._hierarchy = self._compute_hierarchy()
            return dict(self._hierarchy)

    def _compute_hierarchy(self) -> dict[str, str | None]:
        """Compute :meth:`hierarchy` with a spatial index over the area annotations."""
        anns = list(self)
        parents: dict[str, str | None] = {a.id: None for a in anns}
        areas = [(i, a) for i, a in enumerate(anns) if a.is_area]
        if not areas:
            return parents
        containers = np.array([a.geometry for _, a in areas], dtype=object)
        geoms = np.array([a.geometry for a in anns], dtype=object)
        children, candidates = shapely.STRtree(containers).query(geoms)
        # cheap tests first (covered_by costs ~70 us a pair; 10,000 areas and 100,000 points
        # took ~0.8 s): not itself, and bounds within bounds (a slide-wide point set meets
        # the bounds of every area)
        inner, outer = shapely.bounds(geoms)[children], shapely.bounds(containers)[candidates]
        positions = np.array([i for i, _ in areas])
        keep = (
            (positions[candidates] != children)
            & np.all(inner[:, :2] >= outer[:, :2], axis=1)
            & np.all(inner[:, 2:] <= outer[:, 2:], axis=1)
        )
        children, candidates = children[keep], candidates[keep]
        covered = shapely.covered_by(geoms[children], containers[candidates])
        children, candidates = children[covered], candidates[covered]
        best: dict[int, tuple[float, int]] = {}
        for child, candidate in zip(children.tolist(), candidates.tolist(), strict=True):
            position, container = areas[candidate]
            area = container.geometry.area
            child_area = anns[child].geometry.area
            if position == child or area < child_area or (area == child_area and position > child):
                continue
            if child not in best or area < best[child][0]:
                best[child] = (area, position)
        for child, (_, position) in best.items():
            parents[anns[child].id] = anns[position].id
        return parents

    def measurements(self, ann: Annotation) -> dict:
        """Return the live measures of ``ann`` (um when the slide has mpp, px otherwise).

        Keys: those of :func:`her2viewer.geometry.shapes.measure`, ``units`` ("um"
        or "px (the slide has no pixel size)"), for an area annotation the points
        inside it per class (``n_points <class>``), then the analysis results.
        """
        result = measure(ann.geometry, self.mpp)
        result["units"] = "um" if self.mpp else "px (the slide has no pixel size)"
        if ann.is_area:
            result.update(self._points_inside(ann.geometry))
        result.update(ann.results)
        return result

    def _points_inside(self, area: BaseGeometry) -> dict[str, int]:
        """Return ``{"n_points <class>": count}`` of the point annotations inside ``area``."""
        with self.lock:
            if self._point_sets is None:
                self._point_sets = [a for a in self if a.kind == "points"]
            point_sets = self._point_sets
        counts: dict[str, int] = {}
        for points in point_sets:
            inside = len(self._point_tree(points).query(area, predicate="covers"))
            key = f"n_points {points.class_name or UNCLASSIFIED}"
            counts[key] = counts.get(key, 0) + inside
        return counts

    def _point_tree(self, points: Annotation) -> shapely.STRtree:
        """Return the spatial index of a point annotation's points (kept while it is unchanged)."""
        cached = self._point_trees.get(points.id)
        if cached is None or cached[0] is not points.geometry:
            cached = (points.geometry, shapely.STRtree(shapely.get_parts(points.geometry)))
            self._point_trees[points.id] = cached
        return cached[1]

    def class_summary(self) -> list[dict]:
        """Return per class (the class list, then other classes used, then unclassified):
        ``class``, ``color``, ``count`` of annotations, total ``area_um2``/``area_mm2`` (or
        ``area_px2``) of the area annotations and ``n_points`` of the point annotations.
        """
        with self.lock:
            anns = list(self)
            names = [c.name for c in self.classes]
            used = [a.class_name for a in anns]
            names += [n for n in dict.fromkeys(used) if n is not None and n not in names]
            if None in used:
                names.append(None)
            return [
                self._summary_row(name, [a for a in anns if a.class_name == name]) for name in names
            ]

    def _summary_row(self, name: str | None, anns: list[Annotation]) -> dict:
        """Return one :meth:`class_summary` row."""
        area = sum(a.geometry.area for a in anns if a.is_area)
        row: dict = {
            "class": name or UNCLASSIFIED,
            "color": self.class_color_of(name),
            "count": len(anns),
        }
        if self.mpp:
            row.update(area_um2=area * self.mpp**2, area_mm2=area * self.mpp**2 / 1e6)
        else:
            row["area_px2"] = area
        row["n_points"] = sum(
            int(shapely.get_num_geometries(a.geometry)) for a in anns if a.kind == "points"
        )
        return row
