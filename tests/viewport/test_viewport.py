"""The viewport's maths, without Qt: matrices, fit, zoom, clamps, levels, tile plan, mapping."""

import math
import subprocess
import sys

import numpy as np
import pytest

from her2viewer.viewport import (
    FINER,
    MIN_DOWNSAMPLE,
    RING,
    TILE_SIZE,
    VISIBLE,
    Viewport,
    ViewState,
    map_state,
    relative_transform,
    tile_region,
)

SLIDE = (40_000, 30_000)
SCREEN = (1600, 1000)


def _viewport(state: ViewState | None = None) -> Viewport:
    viewport = Viewport(*SLIDE, *SCREEN)
    viewport.set_state(state or viewport.fit_state(), keep_fit=state is None)
    return viewport


def test_the_viewport_imports_without_qt():
    code = "import sys, her2viewer.viewport; print(any('PySide6' in m for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("angle", [0.0, 0.7, -2.5])
def test_matrix_round_trips_level0_and_screen(angle):
    viewport = _viewport(ViewState(12_000.0, 9_000.0, 3.5, angle))
    for point in [(0.0, 0.0), (12_000.0, 9_000.0), (31_234.5, 123.25)]:
        assert viewport.screen_to_l0(*viewport.l0_to_screen(*point)) == pytest.approx(point)
    assert viewport.l0_to_screen(12_000.0, 9_000.0) == pytest.approx((800.0, 500.0))
    matrix = viewport.l0_to_screen_matrix()
    assert abs(np.linalg.det(matrix[:2, :2])) == pytest.approx(1 / 3.5**2)


def test_fit_shows_the_whole_slide_centred():
    viewport = _viewport()
    state = viewport.state
    assert (state.cx, state.cy) == (SLIDE[0] / 2, SLIDE[1] / 2)
    assert state.downsample == pytest.approx(max(SLIDE[0] / SCREEN[0], SLIDE[1] / SCREEN[1]) * 1.02)
    assert viewport.l0_visible_bounds() == (0.0, 0.0, float(SLIDE[0]), float(SLIDE[1]))


@pytest.mark.parametrize("angle", [0.0, 0.4])
def test_zoom_about_a_point_keeps_that_point_fixed(angle):
    viewport = _viewport(ViewState(20_000.0, 15_000.0, 8.0, angle))
    anchor = viewport.screen_to_l0(300.0, 200.0)
    assert viewport.set_state(viewport.zoomed_at(2.0, 300.0, 200.0))
    assert viewport.state.downsample == pytest.approx(4.0)
    assert viewport.screen_to_l0(300.0, 200.0) == pytest.approx(anchor)


def test_zoom_is_clamped_to_the_scan_pixels_and_four_fitted_views():
    viewport = _viewport(ViewState(20_000.0, 15_000.0, 2.0))
    viewport.set_state(viewport.zoomed_at(100.0, 800.0, 500.0))
    assert viewport.state.downsample == MIN_DOWNSAMPLE
    viewport.set_state(viewport.zoomed_at(1e-6, 800.0, 500.0))
    assert viewport.state.downsample == pytest.approx(viewport.fit_downsample() * 4)
    viewport.set_state(ViewState(20_000.0, 15_000.0, 0.01), clamp=False)  # synced: unclamped
    assert viewport.state.downsample == 0.01


def test_panning_keeps_the_slide_in_sight():
    viewport = _viewport(ViewState(20_000.0, 15_000.0, 2.0))
    for _ in range(50):
        viewport.set_state(viewport.panned_by(-5_000.0, -5_000.0))
    margin_x, margin_y = SCREEN[0] / 4 * 2.0, SCREEN[1] / 4 * 2.0
    assert viewport.state.cx == SLIDE[0] + margin_x and viewport.state.cy == SLIDE[1] + margin_y
    x0, y0, x1, y1 = viewport.l0_visible_bounds()
    assert x1 - x0 >= SCREEN[0] / 4 * 2.0 - 1e-6 and y1 - y0 >= SCREEN[1] / 4 * 2.0 - 1e-6


@pytest.mark.parametrize("bad", [math.nan, math.inf, -1.0, 0.0])
def test_a_state_that_is_not_finite_is_ignored(bad):
    viewport = _viewport()
    before = viewport.state
    assert not viewport.set_state(ViewState(100.0, 100.0, bad))
    assert not viewport.set_state(ViewState(math.nan, 100.0, 2.0, bad))
    assert viewport.state == before and viewport.keep_fit


