"""ASAP XML annotations (``<ASAP_Annotations>``), read and written as :class:`Feature` lists.

ASAP stores one shape per ``<Annotation Name Type PartOfGroup Color>`` with ordered
``<Coordinate Order X Y>`` points, and classes as ``<AnnotationGroups><Group Name Color>``.
The mapping (see her2viewer/guide/annotations.md):

* class <-> ``PartOfGroup`` (``None`` for an unclassified object), colour <-> the group's
  ``Color``; name <-> ``Name``;
* polygon <-> ``Polygon`` (``Rectangle`` for an axis-aligned rectangle; ``Spline`` reads as the
  polygon through its control points); a two-point line <-> ``Measurement``; a point <-> ``Dot``;
  points <-> ``PointSet``; a polyline, which ASAP lacks, is written as a ``Polygon`` marked open;
* ASAP polygons have no holes: a hole is written as its own ``Polygon`` in the ``Ignore*`` group
  (what it means in QuPath and in ROIs: excluded), tied to its polygon so that her2viewer reads
  it back as a hole; several polygons of one object are tied the same way.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

from shapely.geometry import MultiPoint, Point

from her2viewer.annotations.xmlio import (
    HOLE_ATTR,
    ID_ATTR,
    IGNORE_CLASS,
    IGNORE_COLOR,
    LOCKED_ATTR,
    SHAPE_ATTR,
    AnnotationFormatError,
    Part,
    color_hex,
    features_from_parts,
    flag,
    fmt,
    hex_color,
    line_part,
    number,
    parse_xml,
    pieces,
    polygon_part,
    write_xml,
)
from her2viewer.geometry.geojson import Feature
from her2viewer.geometry.shapes import rectangle

ROOT = "ASAP_Annotations"
#: ASAP's name for "no group".
NO_GROUP = "None"
#: ASAP's default annotation colour, used for objects and groups that have none.
DEFAULT_COLOR = (244, 250, 88)
#: Written ``Type`` of each piece of a feature (see :func:`xmlio.pieces`).
_TYPES = {
    "polygon": "Polygon",
    "rectangle": "Rectangle",
    "hole": "Polygon",
    "line": "Measurement",
    "polyline": "Polygon",
    "point": "Dot",
    "points": "PointSet",
}


def read_asap(path: str | Path) -> list[Feature]:
    """Read an ASAP XML annotation file.

    Raises
    ------
    AnnotationFormatError
        One sentence naming the file when it is not ASAP XML or an annotation is unusable
        (an unknown type, too few or non-finite coordinates).
    """
    root = parse_xml(path, "ASAP", ROOT)
    groups = {group.get("Name", ""): hex_color(group.get("Color")) for group in root.iter("Group")}
    parts = [
        _part(element, number_, groups, path)
        for number_, element in enumerate(root.iter("Annotation"), start=1)
    ]
    return features_from_parts(parts)


def _part(element: ET.Element, index: int, groups: dict, path: str | Path) -> Part:
    """Return the :class:`Part` of one ``<Annotation>`` element."""
    label = f"annotation {index} ({element.get('Name') or 'unnamed'})"
    coordinates = sorted(element.iter("Coordinate"), key=lambda c: number(c, "Order", path))
    coords = [(number(c, "X", path), number(c, "Y", path)) for c in coordinates]
    group = element.get("PartOfGroup", NO_GROUP)
    class_name = None if group in ("", NO_GROUP) else group
    color = (groups.get(group) or hex_color(element.get("Color"))) if class_name else None
    return Part(
        geometry=_geometry(element.get("Type", ""), element, coords, path, label),
        class_name=class_name,
        color=color,
        name=element.get("Name", ""),
        group=element.get(ID_ATTR),
        negative=flag(element, HOLE_ATTR),
        locked=flag(element, LOCKED_ATTR),
    )


def _geometry(kind: str, element: ET.Element, coords: list, path: str | Path, label: str):
    """Return the shape of an annotation of ASAP type ``kind``."""
    if element.get(SHAPE_ATTR) == "polyline" or kind == "Measurement":
        return line_part(coords, path, label)
    if kind in ("Polygon", "Spline"):
        return polygon_part(coords, path, label)
    if kind == "Rectangle":
        if len(coords) == 2:
            (x0, y0), (x1, y1) = coords
            return rectangle(min(x0, x1), min(y0, y1), abs(x1 - x0), abs(y1 - y0))
        return polygon_part(coords, path, label)
    if kind in ("Dot", "PointSet"):
        if not coords:
            raise AnnotationFormatError(f"{path}: {label} has no coordinates.")
        return Point(coords[0]) if kind == "Dot" else MultiPoint(coords)
    raise AnnotationFormatError(
        f"{path}: {label} has the unknown type {kind!r} "
        "(ASAP types: Polygon, Rectangle, Spline, Dot, PointSet, Measurement)."
    )


def write_asap(path: str | Path, features: Sequence[Feature]) -> None:
    """Write ``features`` as an ASAP XML file, atomically.

    Raises
    ------
    OutputError
        One sentence when the file cannot be written.
    """
    root = ET.Element(ROOT)
    annotations = ET.SubElement(root, "Annotations")
    colors: dict[str, tuple[int, int, int]] = {}
    for feature in features:
        for piece in pieces(feature.geometry):
            _write_piece(annotations, feature, piece, colors)
    groups = ET.SubElement(root, "AnnotationGroups")
    for name, color in colors.items():
        group = ET.SubElement(
            groups, "Group", Name=name, PartOfGroup=NO_GROUP, Color=color_hex(color)
        )
        ET.SubElement(group, "Attributes")
    write_xml(path, root)


def _write_piece(parent: ET.Element, feature: Feature, piece, colors: dict) -> None:
    """Add one ``<Annotation>`` for a piece of ``feature`` and note its group's colour."""
    hole = piece.shape == "hole"
    group = IGNORE_CLASS if hole else feature.class_name or NO_GROUP
    color = IGNORE_COLOR if hole else feature.color or DEFAULT_COLOR
    if group != NO_GROUP:
        color = colors.setdefault(group, color)
    element = ET.SubElement(
        parent,
        "Annotation",
        Name=feature.name or "",
        Type=_TYPES[piece.shape],
        PartOfGroup=group,
        Color=color_hex(color),
    )
    element.set(ID_ATTR, feature.id)
    if hole:
        element.set(HOLE_ATTR, "1")
    if piece.shape == "polyline":
        element.set(SHAPE_ATTR, "polyline")
    if feature.locked:
        element.set(LOCKED_ATTR, "1")
    coordinates = ET.SubElement(element, "Coordinates")
    for order, (x, y) in enumerate(piece.coords):
        ET.SubElement(coordinates, "Coordinate", Order=str(order), X=fmt(x), Y=fmt(y))
