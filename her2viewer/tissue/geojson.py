"""QuPath-compatible GeoJSON for tissue contours and other polygons (via geometry.geojson)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from shapely.geometry import Polygon

from her2viewer.geometry.geojson import Feature, features_to_geojson, read_features
from her2viewer.outputs import write_text_atomic
from her2viewer.tissue.segmentation import TissueSegmentation

TISSUE_COLOUR = (0, 160, 0)


def _ring(points: np.ndarray) -> np.ndarray | None:
    """Return a ring as ``(N, 2)`` floats, or None when it has fewer than three vertices."""
    ring = np.asarray(points, np.float64).reshape(-1, 2)
    return ring if len(ring) >= 3 else None


def polygon_features(
    polygons: list[np.ndarray],
    holes: list[list[np.ndarray]] | None = None,
    classification: str = "Tissue",
    colour: tuple[int, int, int] = TISSUE_COLOUR,
    object_type: str = "annotation",
) -> list[Feature]:
    """Return one :class:`~her2viewer.geometry.geojson.Feature` per polygon (rings as drawn).

    Parameters
    ----------
    polygons : list of numpy.ndarray
        Outer rings, ``(N, 2)`` level-0 ``(x, y)``; rings of fewer than three vertices are skipped.
    holes : list of list of numpy.ndarray, optional
        Inner rings of each polygon.
    classification : str
        QuPath class name.
    colour : (int, int, int)
        Class colour (RGB).
    object_type : str
        QuPath ``objectType`` (``annotation`` or ``detection``).
    """
    holes = holes or [[] for _ in polygons]
    features = []
    for outer, inner in zip(polygons, holes, strict=True):
        shell = _ring(outer)
        if shell is None:
            continue
        interiors = [r for r in map(_ring, inner) if r is not None]
        features.append(
            Feature(
                Polygon(shell, interiors),
                object_type=object_type,
                class_name=classification,
                color=colour,
            )
        )
    return features


def polygons_to_geojson(
    polygons: list[np.ndarray],
    holes: list[list[np.ndarray]] | None = None,
    classification: str = "Tissue",
    colour: tuple[int, int, int] = TISSUE_COLOUR,
    object_type: str = "annotation",
) -> dict:
    """Return a GeoJSON FeatureCollection QuPath imports, one Feature per polygon.

    The parameters are those of :func:`polygon_features`.
    """
    features = polygon_features(polygons, holes, classification, colour, object_type)
    return features_to_geojson(features)


def segmentation_to_geojson(segmentation: TissueSegmentation) -> dict:
    """Return the tissue contours (with holes) of a segmentation as GeoJSON."""
    return polygons_to_geojson(segmentation.contours, segmentation.holes)


def write_geojson(path: str | os.PathLike, collection: dict) -> Path:
    """Write a FeatureCollection to ``path`` atomically and return the path.

    Raises
    ------
    OutputError
        One sentence when the file cannot be written (full disk, no permission).
    """
    return write_text_atomic(path, json.dumps(collection))


def read_geojson_polygons(path: str | os.PathLike) -> list[tuple[str, list[np.ndarray]]]:
    """Read polygons from a GeoJSON file as ``(class name, [outer, *holes])`` pairs.

    Polygons and MultiPolygons are read (repaired if invalid); other geometries are skipped.

    Raises
    ------
    GeoJSONError
        One sentence when the file is not GeoJSON features.
    """
    result = []
    for feature in read_features(path):
        geometry = feature.geometry
        if geometry.geom_type not in ("Polygon", "MultiPolygon"):
            continue
        for polygon in getattr(geometry, "geoms", [geometry]):
            if polygon.is_empty:
                continue
            rings = [polygon.exterior, *polygon.interiors]
            result.append((feature.class_name or "", [np.asarray(r.coords) for r in rings]))
    return result
