"""Shapes in level-0 pixels: repair, construction, transforms, measures and display outlines.

Every function takes and returns shapely geometries; nothing here knows about
files, Qt or the screen beyond a downsample factor.
"""

from __future__ import annotations

import numpy as np
import shapely
import shapely.affinity
from shapely.geometry import MultiPolygon, Polygon
from shapely.geometry.base import BaseGeometry

_POLYGONAL = ("Polygon", "MultiPolygon")
_LINEAL = ("LineString", "MultiLineString", "LinearRing")
_PUNTAL = ("Point", "MultiPoint")


def _polygonal_parts(geom: BaseGeometry) -> list[Polygon]:
    """Return the non-empty polygons inside ``geom`` (any geometry, collections included)."""
    parts = shapely.get_parts(geom)
    polygons: list[Polygon] = []
    for part in parts:
        if part.geom_type == "Polygon" and not part.is_empty:
            polygons.append(part)
        elif part.geom_type in ("MultiPolygon", "GeometryCollection"):
            polygons.extend(_polygonal_parts(part))
    return polygons


def repair(geom: BaseGeometry) -> BaseGeometry:
    """Return a valid copy of ``geom`` (``shapely.make_valid``); polygonal input stays polygonal.

    A self-intersecting (bow-tie) polygon becomes a MultiPolygon of its lobes; a
    polygon that collapses to a line or a point becomes an empty Polygon rather
    than a geometry of another kind.
    """
    if geom.is_valid:
        return geom
    if geom.geom_type not in _POLYGONAL:
        return shapely.make_valid(geom)
    fixed = shapely.make_valid(geom, method="structure", keep_collapsed=False)
    polygons = _polygonal_parts(fixed)
    if not polygons:
        return Polygon()
    return polygons[0] if len(polygons) == 1 else MultiPolygon(polygons)


def rectangle(x: float, y: float, w: float, h: float) -> Polygon:
    """Return the axis-aligned rectangle with top-left corner ``(x, y)`` and size ``w`` x ``h``."""
    return shapely.box(x, y, x + w, y + h)


def ellipse(cx: float, cy: float, rx: float, ry: float, segments: int = 72) -> Polygon:
    """Return the axis-aligned ellipse centred on ``(cx, cy)`` as a ``segments``-gon."""
    angles = np.linspace(0.0, 2.0 * np.pi, segments, endpoint=False)
    return Polygon(np.column_stack([cx + rx * np.cos(angles), cy + ry * np.sin(angles)]))


def apply_matrix(geom: BaseGeometry, matrix: np.ndarray) -> BaseGeometry:
    """Return ``geom`` mapped by a 3x3 homogeneous matrix (affine or projective).

    Points are column vectors: ``[x', y', w'] = matrix @ [x, y, 1]`` then
    ``(x'/w', y'/w')``.
    """
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape != (3, 3) or not np.isfinite(m).all():
        raise ValueError("apply_matrix needs a finite 3x3 matrix")
    if np.allclose(m[2], (0.0, 0.0, 1.0)):
        return shapely.affinity.affine_transform(
            geom, [m[0, 0], m[0, 1], m[1, 0], m[1, 1], m[0, 2], m[1, 2]]
        )

    def project(coords: np.ndarray) -> np.ndarray:
        homogeneous = np.column_stack([coords, np.ones(len(coords))]) @ m.T
        return homogeneous[:, :2] / homogeneous[:, 2:3]

    return shapely.transform(geom, project)


def measure(geom: BaseGeometry, mpp: float | None) -> dict:
    """Return the measures of ``geom`` in micrometres when ``mpp`` is known, else in pixels.

    Parameters
    ----------
    geom : shapely geometry
        Level-0 pixel coordinates.
    mpp : float or None
        Micrometres per level-0 pixel; ``None`` (or not positive) when the slide does not say.

    Returns
    -------
    dict
        Polygons: ``area_um2``, ``area_mm2``, ``perimeter_um`` (or ``area_px2``,
        ``perimeter_px``); lines: ``length_um`` (or ``length_px``); point sets:
        ``n_points``. A mixed collection gets every key that applies.
    """
    if geom.geom_type in _PUNTAL:  # counted in C: one geometry per point took ~1 s per 100,000
        return {"n_points": len(shapely.get_coordinates(geom))}
    parts = shapely.get_parts(geom)
    polygons = _polygonal_parts(geom)
    lines = [p for p in parts if p.geom_type in _LINEAL]
    points = [p for p in parts if p.geom_type in _PUNTAL]
    result: dict = {}
    if mpp is not None and not mpp > 0:
        mpp = None  # a zero or NaN pixel size is as good as none
    scale = 1.0 if mpp is None else float(mpp)
    if polygons or geom.geom_type in _POLYGONAL:
        area = sum(p.area for p in polygons) * scale**2
        perimeter = sum(p.length for p in polygons) * scale
        if mpp is None:
            result.update(area_px2=area, perimeter_px=perimeter)
        else:
            result.update(area_um2=area, area_mm2=area / 1e6, perimeter_um=perimeter)
    if lines or geom.geom_type in _LINEAL:
        length = sum(line.length for line in lines) * scale
        result["length_px" if mpp is None else "length_um"] = length
    if points or geom.geom_type in _PUNTAL:
        result["n_points"] = sum(not p.is_empty for p in points)
    return result


def simplify_for_display(geom: BaseGeometry, downsample: float) -> BaseGeometry:
    """Return ``geom`` simplified to about half a screen pixel at ``downsample`` (level-0 px/px).

    Point sets are returned unchanged; topology is preserved, so a polygon never
    becomes self-intersecting.
    """
    if geom.geom_type in _PUNTAL:
        return geom
    tolerance = 0.5 * max(float(downsample), 0.0)
    if tolerance <= 0.0:
        return geom
    return shapely.simplify(geom, tolerance, preserve_topology=True)
