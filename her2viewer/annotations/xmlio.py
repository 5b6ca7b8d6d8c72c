"""What the ASAP and ImageScope XML readers and writers share.

Both formats store one shape per element with no holes and no notion of one object made of
several shapes, so a :class:`~her2viewer.geometry.geojson.Feature` is written as one or more
:class:`Part` elements and read back by :func:`features_from_parts`. Elements written by
her2viewer carry a few extra attributes (:data:`ID_ATTR`, :data:`HOLE_ATTR`,
:data:`LOCKED_ATTR`, :data:`SHAPE_ATTR`) that other programs ignore and that make our own
files round-trip exactly; files from other programs read without them.
"""

from __future__ import annotations

import math
import re
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import shapely
from shapely.geometry import LineString, MultiLineString, MultiPoint, Point, Polygon
from shapely.geometry.base import BaseGeometry

from her2viewer.annotations.model import DEFAULT_CLASSES
from her2viewer.errors import Her2ViewerError
from her2viewer.geometry.geojson import Feature
from her2viewer.geometry.shapes import repair
from her2viewer.outputs import describe_os_error, write_bytes_atomic

#: Extra attribute naming the feature an element belongs to (several elements, one feature).
ID_ATTR = "her2viewerId"
#: Extra attribute marking an element as a hole cut out of its feature.
HOLE_ATTR = "her2viewerHole"
#: Extra attribute keeping a feature's locked flag.
LOCKED_ATTR = "her2viewerLocked"
#: Extra attribute saying a closed-looking element is an open polyline.
SHAPE_ATTR = "her2viewerShape"
#: The class holes and stray negative regions get where the format has no holes (QuPath's name).
IGNORE_CLASS = "Ignore*"
#: Its colour in QuPath's class list.
IGNORE_COLOR = next(c.color for c in DEFAULT_CLASSES if c.name == IGNORE_CLASS)

