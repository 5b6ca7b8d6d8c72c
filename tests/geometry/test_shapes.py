"""Shapes: repair, construction, matrices against numpy, measures with and without mpp."""

import numpy as np
import pytest
import shapely
from shapely.geometry import LineString, MultiPoint, Point, Polygon

from her2viewer.geometry.shapes import (
    apply_matrix,
    ellipse,
    measure,
    rectangle,
    repair,
    simplify_for_display,
)


def test_repair_keeps_polygonal_input_polygonal():
    bow_tie = Polygon([(0, 0), (10, 10), (10, 0), (0, 10)])
    fixed = repair(bow_tie)
    assert fixed.is_valid and fixed.geom_type == "MultiPolygon" and fixed.area == 50
    collapsed = repair(Polygon([(0, 0), (5, 5), (10, 10)]))
    assert collapsed.geom_type == "Polygon" and collapsed.is_empty
    valid = rectangle(0, 0, 2, 2)
    assert repair(valid) is valid


def test_rectangle_and_ellipse():
    rect = rectangle(10, 20, 100, 50)
    assert rect.bounds == (10, 20, 110, 70) and rect.area == 5000
    oval = ellipse(0, 0, 20, 10, segments=720)
    assert oval.area == pytest.approx(np.pi * 200, rel=1e-3)
    assert oval.bounds == pytest.approx((-20, -10, 20, 10), abs=1e-6)


@pytest.mark.parametrize(
    "matrix",
    [
        [[0.9, -0.2, 15.0], [0.3, 1.1, -4.0], [0.0, 0.0, 1.0]],
        [[1.0, 0.1, 5.0], [0.05, 0.95, 2.0], [1e-4, -2e-4, 1.0]],
    ],
)
def test_apply_matrix_matches_numpy(matrix):
    matrix = np.array(matrix)
    geom = Polygon([(0, 0), (100, 10), (80, 120), (-5, 60)])
    moved = apply_matrix(geom, matrix)
    coords = shapely.get_coordinates(geom)
    homogeneous = np.column_stack([coords, np.ones(len(coords))]) @ matrix.T
    expected = homogeneous[:, :2] / homogeneous[:, 2:]
    np.testing.assert_allclose(shapely.get_coordinates(moved), expected, atol=1e-9)
    assert apply_matrix(Point(3, 4), matrix).geom_type == "Point"


def test_apply_matrix_refuses_a_bad_matrix():
    with pytest.raises(ValueError, match="3x3"):
        apply_matrix(Point(0, 0), np.eye(2))


def test_measure_with_and_without_mpp():
    rect = rectangle(0, 0, 100, 50)
    assert measure(rect, 0.5) == pytest.approx(
        {"area_um2": 1250.0, "area_mm2": 0.00125, "perimeter_um": 150.0}
    )
    assert measure(rect, None) == {"area_px2": 5000.0, "perimeter_px": 300.0}
    assert measure(rect, 0.0) == measure(rect, float("nan")) == measure(rect, None)
    line = LineString([(0, 0), (30, 40)])
    assert measure(line, 0.25) == {"length_um": 12.5}
    assert measure(line, None) == {"length_px": 50.0}
    assert measure(MultiPoint([(0, 0), (1, 1), (2, 2)]), 0.5) == {"n_points": 3}
    holed = rect.difference(rectangle(10, 10, 10, 10))
    assert measure(holed, 1.0)["area_um2"] == 4900.0


def test_simplify_for_display_drops_sub_pixel_detail_only():
    wiggly = Polygon([(x, 0.1 * (x % 2)) for x in range(0, 1001)] + [(1000, 500), (0, 500)])
    coarse = simplify_for_display(wiggly, 16.0)
    assert len(coarse.exterior.coords) < 10 and coarse.is_valid
    assert simplify_for_display(wiggly, 0.01).symmetric_difference(wiggly).area < 1.0
    points = MultiPoint([(0, 0), (0.1, 0.1)])
    assert simplify_for_display(points, 100.0) is points
