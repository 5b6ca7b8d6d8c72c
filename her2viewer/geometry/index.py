"""A spatial index over a fixed list of geometries: visible-box queries and click hit-tests."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry


class SpatialIndex:
    """An STR-tree over ``geometries``; answers are indices into that list.

    Parameters
    ----------
    geometries : sequence of shapely geometries
        Level-0 pixel coordinates; the list is fixed (build a new index after an edit).

    Attributes
    ----------
    geometries : numpy.ndarray
        The indexed geometries (object array), in the order given.
    """

    def __init__(self, geometries: Sequence[BaseGeometry]):
        self.geometries = np.asarray(list(geometries), dtype=object)
        self._tree = shapely.STRtree(self.geometries)
        self._areas = shapely.area(self.geometries) if len(self.geometries) else np.zeros(0)

    def __len__(self) -> int:
        return len(self.geometries)

    def in_box(self, x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
        """Return the sorted indices of the geometries intersecting ``[x0, x1] x [y0, y1]``."""
        box = shapely.box(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))
        return np.sort(self._tree.query(box, predicate="intersects"))

    def at_point(self, x: float, y: float, tolerance: float = 0.0) -> list[int]:
        """Return the indices of the geometries hit at ``(x, y)``, smallest area first.

        A polygon is hit when the point lies inside it or within ``tolerance`` of
        its outline; points and lines only within ``tolerance`` (level-0 pixels).
        Ties (points and lines have no area) go to the nearest geometry first.
        """
        point = shapely.Point(x, y)
        if tolerance > 0.0:
            hits = self._tree.query(point, predicate="dwithin", distance=float(tolerance))
        else:
            hits = self._tree.query(point, predicate="intersects")
        if len(hits) == 0:
            return []
        distances = shapely.distance(self.geometries[hits], point)
        order = np.lexsort((hits, distances, self._areas[hits]))
        return [int(i) for i in hits[order]]