_DECLARATION = re.compile(rb"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)


class AnnotationFormatError(Her2ViewerError):
    """An annotation file is unknown, corrupt or cannot hold what is asked of it."""


@dataclass
class Part:
    """One shape element of an XML file: a polygon ring, a line, or points.

    Attributes
    ----------
    geometry : BaseGeometry
        A Polygon (no holes), a LineString, a Point or a MultiPoint, in level-0 pixels.
    class_name, color, name, locked
        As in :class:`Feature`; holes take them from the feature they cut.
    group : str or None
        The feature it belongs to (:data:`ID_ATTR`); None for files from other programs.
    negative : bool
        A hole or an exclusion (ImageScope ``NegativeROA``), cut out of its feature.
    """

    geometry: BaseGeometry
    class_name: str | None = None
    color: tuple[int, int, int] | None = None
    name: str = ""
    group: str | None = None
    negative: bool = False
    locked: bool = False


def read_annotation_bytes(path: Path, size: int = -1) -> bytes:
    """The first ``size`` bytes of an annotation file (all by default).

    Raises
    ------
    AnnotationFormatError
        One sentence naming the file when it is missing or cannot be read.
    """
    try:
        with path.open("rb") as handle:
            return handle.read(size)
    except FileNotFoundError as exc:
        raise AnnotationFormatError(f"{path}: no such annotation file.") from exc
    except OSError as exc:
        raise AnnotationFormatError(
            f"cannot read the annotation file {path}: {describe_os_error(exc)}."
        ) from exc


def parse_xml(path: str | Path, what: str, root_tag: str) -> ET.Element:
    """Parse an XML file and return its root, refusing DOCTYPE and ENTITY declarations.

    Raises
    ------
    AnnotationFormatError
        One sentence naming the file when it cannot be read, declares a DOCTYPE or an
        ENTITY (they can expand without bound or read other files), is not XML, or its
        root element is not ``root_tag`` (it is not a ``what`` annotation file).
    """
    path = Path(path)
    data = read_annotation_bytes(path)
    if _DECLARATION.search(data):
        raise AnnotationFormatError(
            f"{path} declares a DOCTYPE or ENTITY, which {what} files never need; "
            "it is refused for safety."
        )
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise AnnotationFormatError(f"{path} is not a readable {what} XML file ({exc}).") from exc
    if root.tag != root_tag:
        raise AnnotationFormatError(
            f"{path} is not an {what} annotation file (its root element is <{root.tag}>, "
            f"not <{root_tag}>)."
        )
    return root


def write_xml(path: str | Path, root: ET.Element) -> None:
    """Write an XML tree, indented and UTF-8, atomically."""
    ET.indent(root)
    write_bytes_atomic(path, ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n")


def number(element: ET.Element, name: str, path: str | Path) -> float:
    """Return the finite number in attribute ``name`` of ``element``.

    Raises
    ------
    AnnotationFormatError
        When the attribute is missing, not a number, or not finite.
    """
    text = element.get(name)
    try:
        value = float(text)
    except (TypeError, ValueError):
        value = math.nan
    if not math.isfinite(value):
        raise AnnotationFormatError(
            f"{path}: a <{element.tag}> has {name}={text!r}; coordinates must be finite numbers."
        )
    return value


def fmt(value: float) -> str:
    """Return a coordinate as the shortest text that reads back to the same float."""
    return repr(float(value))


def flag(element: ET.Element, name: str) -> bool:
    """Return True when attribute ``name`` of ``element`` is ``1`` or ``true``."""
    return element.get(name, "0").strip().lower() in ("1", "true")


def polygon_part(coords: Sequence[tuple[float, float]], path: str | Path, label: str) -> Polygon:
    """Return the polygon through ``coords`` (closed for the caller), or refuse too few points."""
    if len(set(coords)) < 3:
        raise AnnotationFormatError(
            f"{path}: {label} has {len(set(coords))} distinct points; a polygon needs at least 3."
        )
    return Polygon(coords)


def line_part(coords: Sequence[tuple[float, float]], path: str | Path, label: str) -> LineString:
    """Return the line through ``coords``, or refuse fewer than 2 points."""
    if len(coords) < 2:
        raise AnnotationFormatError(
            f"{path}: {label} has {len(coords)} point(s); a line needs at least 2."
        )
    return LineString(coords)


def is_rectangle(geom: BaseGeometry) -> bool:
    """Return True for an axis-aligned rectangle polygon without holes."""
    return (
        isinstance(geom, Polygon)
        and not geom.interiors
        and len(geom.exterior.coords) == 5
        and geom.area > 0
        and math.isclose(geom.area, geom.envelope.area, rel_tol=1e-12)
    )


def ring_coords(ring) -> list[tuple[float, float]]:
    """Return a ring's points without the closing repeat of the first one."""
    return [(float(x), float(y)) for x, y, *_ in ring.coords[:-1]]


@dataclass
class Piece:
    """One element to write: what it is and its points (see :func:`pieces`)."""

    shape: str  # "polygon" | "rectangle" | "hole" | "line" | "polyline" | "point" | "points"
    coords: list[tuple[float, float]]


def pieces(geom: BaseGeometry) -> Iterator[Piece]:
    """Split a feature's geometry into the elements a hole-less XML format can hold.

    Polygons give their outline and one ``hole`` per interior ring; lines of two points are
    ``line`` (a ruler), longer ones ``polyline``; a point is ``point``, a multipoint ``points``.
    """
    if geom.is_empty:
        return
    if isinstance(geom, Polygon):
        kind = "rectangle" if is_rectangle(geom) else "polygon"
        yield Piece(kind, ring_coords(geom.exterior))
        for ring in geom.interiors:
            yield Piece("hole", ring_coords(ring))
    elif isinstance(geom, LineString):
        coords = [(float(x), float(y)) for x, y, *_ in geom.coords]
        yield Piece("line" if len(coords) == 2 else "polyline", coords)
    elif isinstance(geom, Point):
        yield Piece("point", [(float(geom.x), float(geom.y))])
    elif isinstance(geom, MultiPoint):
        yield Piece("points", [(float(p.x), float(p.y)) for p in geom.geoms])
    elif hasattr(geom, "geoms"):  # MultiPolygon, MultiLineString, GeometryCollection
        for sub in geom.geoms:
            yield from pieces(sub)


def features_from_parts(parts: Sequence[Part]) -> list[Feature]:
    """Assemble the features of a file from its parts.

    Parts sharing a :attr:`Part.group` form one feature (its outlines united, its holes cut
    out). A negative part of no group (an ImageScope exclusion) is cut out of every polygon
    of its layer it overlaps; one that overlaps none becomes an ``Ignore*`` region.
    """
    groups: dict[str, list[Part]] = {}
    for part in parts:
        groups.setdefault(part.group or uuid.uuid4().hex, []).append(part)
    features = [_feature(members) for members in groups.values() if not _orphan(members)]
    orphans = [m for members in groups.values() if _orphan(members) for m in members]
    for hole in orphans:
        if not _cut_from_layer(features, hole):
            features.append(
                Feature(
                    geometry=repair(hole.geometry),
                    class_name=IGNORE_CLASS,
                    color=IGNORE_COLOR,
                    name=hole.name or None,
                )
            )
    return features


def _orphan(members: Sequence[Part]) -> bool:
    """Return True for a group of only negative parts (no outline to cut them from)."""
    return all(m.negative for m in members)


def _feature(members: Sequence[Part]) -> Feature:
    """Return the feature made of one group's parts."""
    outlines = [m for m in members if not m.negative]
    first = outlines[0]
    geometry = _combine([m.geometry for m in outlines])
    holes = [m.geometry for m in members if m.negative]
    if holes and geometry.geom_type in ("Polygon", "MultiPolygon"):
        geometry = repair(geometry.difference(shapely.union_all(holes)))
    feature = Feature(
        geometry=geometry,
        class_name=first.class_name,
        color=first.color,
        name=first.name or None,
        locked=first.locked,
    )
    if first.group:
        feature.id = first.group
    return feature


def _combine(geoms: Sequence[BaseGeometry]) -> BaseGeometry:
    """Return one geometry for a feature's outlines (a union, lines or points gathered)."""
    if len(geoms) == 1:
        geom = geoms[0]
        return repair(geom) if isinstance(geom, Polygon) else geom
    if all(isinstance(g, Polygon) for g in geoms):
        return repair(shapely.union_all([repair(g) for g in geoms]))
    if all(isinstance(g, LineString) for g in geoms):
        return MultiLineString(list(geoms))
    if all(isinstance(g, Point | MultiPoint) for g in geoms):
        return MultiPoint([p for g in geoms for p in getattr(g, "geoms", [g])])
    return shapely.GeometryCollection(list(geoms))


def _cut_from_layer(features: list[Feature], hole: Part) -> bool:
    """Cut a negative region out of the polygons of its layer it overlaps; True if any."""
    cut = False
    for feature in features:
        polygonal = feature.geometry.geom_type in ("Polygon", "MultiPolygon")
        if (
            polygonal
            and feature.class_name == hole.class_name
            and feature.geometry.intersects(hole.geometry)
        ):
            feature.geometry = repair(feature.geometry.difference(hole.geometry))
            cut = True
    return cut


def hex_color(text: str | None) -> tuple[int, int, int] | None:
    """Return the colour of ``#RRGGBB`` text, or None when it is not one."""
    found = re.fullmatch(r"\s*#?([0-9a-fA-F]{6})\s*", text or "")
    if not found:
        return None
    value = int(found.group(1), 16)
    return (value >> 16) & 255, (value >> 8) & 255, value & 255


def color_hex(color: Sequence[int]) -> str:
    """Return ``#RRGGBB`` for an ``(r, g, b)`` colour."""
    return "#{:02X}{:02X}{:02X}".format(*color)
