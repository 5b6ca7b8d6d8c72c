"""Aperio ImageScope XML annotations (``<Annotations>``), read and written as Feature lists.

ImageScope groups regions in layers, ``<Annotation Name LineColor>`` (``LineColor`` is a
``0xBBGGRR`` integer), each holding ``<Region Type Text NegativeROA>`` with ``<Vertex X Y>``
points. The mapping (see her2viewer/guide/annotations.md):

* class <-> the layer's ``Name`` (an empty name for unclassified objects), colour <->
  ``LineColor``; name <-> the region's ``Text``;
* ``Type`` 0 (free-form) <-> polygon; 1 <-> an axis-aligned rectangle; 2 (ellipse, given by its
  bounding box) reads as a 72-gon; 3 (arrow) and 4 (ruler) <-> a two-point line; ImageScope has
  no polyline and no point: a polyline is written as a region marked open and a point as a
  one-vertex region;
* ``NegativeROA="1"`` regions are holes: written for each interior ring, tied to their polygon;
  in files from ImageScope one is cut out of every polygon of its layer it overlaps, and one
  overlapping none becomes an ``Ignore*`` region.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

from shapely.geometry import Point
from shapely.geometry.base import BaseGeometry

from her2viewer.annotations.xmlio import (
    ID_ATTR,
    LOCKED_ATTR,
    SHAPE_ATTR,
    AnnotationFormatError,
    Part,
    features_from_parts,
    flag,
    fmt,
    line_part,
    number,
    parse_xml,
    pieces,
    polygon_part,
    write_xml,
)
from her2viewer.geometry.geojson import Feature
from her2viewer.geometry.shapes import ellipse, rectangle

ROOT = "Annotations"
#: ImageScope's default layer colour (green).
DEFAULT_COLOR = (0, 255, 0)
#: Written region ``Type`` of each piece of a feature (see :func:`xmlio.pieces`).
_TYPES = {
    "polygon": "0",
    "rectangle": "1",
    "hole": "0",
    "line": "4",
    "polyline": "0",
    "point": "0",
    "points": "0",
}
_TYPE_NAMES = "0 polygon, 1 rectangle, 2 ellipse, 3 arrow, 4 ruler"


def read_imagescope(path: str | Path) -> list[Feature]:
    """Read an Aperio ImageScope XML annotation file.

    Raises
    ------
    AnnotationFormatError
        One sentence naming the file when it is not ImageScope XML or a region is unusable
        (an unknown type, too few or non-finite vertices).
    """
    root = parse_xml(path, "ImageScope", ROOT)
    parts = []
    for layer in root.iter("Annotation"):
        class_name = layer.get("Name") or None
        color = bgr_color(layer.get("LineColor")) if class_name else None
        for region in layer.iter("Region"):
            label = f"region {region.get('Id', '?')} of layer '{layer.get('Name', '')}'"
            parts.append(
                Part(
                    geometry=_geometry(region, path, label),
                    class_name=class_name,
                    color=color,
                    name=region.get("Text", ""),
                    group=region.get(ID_ATTR),
                    negative=flag(region, "NegativeROA"),
                    locked=flag(region, LOCKED_ATTR),
                )
            )
    return features_from_parts(parts)


def _geometry(region: ET.Element, path: str | Path, label: str) -> BaseGeometry:
    """Return the shape of one ``<Region>``."""
    coords = [(number(v, "X", path), number(v, "Y", path)) for v in region.iter("Vertex")]
    kind = region.get("Type", "0")
    if kind in ("3", "4") or (kind == "0" and region.get(SHAPE_ATTR) == "polyline"):
        return line_part(coords, path, label)
    if kind == "0" and len(coords) == 1:
        return Point(coords[0])
    if kind == "0" or (kind == "1" and len(coords) != 2):
        return polygon_part(coords, path, label)
    if kind in ("1", "2") and len(coords) >= 2:
        xs, ys = [x for x, _ in coords], [y for _, y in coords]
        x0, y0, x1, y1 = min(xs), min(ys), max(xs), max(ys)
        if kind == "1":
            return rectangle(x0, y0, x1 - x0, y1 - y0)
        return ellipse((x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2)
    raise AnnotationFormatError(
        f"{path}: {label} has Type={kind!r} with {len(coords)} vertices, which is not a "
        f"region her2viewer reads (ImageScope types: {_TYPE_NAMES})."
    )


def bgr_color(text: str | None) -> tuple[int, int, int] | None:
    """Return the ``(r, g, b)`` colour of an ImageScope ``LineColor`` (``0xBBGGRR``)."""
    try:
        value = int(text)
    except (TypeError, ValueError):
        return None
    return value & 255, (value >> 8) & 255, (value >> 16) & 255


def color_bgr(color: Sequence[int]) -> str:
    """Return the ImageScope ``LineColor`` text of an ``(r, g, b)`` colour."""
    r, g, b = (int(c) for c in color)
    return str(r | g << 8 | b << 16)


def write_imagescope(path: str | Path, features: Sequence[Feature]) -> None:
    """Write ``features`` as an ImageScope XML file (one layer per class), atomically.

    Raises
    ------
    OutputError
        One sentence when the file cannot be written.
    """
    root = ET.Element(ROOT)
    layers: dict[str | None, ET.Element] = {}
    for feature in features:
        regions = layers.get(feature.class_name)
        if regions is None:
            regions = layers[feature.class_name] = _layer(root, feature, len(layers) + 1)
        for piece in pieces(feature.geometry):
            _region(regions, feature, piece)
    write_xml(path, root)


def _layer(root: ET.Element, feature: Feature, number_: int) -> ET.Element:
    """Add the layer of ``feature``'s class and return its ``<Regions>``."""
    layer = ET.SubElement(
        root,
        "Annotation",
        Id=str(number_),
        Name=feature.class_name or "",
        ReadOnly="0",
        LineColor=color_bgr(feature.color or DEFAULT_COLOR),
        Visible="1",
    )
    attributes = ET.SubElement(layer, "Attributes")
    ET.SubElement(attributes, "Attribute", Name="Description", Id="0", Value="")
    regions = ET.SubElement(layer, "Regions")
    ET.SubElement(layer, "Plots")
    return regions


def _region(regions: ET.Element, feature: Feature, piece) -> None:
    """Add one ``<Region>`` (or one per point of a point set) for a piece of ``feature``."""
    groups = [[c] for c in piece.coords] if piece.shape == "points" else [piece.coords]
    for coords in groups:
        region = ET.SubElement(
            regions,
            "Region",
            Id=str(len(regions) + 1),
            Type=_TYPES[piece.shape],
            Text=feature.name or "",
            NegativeROA="1" if piece.shape == "hole" else "0",
        )
        region.set(ID_ATTR, feature.id)
        if piece.shape == "polyline":
            region.set(SHAPE_ATTR, "polyline")
        if feature.locked:
            region.set(LOCKED_ATTR, "1")
        ET.SubElement(region, "Attributes")
        vertices = ET.SubElement(region, "Vertices")
        for x, y in coords:
            ET.SubElement(vertices, "Vertex", X=fmt(x), Y=fmt(y), Z="0")
