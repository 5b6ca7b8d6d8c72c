"""SpatialIndex against brute-force shapely on random data."""

import numpy as np
import pytest
import shapely
from shapely.geometry import LineString, Point

from her2viewer.geometry.index import SpatialIndex
from her2viewer.geometry.shapes import ellipse, rectangle


@pytest.fixture(scope="module")
def scene():
    rng = np.random.default_rng(7)
    geometries = []
    for _ in range(400):
        x, y = rng.uniform(0, 2000, 2)
        kind = rng.integers(3)
        if kind == 0:
            geometries.append(rectangle(x, y, *rng.uniform(5, 300, 2)))
        elif kind == 1:
            geometries.append(ellipse(x, y, *rng.uniform(5, 150, 2)))
        else:
            geometries.append(
                Point(x, y) if rng.random() < 0.5 else LineString([(x, y), (x + 50, y + 30)])
            )
    return geometries, SpatialIndex(geometries), rng


def test_in_box_matches_brute_force(scene):
    geometries, index, rng = scene
    for _ in range(50):
        x0, y0 = rng.uniform(-100, 2000, 2)
        x1, y1 = x0 + rng.uniform(0, 600), y0 + rng.uniform(0, 600)
        box = shapely.box(x0, y0, x1, y1)
        expected = [i for i, g in enumerate(geometries) if g.intersects(box)]
        assert index.in_box(x1, y1, x0, y0).tolist() == expected


@pytest.mark.parametrize("tolerance", [0.0, 4.0])
def test_at_point_matches_brute_force_smallest_area_first(scene, tolerance):
    geometries, index, rng = scene
    for _ in range(200):
        x, y = rng.uniform(0, 2000, 2)
        point = Point(x, y)
        expected = sorted(
            (g.area, g.distance(point), i)
            for i, g in enumerate(geometries)
            if g.distance(point) <= tolerance
        )
        assert index.at_point(x, y, tolerance) == [i for _, _, i in expected]


def test_points_and_lines_are_hit_within_the_tolerance_only():
    index = SpatialIndex([Point(10, 10), LineString([(0, 20), (100, 20)]), rectangle(0, 0, 50, 50)])
    assert index.at_point(12, 10) == [2]
    assert index.at_point(12, 10, tolerance=3) == [0, 2]
    assert index.at_point(50, 21, tolerance=2) == [1, 2]
    assert index.at_point(500, 500, tolerance=2) == []


def test_empty_index():
    index = SpatialIndex([])
    assert len(index) == 0 and index.in_box(0, 0, 10, 10).size == 0 and index.at_point(1, 1) == []
