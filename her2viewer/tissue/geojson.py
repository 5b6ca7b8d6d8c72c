"""QuPath-compatible GeoJSON for tissue contours and other polygons."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from her2viewer.outputs import write_text_atomic
from her2viewer.tissue.segmentation import TissueSegmentation

TISSUE_COLOUR = (0, 160, 0)


def _ring(points: np.ndarray) -> list[list[float]]:
    ring = [[round(float(x), 2), round(float(y), 2)] for x, y in np.asarray(points).reshape(-1, 2)]
    if ring and ring[0] != ring[-1]:
        ring.append(ring[0])
    return ring


def polygons_to_geojson(
    polygons: list[np.ndarray],
    holes: list[list[np.ndarray]] | None = None,
    classification: str = "Tissue",
    colour: tuple[int, int, int] = TISSUE_COLOUR,
    object_type: str = "annotation",
) -> dict:
    """Return a GeoJSON FeatureCollection QuPath imports, one Feature per polygon.

    Parameters
    ----------
    polygons : list of numpy.ndarray
        Outer rings, ``(N, 2)`` level-0 ``(x, y)``.
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
        rings = [_ring(outer)] + [_ring(h) for h in inner]
        rings = [r for r in rings if len(r) >= 4]
        if not rings:
            continue
        features.append(
            {
                "type": "Feature",
                "geometry": {"type": "Polygon", "coordinates": rings},
                "properties": {
                    "objectType": object_type,
                    "classification": {"name": classification, "color": list(colour)},
                },
            }
        )
    return {"type": "FeatureCollection", "features": features}


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

    Polygons and MultiPolygons are read; other geometries are skipped.
    """
    data = json.loads(Path(path).read_text())
    features = data.get("features", []) if data.get("type") == "FeatureCollection" else [data]
    result = []
    for feature in features:
        geometry = feature.get("geometry") or {}
        classification = (feature.get("properties") or {}).get("classification") or {}
        name = classification.get("name", "") if isinstance(classification, dict) else ""
        polygons = {
            "Polygon": [geometry.get("coordinates")],
            "MultiPolygon": geometry.get("coordinates"),
        }
        for polygon in polygons.get(geometry.get("type"), []) or []:
            result.append((name, [np.asarray(ring, np.float64) for ring in polygon]))
    return result