@pytest.mark.parametrize(
    ("downsample", "level"), [(1.0, 0), (1.41, 0), (1.42, 1), (2.0, 1), (3.0, 2), (1e9, 8)]
)
def test_target_level_is_the_nearest_in_log_scale(downsample, level):
    viewport = _viewport(ViewState(20_000.0, 15_000.0, downsample))
    viewport.state = ViewState(20_000.0, 15_000.0, downsample)  # beyond the zoom clamp too
    assert viewport.levels == 9  # 40000 px in 256 px tiles: 2**8 * 256 >= 40000
    assert viewport.target_level() == level


@pytest.mark.parametrize(
    "state",
    [ViewState(20_000.0, 15_000.0, 3.0), ViewState(200.0, 39_000.0, 1.0), ViewState(0, 0, 5, 1)],
)
def test_tile_plan_covers_the_visible_bounds_exactly_once_per_level(state):
    viewport = _viewport(state)
    plan = viewport.tile_plan()
    places = [(t.level, t.col, t.row) for t in plan]
    assert len(places) == len(set(places))
    assert [t.priority for t in plan] == sorted(t.priority for t in plan)
    level = viewport.target_level()
    visible = [t for t in plan if t.rank == VISIBLE]
    assert {t.level for t in visible} == {level}
    x0, y0, x1, y1 = viewport.l0_visible_bounds()
    regions = [tile_region(level, t.col, t.row, *SLIDE) for t in visible]
    assert sum(w * h for _, _, w, h in regions) >= (x1 - x0) * (y1 - y0)
    rng = np.random.default_rng(0)
    for px, py in zip(rng.uniform(x0, x1, 500), rng.uniform(y0, y1, 500), strict=True):
        inside = [x <= px < x + w and y <= py < y + h for x, y, w, h in regions]
        assert sum(inside) == 1
    span = TILE_SIZE << level
    ring = {(t.col, t.row) for t in plan if t.rank == RING}
    assert ring and all(
        x0 - 2 * span < c * span < x1 + span and y0 - 2 * span < r * span < y1 + span
        for c, r in ring
    )
    assert all(t.level == level - 1 for t in plan if t.rank == FINER)


def test_tiles_meet_on_screen_without_gaps_or_overlaps():
    viewport = _viewport(ViewState(12_345.6, 9_876.5, 2.37))
    level = viewport.target_level()
    places = viewport.tiles_in(level, viewport.l0_visible_bounds())
    screen_rect = viewport.screen_rect_mapper()
    rects = {(c, r): screen_rect(*tile_region(level, c, r, *SLIDE)) for c, r in places}
    for (c, r), (left, top, width, height) in rects.items():
        if (c + 1, r) in rects:
            assert rects[c + 1, r][0] == left + width
        if (c, r + 1) in rects:
            assert rects[c, r + 1][1] == top + height
    left, top, _, _ = rects[places[0]]
    x, y, _, _ = tile_region(level, *places[0], *SLIDE)
    assert (left, top) == pytest.approx(viewport.l0_to_screen(x, y), abs=0.5)


def test_an_empty_view_plans_no_tiles():
    viewport = _viewport()
    viewport.state = ViewState(-1e6, -1e6, 1.0)
    assert viewport.tile_plan() == []


def test_panes_map_through_an_affine_so_the_same_tissue_is_under_the_same_pixel():
    turn, scale = 0.3, 1.7
    matrix = np.array(
        [
            [scale * math.cos(turn), -scale * math.sin(turn), 500.0],
            [scale * math.sin(turn), scale * math.cos(turn), -300.0],
            [0.0, 0.0, 1.0],
        ]
    )
    source = _viewport(ViewState(10_000.0, 8_000.0, 4.0, 0.2))
    target = Viewport(80_000, 60_000, *SCREEN)
    target.state = map_state(source.state, matrix)
    assert target.state.downsample == pytest.approx(4.0 * scale)
    assert target.state.angle == pytest.approx(0.2 + turn)
    for sx, sy in [(0.0, 0.0), (800.0, 500.0), (1234.0, 77.0)]:
        mapped = matrix @ [*source.screen_to_l0(sx, sy), 1.0]
        assert target.screen_to_l0(sx, sy) == pytest.approx(tuple(mapped[:2]))


def test_relative_transform_maps_one_view_onto_the_other():
    source = ViewState(1_000.0, 2_000.0, 2.0)
    target = ViewState(5_000.0, 4_000.0, 8.0)
    mapped = map_state(source, relative_transform(source, target))
    assert (mapped.cx, mapped.cy, mapped.downsample) == pytest.approx((5_000.0, 4_000.0, 8.0))
