"""The landmark tool: clicks on both panes, residuals in the dock, fit applied, JSON saved."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PySide6.QtCore import QPoint, Qt

from her2viewer.gui.landmarks import MARKER_COLOR, LandmarkMode
from her2viewer.registration import Registration


@pytest.fixture()
def pair(panel_window, synthetic_case):
    """The main window showing a synthetic H&E (pane 1) and its IHC (pane 2)."""
    window = panel_window
    assert window.open_slides([synthetic_case / "he.svs", synthetic_case / "ihc.svs"]).wait()
    truth = json.loads((synthetic_case / "truth.json").read_text())
    return window, np.array(truth["transform_ihc_to_he"])


def _click(qtbot, view, x: float, y: float) -> tuple[float, float]:
    """Click the screen pixel nearest level-0 ``(x, y)``; return the level-0 point clicked."""
    sx, sy = (round(v) for v in view.level0_to_screen(x, y))
    assert view.rect().contains(sx, sy)
    qtbot.mouseClick(view, Qt.MouseButton.LeftButton, pos=QPoint(sx, sy))
    return view.screen_to_level0(sx, sy)


def _mode(window) -> LandmarkMode:
    return window.landmarks


def test_clicks_on_both_panes_fit_apply_and_save(pair, qtbot, tmp_path):
    window, ihc_to_he = pair
    he_view, ihc_view = window.views[:2]
    mode = _mode(window)
    assert mode.start() and mode.dock.isVisible()
    ihc_points = np.array([[700, 600], [2300, 700], [2200, 1800], [800, 1700.0]])
    he_points = ihc_points @ ihc_to_he[:2, :2].T + ihc_to_he[:2, 2]
    clicked = []
    for he_xy, ihc_xy in zip(he_points, ihc_points, strict=True):
        clicked.append((_click(qtbot, he_view, *he_xy), _click(qtbot, ihc_view, *ihc_xy)))
        if len(clicked) < 3:
            assert not mode.panel.buttons["Fit"].isEnabled()
    assert [tuple(p) for p in mode.tool.pairs] == clicked
    # a live fit: a residual per pair in the dock, and the RMS
    table = mode.panel.table
    shown = [float(table.item(row, 3).text()) for row in range(table.rowCount())]
    np.testing.assert_allclose(shown, mode.fit.residuals_px, atol=0.051)
    assert "RMS residual" in mode.panel.summary.text()
    assert mode.panel.buttons["Fit"].isEnabled()

    # the markers are drawn on both panes, numbered
    for view, point in ((he_view, he_points[0]), (ihc_view, ihc_points[0])):
        image = view.grab().toImage()
        sx, sy = (round(v) for v in view.level0_to_screen(*point))
        ring = [image.pixelColor(sx + dx, sy) for dx in range(-11, 12)]
        assert any(c.red() > 200 and c.green() < 120 and c.blue() > 120 for c in ring)
        assert MARKER_COLOR.name() == "#ff40a0"

    # Fit links the panes by the affine: close to the true transform (clicks are whole screen px)
    assert mode.apply_fit()
    linked = window.sync.matrix(ihc_view, he_view)
    np.testing.assert_allclose(linked, mode.fit.matrix)
    corners = np.array([[0, 0, 1], [3000, 0, 1], [0, 2400, 1], [3000, 2400, 1.0]]).T
    assert np.hypot(*((linked - ihc_to_he) @ corners)[:2]).max() < 25

    saved = tmp_path / "landmarks.json"
    assert mode.save(saved)
    loaded = Registration.load(saved)
    assert loaded.method == "landmarks"
    np.testing.assert_allclose(loaded.matrix, mode.fit.matrix)
    assert loaded.moving.endswith("ihc.svs") and loaded.fixed.endswith("he.svs")
    assert len(loaded.quality["residuals_px"]) == 4
    assert json.loads(saved.read_text())["error_px"] == pytest.approx(mode.fit.rms_px)


def test_escape_remove_clear_and_done(pair, qtbot):
    window, _ = pair
    he_view, ihc_view = window.views[:2]
    mode = _mode(window)
    previous = he_view.tool
    mode.start()
    _click(qtbot, he_view, 1000, 1000)
    assert mode.tool.pairs[-1][1] is None  # half picked
    qtbot.keyClick(he_view, Qt.Key.Key_Escape)
    assert mode.tool.pairs == []
    _click(qtbot, he_view, 1000, 1000)
    _click(qtbot, ihc_view, 1100, 900)
    _click(qtbot, he_view, 1500, 1200)
    _click(qtbot, ihc_view, 1600, 1100)
    mode.panel.table.selectRow(0)
    mode.panel.buttons["Remove pair"].click()
    assert len(mode.tool.pairs) == 1 and mode.panel.table.rowCount() == 1
    mode.panel.buttons["Clear"].click()
    assert mode.tool.pairs == [] and mode.panel.table.rowCount() == 0
    # a drag pans and places nothing
    qtbot.mousePress(he_view, Qt.MouseButton.LeftButton, pos=QPoint(200, 200))
    qtbot.mouseMove(he_view, QPoint(260, 230))
    qtbot.mouseRelease(he_view, Qt.MouseButton.LeftButton, pos=QPoint(260, 230))
    assert mode.tool.pairs == []
    assert not mode.save(window.views[0].slide.info.path + ".json")  # no fit yet: refused
    assert "3 or more pairs" in window.errors[-1]
    qtbot.keyClick(ihc_view, Qt.Key.Key_Escape)  # nothing half picked: leaves the mode
    assert not mode.active and not mode.dock.isVisible()
    assert he_view.tool is previous and mode.tool is None
    assert all(
        not view.vector_painters or mode.tool not in view.vector_painters for view in window.views
    )


def test_collinear_clicks_say_so_and_cannot_be_applied(pair, qtbot):
    window, _ = pair
    he_view, ihc_view = window.views[:2]
    mode = _mode(window)
    mode.start()
    for x in (100, 200, 300):  # one screen row: exactly collinear level-0 points
        for view in (he_view, ihc_view):
            qtbot.mouseClick(view, Qt.MouseButton.LeftButton, pos=QPoint(x, 200))
    assert mode.fit is None and "collinear" in mode.panel.summary.text()
    assert not mode.apply_fit() and "3 or more pairs" in window.errors[-1]


def test_another_slide_ends_the_mode(pair, synthetic_case):
    window, _ = pair
    he_view, ihc_view = window.views[:2]
    mode = _mode(window)
    previous = he_view.tool
    mode.start()
    tool = mode.tool
    assert window.open_in_pane(synthetic_case.parent / "case001" / "ihc.svs", 1).wait()
    assert not mode.active and he_view.tool is previous
    assert ihc_view.tool is not tool and tool not in ihc_view.vector_painters
