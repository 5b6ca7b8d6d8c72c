"""QuPath GeoJSON, read in every variant QuPath has written and written as QuPath 0.4+ writes it.

Read: a FeatureCollection, a bare list of Features or one Feature;
``properties.objectType`` (annotation, detection, cell; QuPath 0.2's ``id`` of
``PathAnnotationObject`` etc. is understood), ``classification`` with ``color``
``[r, g, b]`` or the older ``colorRGB`` (packed, signed ARGB int), ``name``,
``isLocked``, ``measurements`` as an object or a list of ``{name, value}``
(numbers, ``null`` or quoted ``"NaN"``), a derived class given as ``names``,
``nucleusGeometry`` of cells; Polygon (with holes), MultiPolygon, LineString,
MultiLineString, Point and MultiPoint geometries. Invalid polygons are repaired
on import. Written: a FeatureCollection (or a bare list), each Feature with an
``id``, ``properties.objectType`` and ``classification {name, color}``;
coordinates to 0.001 px.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import shapely
import shapely.geometry
from shapely.geometry.base import BaseGeometry

from her2viewer.errors import Her2ViewerError
from her2viewer.geometry.shapes import repair
from her2viewer.outputs import write_text_atomic

#: Geometry types read and written.
GEOMETRY_TYPES = (
    "Polygon",
    "MultiPolygon",
    "LineString",
    "MultiLineString",
    "Point",
    "MultiPoint",
)

#: QuPath 0.2 wrote the Java class name as the Feature ``id`` instead of ``objectType``.
_LEGACY_IDS = {
    "PathAnnotationObject": "annotation",
    "PathDetectionObject": "detection",
    "PathCellObject": "cell",
    "PathTileObject": "tile",
}

#: Properties read into :class:`Feature` fields; every other property is kept as is.
_KNOWN_PROPERTIES = ("objectType", "classification", "name", "isLocked", "measurements")

#: Decimal places of written coordinates (level-0 pixels).
_DECIMALS = 3


class GeoJSONError(Her2ViewerError):
    """A GeoJSON file cannot be read (not JSON, not GeoJSON, a bad feature)."""


@dataclass
class Feature:
    """One QuPath object: a geometry in level-0 pixels and its QuPath properties."""

    geometry: BaseGeometry
    object_type: str = "annotation"
    class_name: str | None = None
    color: tuple[int, int, int] | None = None
    name: str | None = None
    locked: bool = False
    measurements: dict[str, float] = field(default_factory=dict)
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    nucleus: BaseGeometry | None = None
    properties: dict = field(default_factory=dict)


def _feature_list(data: object, source: str) -> list:
    """Return the raw Feature dicts of a FeatureCollection, a list of Features or one Feature."""
    if isinstance(data, list):
        return data
    if isinstance(data, dict) and data.get("type") == "FeatureCollection":
        features = data.get("features")
        if isinstance(features, list):
            return features
        raise GeoJSONError(f"{source} is a FeatureCollection without a list of features.")
    if isinstance(data, dict) and data.get("type") == "Feature":
        return [data]
    raise GeoJSONError(f"{source} is not a GeoJSON FeatureCollection, Feature or list of Features.")


def _geometry(value: object, where: str) -> BaseGeometry:
    """Return the repaired shapely geometry of a GeoJSON geometry object."""
    if not isinstance(value, dict) or value.get("type") is None:
        raise GeoJSONError(f"{where} has no geometry.")
    kind = value["type"]
    if kind not in GEOMETRY_TYPES:
        raise GeoJSONError(
            f"{where} has an unsupported geometry type {kind!r} "
            f"(supported: {', '.join(GEOMETRY_TYPES)})."
        )
    try:
        geom = shapely.geometry.shape(value)
    except (TypeError, ValueError, KeyError, IndexError, shapely.errors.ShapelyError) as exc:
        reason = str(exc).rstrip(". ")
        raise GeoJSONError(f"{where} has an invalid {kind} ({reason}).") from exc
    if not np.isfinite(shapely.get_coordinates(geom)).all():
        raise GeoJSONError(f"{where} has a non-finite (NaN or infinite) coordinate.")
    return repair(geom)


def _color(classification: dict) -> tuple[int, int, int] | None:
    """Return the RGB colour of a QuPath classification (``color`` list or packed ``colorRGB``)."""
    color = classification.get("color")
    if isinstance(color, list) and len(color) >= 3:
        try:
            return tuple(int(np.clip(float(c), 0, 255)) for c in color[:3])
        except (TypeError, ValueError):
            return None
    packed = classification.get("colorRGB")
    if isinstance(packed, int) and not isinstance(packed, bool):
        return ((packed >> 16) & 255, (packed >> 8) & 255, packed & 255)
    return None


def _number(value: object) -> float | None:
    """Return ``value`` as a float (``null`` is NaN), or None when it is not a number."""
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        return float(value)  # QuPath may quote "NaN" and "Infinity"
    except ValueError:
        return None


def _measurements(value: object) -> dict[str, float]:
    """Return QuPath measurements given as an object or as a list of ``{name, value}``."""
    if isinstance(value, dict):
        pairs = list(value.items())
    elif isinstance(value, list):
        pairs = [(m.get("name"), m.get("value")) for m in value if isinstance(m, dict)]
    else:
        return {}
    numbers = {str(name): _number(v) for name, v in pairs if name is not None}
    return {name: v for name, v in numbers.items() if v is not None}


def _parse_feature(raw: object, where: str) -> Feature:
    """Return the :class:`Feature` of one raw GeoJSON Feature dict."""
    if not isinstance(raw, dict) or raw.get("type") != "Feature":
        raise GeoJSONError(f"{where} is not a GeoJSON Feature.")
    properties = raw.get("properties") or {}
    if not isinstance(properties, dict):
        raise GeoJSONError(f"{where} has properties that are not an object.")
    raw_id = raw.get("id")
    raw_id = raw_id if isinstance(raw_id, str | int) and not isinstance(raw_id, bool) else None
    object_type = properties.get("objectType") or _LEGACY_IDS.get(raw_id, "annotation")
    if raw_id is None or raw_id in _LEGACY_IDS:
        raw_id = str(uuid.uuid4())
    classification = properties.get("classification")
    classification = classification if isinstance(classification, dict) else {}
    nucleus = raw.get("nucleusGeometry", properties.get("nucleusGeometry"))
    name = properties.get("name")
    class_name = classification.get("name")
    if class_name is None and isinstance(classification.get("names"), list):
        class_name = ": ".join(map(str, classification["names"]))  # a derived class
    return Feature(
        geometry=_geometry(raw.get("geometry"), where),
        object_type=str(object_type),
        class_name=None if class_name is None else str(class_name),
        color=_color(classification),
        name=None if name is None else str(name),
        locked=properties.get("isLocked") is True,
        measurements=_measurements(properties.get("measurements")),
        id=str(raw_id),
        nucleus=None if nucleus is None else _geometry(nucleus, f"the nucleus of {where}"),
        properties={
            k: v
            for k, v in properties.items()
            if k not in _KNOWN_PROPERTIES and k != "nucleusGeometry"
        },
    )


def parse_features(data: object, source: str) -> list[Feature]:
    """Return the features of parsed GeoJSON ``data`` read from ``source``.

    Parameters
    ----------
    data : object
        A FeatureCollection, a list of Features or one Feature (parsed JSON).
    source : str
        The file name (or another description) used in error messages.

    Raises
    ------
    GeoJSONError
        One sentence naming ``source`` and the feature that is wrong.
    """
    raws = _feature_list(data, source)
    return [
        _parse_feature(raw, f"feature {number} of {source}")
        for number, raw in enumerate(raws, start=1)
    ]


def read_features(path: str | Path) -> list[Feature]:
    """Read the features of a GeoJSON file (any QuPath variant).

    Raises
    ------
    GeoJSONError
        One sentence when the file cannot be read, is not JSON or not GeoJSON features.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise GeoJSONError(f"GeoJSON file {path} does not exist.") from exc
    except UnicodeDecodeError as exc:
        raise GeoJSONError(f"{path} is not a GeoJSON file (not UTF-8 text).") from exc
    except OSError as exc:
        raise GeoJSONError(f"cannot read GeoJSON file {path}: {exc.strerror or exc}.") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise GeoJSONError(
            f"{path} is not a readable GeoJSON file "
            f"(not JSON: {exc.msg} at line {exc.lineno}, column {exc.colno})."
        ) from exc
    return parse_features(data, str(path))


