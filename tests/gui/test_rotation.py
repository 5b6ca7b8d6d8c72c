"""Rotation and flip of a pane: the viewport maths, the keys and dial, the synced pane,
the cursor mirror and the readout (issue 19)."""

import math

import numpy as np
import pytest

pytest.importorskip("PySide6")

from PySide6.QtCore import QPointF, Qt  # noqa: E402

from her2viewer.viewport import (  # noqa: E402
    Viewport,
    ViewState,
    map_state,
    relative_transform,
)

SCREEN = (1280, 720)


def _viewport(state: ViewState) -> Viewport:
    viewport = Viewport(80_000, 60_000, *SCREEN)
    viewport.state = state
    return viewport


@pytest.mark.parametrize("angle", [0.0, 0.7])
def test_a_flipped_view_mirrors_the_screen_and_round_trips(angle):
    plain = _viewport(ViewState(12_000.0, 9_000.0, 3.5, angle))
    flipped = _viewport(ViewState(12_000.0, 9_000.0, 3.5, angle, flip=True))
    for sx, sy in [(0.0, 0.0), (640.0, 360.0), (1000.0, 77.0)]:
        point = flipped.screen_to_l0(sx, sy)
        assert flipped.l0_to_screen(*point) == pytest.approx((sx, sy))
        assert plain.screen_to_l0(SCREEN[0] - sx, sy) == pytest.approx(point)


def test_zoom_and_pan_of_a_flipped_rotated_view_keep_their_promises():
    viewport = _viewport(ViewState(20_000.0, 15_000.0, 8.0, 0.4, flip=True))
    anchor = viewport.screen_to_l0(300.0, 200.0)
    viewport.state = viewport.zoomed_at(2.0, 300.0, 200.0)
    assert viewport.state.flip and viewport.state.angle == 0.4
    assert viewport.screen_to_l0(300.0, 200.0) == pytest.approx(anchor)
    before = viewport.l0_to_screen(21_000.0, 15_500.0)
    viewport.state = viewport.panned_by(30.0, -12.0)
    after = viewport.l0_to_screen(21_000.0, 15_500.0)
    assert (after[0] - before[0], after[1] - before[1]) == pytest.approx((30.0, -12.0))


def test_rotation_degrees_are_clockwise_on_the_screen():
    state = ViewState(0.0, 0.0, 1.0).rotated_to(90.0)
    assert state.rotation_degrees == pytest.approx(90.0)
    viewport = _viewport(ViewState(40_000.0, 30_000.0, 1.0).rotated_to(90.0))
    right = viewport.l0_to_screen(40_010.0, 30_000.0)  # a point right of the centre...
    assert right == pytest.approx((640.0, 370.0))  # ...shows below it: turned clockwise
    assert state.rotated_to(-5.0).rotation_degrees == pytest.approx(355.0)


def test_a_mirrored_registration_shows_the_same_tissue_under_the_same_pixel():
    turn = 0.5
    matrix = np.array(
        [[math.cos(turn), math.sin(turn), 900.0], [math.sin(turn), -math.cos(turn), 40_000.0]]
        + [[0.0, 0.0, 1.0]]
    )
    source = _viewport(ViewState(10_000.0, 8_000.0, 4.0, 0.3, flip=True))
    target = Viewport(80_000, 60_000, *SCREEN)
    target.state = map_state(source.state, matrix)
    assert target.state.flip is False
    for sx, sy in [(0.0, 0.0), (800.0, 500.0), (1234.0, 77.0)]:
        mapped = matrix @ [*source.screen_to_l0(sx, sy), 1.0]
        assert target.screen_to_l0(sx, sy) == pytest.approx(tuple(mapped[:2]))


def test_relative_sync_keeps_the_panes_turned_as_they_were_linked():
    source = ViewState(1_000.0, 2_000.0, 2.0, 0.4)
    target = ViewState(5_000.0, 4_000.0, 8.0, -1.0, flip=True)
    mapped = map_state(source, relative_transform(source, target))
    assert (mapped.cx, mapped.cy, mapped.downsample, mapped.angle, mapped.flip) == pytest.approx(
        (5_000.0, 4_000.0, 8.0, -1.0, True)
    )


@pytest.fixture()
def pair_window(panel_window, synthetic_case):
    window = panel_window
    opening = window.open_slides([synthetic_case / "he.svs", synthetic_case / "ihc.svs"])
    assert opening.wait()
    return window


def _trigger(window, text: str) -> None:
    window.rotation.actions[[a.text() for a in window.rotation.actions].index(text)].trigger()


def test_keys_and_dial_turn_the_active_pane_and_the_synced_pane_follows(pair_window, qtbot):
    window = pair_window
    first, second = window.views
    window.set_active(first)
    first.setFocus()
    qtbot.keyClick(first, Qt.Key.Key_BracketRight)  # ] turns 5 degrees clockwise
    assert first.state.rotation_degrees == pytest.approx(5.0)
    assert second.state.rotation_degrees == pytest.approx(5.0)  # the synced pane follows
    assert window.rotation.dial.value() == 5
    _trigger(window, "Rotate anticlockwise 90°")
    assert first.state.rotation_degrees == pytest.approx(275.0)
    window.rotation.dial.setValue(120)  # the dial, as a user turns it
    assert first.state.rotation_degrees == pytest.approx(120.0)
    assert second.state.rotation_degrees == pytest.approx(120.0)
    window.rotation.flip_action.trigger()
    assert first.state.flip and second.state.flip
    assert window.rotation.flip_action.isChecked()
    _trigger(window, "&Reset rotation")
    assert first.state.rotation_degrees == pytest.approx(0.0) and first.state.flip


def test_after_rotating_the_readout_and_the_cursor_mirror_stay_right(pair_window, qtbot):
    window = pair_window
    first, second = window.views
    window.set_active(first)
    window.rotation.rotate_to(37.0)
    window.rotation.flip()
    downsample = first.state.downsample
    qtbot.waitUntil(first.fully_loaded, timeout=20000)
    screen = QPointF(round(first.width() * 0.4), round(first.height() * 0.6))
    qtbot.mouseMove(first, screen.toPoint())
    x, y = first.screen_to_level0(screen.x(), screen.y())
    mpp = first.slide.info.mpp_x
    text = window._status["pos"].text()
    assert f"x {x:,.0f}  y {y:,.0f} px (level 0)" in text
    assert f"x {x * mpp:,.1f}  y {y * mpp:,.1f} µm" in text
    assert "RGB" in text and "OD" in text
    assert first.level0_to_screen(x, y) == pytest.approx((screen.x(), screen.y()), abs=1e-6)
    # the other pane's crosshair sits on the same screen point (same tissue, in step)
    assert second.level0_to_screen(*second.crosshair) == pytest.approx(
        (screen.x(), screen.y()), abs=1.0
    )
    assert first.state.downsample == downsample  # the scale bar's number did not change


def test_controls_are_disabled_without_a_slide_and_say_why(panel_window):
    rotation = panel_window.rotation
    assert not rotation.dial.isEnabled()
    assert "open a slide first" in rotation.dial.toolTip()
    assert all(not a.isEnabled() and "open a slide" in a.toolTip() for a in rotation.actions)


def test_the_readout_gives_level0_pixels_alone_without_a_pixel_size():
    from her2viewer.gui.readout import coordinates_text

    assert coordinates_text(None, 1234.4, 56.0) == "x 1,234  y 56 px (level 0)"
    assert coordinates_text(0.5, 1234.4, 56.0).endswith("x 617.2  y 28.0 µm")
