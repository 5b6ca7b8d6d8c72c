"""PointsLayer (classed dots found by binary search, hidden when zoomed out) and DensityLayer
(a heatmap shown only when zoomed out)."""

from __future__ import annotations

import numpy as np
import pytest

from her2viewer.overlay.layers import OverlayError
from her2viewer.overlay.points import DensityLayer, PointsLayer

COLORS = {0: (0, 0, 255), 1: (255, 0, 0)}


def _layer(n=5000, seed=0, **options):
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 10_000, (n, 2))
    return PointsLayer("cells", xy=xy, classes=rng.integers(0, 2, n), colors=COLORS,
                       radius_um=4, mpp=0.5, **options)  # fmt: skip


def test_in_box_equals_a_brute_force_search():
    layer = _layer()
    for box in [(0, 0, 500, 500), (1234, 5678, 3000, 9000), (9990, 0, 10_000, 10_000)]:
        x0, y0, x1, y1 = box
        xy = layer.xy
        truth = np.flatnonzero((xy[:, 0] >= x0) & (xy[:, 0] <= x1)
                               & (xy[:, 1] >= y0) & (xy[:, 1] <= y1))  # fmt: skip
        assert sorted(layer.in_box(*box).tolist()) == truth.tolist()


def test_render_draws_the_class_colour_at_each_point_in_the_tile():
    xy = [[50, 50], [150, 60], [5000, 5000]]
    layer = PointsLayer("cells", xy=xy, classes=[0, 1, 1], colors=COLORS, radius_um=5)
    rgba = layer.render((0, 0, 200, 100), (200, 100))
    assert tuple(rgba[50, 50]) == (0, 0, 255, 255)
    assert tuple(rgba[60, 150]) == (255, 0, 0, 255)
    assert rgba[..., 3].sum() < 200 * 100 * 255 * 0.05  # two small dots, nothing else
    assert layer.render((1000, 1000, 200, 200), (200, 200)) is None


def test_zoomed_out_past_max_downsample_draws_nothing():
    layer = _layer(max_downsample=4.0)
    assert layer.render((0, 0, 1000, 1000), (500, 500)) is not None  # 2 px per screen px
    assert layer.render((0, 0, 10_000, 10_000), (500, 500)) is None  # 20


def test_value_at_describes_the_nearest_point_within_reach():
    layer = _layer(n=3, describe=lambda i: f"cell {i}")
    x, y = layer.xy[1]
    assert layer.value_at(x + 3, y - 3) == "cell 1"
    assert layer.nearest(x + 100, y) != 1  # beyond twice the dot radius (8 um = 16 px)
    plain = PointsLayer("dots", xy=[[10, 10]], classes=[1], class_names={1: "positive"})
    assert plain.value_at(11, 10) == "positive" and plain.value_at(40, 40) is None


def test_recolouring_bumps_the_version_and_bad_input_is_refused():
    layer = _layer(n=10)
    version = layer.version
    layer.set_display(colors={0: (1, 2, 3), 1: (4, 5, 6)})
    assert layer.version == version + 1
    with pytest.raises(OverlayError):
        PointsLayer("bad", xy=np.zeros((3, 2)), classes=[0, 1])


def test_density_layer_only_below_its_zoom():
    layer = DensityLayer("density", values=np.ones((10, 10)), downsample=100, min_downsample=8)
    assert layer.render((0, 0, 1000, 1000), (100, 100)) is not None  # 10 px per screen px
    assert layer.render((0, 0, 400, 400), (200, 200)) is None  # 2


def test_outlines_replace_the_dots_when_zoomed_in():
    square = np.array([[40, 40], [60, 40], [60, 60], [40, 60]], np.float32)
    layer = PointsLayer("cells", xy=[[50, 50]], classes=[1], colors=COLORS, radius_um=3,
                        outline_xy=square, outline_offsets=np.array([0, 4]),
                        outline_up_to=1.0)  # fmt: skip
    fine = layer.render((0, 0, 100, 100), (100, 100))  # 1 level-0 px per screen px
    assert tuple(fine[40, 50]) == (255, 0, 0, 255)  # on the outline
    assert fine[50, 50, 3] == 0  # its inside is left clear
    coarse = layer.render((0, 0, 200, 200), (100, 100))  # 2: a dot
    assert tuple(coarse[25, 25]) == (255, 0, 0, 255)
    # a tile that holds only part of the outline still draws it (the reach pads the search)
    edge = layer.render((0, 0, 45, 100), (45, 100))
    assert edge is not None and edge[50, 40, 3] > 0
    with pytest.raises(OverlayError):
        PointsLayer("bad", xy=[[0, 0], [1, 1]], outline_xy=square, outline_offsets=[0, 4])