def _rounded_mapping(geom: BaseGeometry) -> dict:
    """Return the GeoJSON geometry object of ``geom`` with coordinates rounded for writing."""
    return shapely.geometry.mapping(shapely.transform(geom, lambda c: np.round(c, _DECIMALS)))


def _finite_or_none(value: float) -> float | None:
    """Return ``value``, or None for NaN/infinity (JSON has no such numbers)."""
    return float(value) if math.isfinite(value) else None


def _feature_to_geojson(feature: Feature) -> dict:
    """Return one Feature dict as QuPath 0.4+ writes it."""
    properties = dict(feature.properties)
    properties["objectType"] = feature.object_type
    if feature.name is not None:
        properties["name"] = feature.name
    if feature.class_name is not None:
        classification: dict = {"name": feature.class_name}
        if feature.color is not None:
            classification["color"] = [int(c) for c in feature.color]
        properties["classification"] = classification
    if feature.locked:
        properties["isLocked"] = True
    if feature.measurements:
        properties["measurements"] = {
            k: _finite_or_none(v) for k, v in feature.measurements.items()
        }
    result = {
        "type": "Feature",
        "id": feature.id,
        "geometry": _rounded_mapping(feature.geometry),
    }
    if feature.nucleus is not None:
        result["nucleusGeometry"] = _rounded_mapping(feature.nucleus)
    result["properties"] = properties
    return result


def features_to_geojson(features: Sequence[Feature], *, as_list: bool = False) -> dict | list:
    """Return ``features`` as a GeoJSON FeatureCollection (or a bare list with ``as_list``)."""
    items = [_feature_to_geojson(f) for f in features]
    return items if as_list else {"type": "FeatureCollection", "features": items}


def write_features(path: str | Path, features: Sequence[Feature], *, as_list: bool = False) -> None:
    """Write ``features`` to ``path`` atomically as QuPath GeoJSON.

    Raises
    ------
    OutputError
        One sentence when the file cannot be written (full disk, no permission).
    """
    write_text_atomic(path, json.dumps(features_to_geojson(features, as_list=as_list)))
