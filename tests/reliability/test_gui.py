"""Issue 13, items 21-25: the viewer under a first day's use (offscreen, pytest-qt)."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QRect
from PySide6.QtWidgets import QDockWidget, QToolBar

from her2viewer.gui.app import screenshot
from her2viewer.gui.her2net_panel import attach_her2net_panel
from her2viewer.gui.ihc_panel import attach_ihc_panel
from her2viewer.overlay.layers import HeatmapLayer
from her2viewer.overlay.scalebar import scale_bar


@pytest.fixture()
def window(panel_window):
    return panel_window


def _her2net_layers(view) -> list[str]:
    return [layer.name for layer in view.layers if layer.name.startswith("HER2Net")]


# -- item 21: results belong to the slide they were computed on ------------------------------
def test_another_slide_drops_her2net_results_and_her2net_still_runs(
    window, synthetic_cohort, qtbot
):
    first, second = (synthetic_cohort.parent / f"case00{i}" / "he.svs" for i in (0, 1))
    panel = attach_her2net_panel(window)
    assert window.open_in_pane(str(first), 0).wait()
    panel.run()
    qtbot.waitUntil(lambda: panel.result is not None, timeout=120_000)
    assert _her2net_layers(window.views[0]) and panel.widget.table.rowCount() > 0

    assert window.open_in_pane(str(second), 0).wait()  # used to raise list.remove(x): x not in list
    assert panel.result is None and panel.widget.bar.value is None
    assert panel.widget.table.rowCount() == 0 and panel.layers == []
    assert panel.status.text() == "No result yet." and panel.progress.value() == 0

    panel.run()  # HER2Net still works, on the new slide, and its result is shown
    assert panel.progress.value() == 0  # a new run starts at 0, not at the last run's 100%
    qtbot.waitUntil(lambda: panel.job is None, timeout=120_000)
    assert panel.status.text().startswith("HER2 ") and not window.errors
    assert "case001" in panel.result.slide
    assert len(_her2net_layers(window.views[0])) == 2


def test_a_running_job_of_the_old_slide_is_cancelled_and_never_shown(
    window, synthetic_cohort, qtbot
):
    first, second = (synthetic_cohort.parent / f"case00{i}" / "he.svs" for i in (2, 3))
    panel = attach_her2net_panel(window)
    assert window.open_in_pane(str(first), 0).wait()
    panel.run()
    old = panel.job
    assert window.open_in_pane(str(second), 0).wait()
    assert panel.job is None and panel.run_button.isEnabled()
    assert not panel.cancel_button.isEnabled()
    qtbot.waitUntil(lambda: old.state not in ("pending", "running"), timeout=120_000)
    qtbot.wait(300)  # polls that would have shown it
    assert panel.result is None and not _her2net_layers(window.views[0])
    assert panel.status.text() == "No result yet."


def test_ihc_registration_goes_with_the_he_slide(window, synthetic_cohort, qtbot):
    case = synthetic_cohort.parent / "case000"
    panel = attach_ihc_panel(window)
    assert window.open_in_pane(str(case / "he.svs"), 0).wait()
    assert window.open_in_pane(str(case / "ihc.svs"), 1).wait()
    panel.run()
    qtbot.waitUntil(lambda: panel.result is not None, timeout=180_000)
    assert window.sync.has_transform(window.views[1]) and window.views[1].layers

    other = synthetic_cohort.parent / "case001" / "he.svs"
    assert window.open_in_pane(str(other), 0).wait()
    assert not window.sync.has_transform(window.views[1])  # the old registration is gone
    assert window.views[1].layers == [] and panel.layers == []
    assert panel.result is None and panel.widget.registration is None
    assert panel.status.text() == "No result yet."


# -- item 24: the window lays out cleanly from 1280x720 up -----------------------------------
def _attach_everything(window) -> None:
    from her2viewer.gui.clam_panel import attach_clam_panel
    from her2viewer.gui.evaluation_panel import attach_evaluation_panel
    from her2viewer.gui.grading_panel import attach_grading_panel
    from her2viewer.gui.radiology_panel import attach_radiology_panel

    attach_her2net_panel(window)
    attach_ihc_panel(window)
    attach_clam_panel(window)
    attach_grading_panel(window)
    attach_radiology_panel(window)
    attach_evaluation_panel(window)


def _shown(widget) -> bool:
    """Shown on screen (Qt keeps the docks behind a tab "visible", moved out of the window)."""
    return widget.isVisible() and not widget.visibleRegion().isEmpty()


def _parts(window) -> dict[str, QRect]:
    """Window-coordinate rectangles of what is shown: docks, bars, the central area."""
    parts = {"central": window.centralWidget().geometry(), "status": window.statusBar().geometry()}
    parts["menu"] = window.menuBar().geometry()
    for bar in window.findChildren(QToolBar) + window.findChildren(QDockWidget):
        if _shown(bar):
            parts[bar.objectName()] = bar.geometry()
    return parts


def test_window_lays_out_cleanly_from_1280x720_up(window, synthetic_case, cmu_svs, qtbot, tmp_path):
    from her2viewer.gui.mainwindow import DOCK_WIDTH

    _attach_everything(window)
    # at the fixture's 900 px the analysis docks shown with a slide squeeze the column to 250 px
    # (once events run, as they do while a slide opens on its worker): start from 1280 px
    window.resize(1280, 720)
    assert window.open_in_pane(str(cmu_svs), 0).wait()  # label, macro and thumbnail images
    assert window.open_in_pane(str(synthetic_case / "ihc.svs"), 1).wait()
    heat = HeatmapLayer("scores", values=np.random.default_rng(0).random((24, 30)), downsample=100)
    window.add_layer(heat, 1)
    window.set_active(window.views[1])
    window.layers_panel.list.setCurrentRow(0)  # a heatmap shows colormap, range and legend
    qtbot.waitUntil(lambda: window.properties.images.count() == 3, timeout=10_000)
    for size in [(1280, 720), (1366, 768), (1920, 1080)]:
        window.resize(*size)
        screenshot(window, tmp_path / f"window_{size[0]}x{size[1]}.png", timeout=10)
        assert window.size().toTuple() == size  # it grew 75 px on a heatmap, to 841 px high
        for view in window.views:  # both fitted panes stay fitted (the first one zoomed in)
            assert view.state.downsample == pytest.approx(view.fit_downsample())
        _assert_no_overlap(window, size)
        docks = {d.objectName(): d.width() for d in window.findChildren(QDockWidget) if _shown(d)}
        assert set(docks.values()) == {DOCK_WIDTH}  # one column, the slides take the room
        assert window.open_in_pane(str(synthetic_case / "he.svs"), 0).wait()  # another slide
        assert window.open_in_pane(str(cmu_svs), 0).wait()
        qtbot.wait(100)
        after = {d.objectName(): d.width() for d in window.findChildren(QDockWidget) if _shown(d)}
        assert after == docks and window.size().toTuple() == size  # the dock width stays


def _assert_no_overlap(window, size) -> None:
    parts = _parts(window)
    frame = QRect(0, 0, *size)
    for name, rect in parts.items():
        assert frame.contains(rect), (name, rect, size)
    names = list(parts)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert not parts[a].intersects(parts[b]), (a, parts[a], b, parts[b], size)


# -- item 25: controls that say what they can do ---------------------------------------------
@pytest.fixture()
def no_mpp_png(tmp_path):
    """A wide flat image that records neither pixel size nor objective power."""
    from PIL import Image

    image = np.full((300, 2000, 3), 235, np.uint8)
    image[100:200, 200:1800] = (200, 120, 170)
    path = tmp_path / "flat.png"
    Image.fromarray(image).save(path)
    return path


def test_presets_that_cannot_apply_are_disabled_and_say_why(window, cmu_svs, no_mpp_png):
    from her2viewer.gui.app import make_app

    palette = make_app().palette()
    button_text = palette.ColorRole.ButtonText
    disabled = palette.color(palette.ColorGroup.Disabled, button_text)
    assert disabled != palette.color(palette.ColorGroup.Active, button_text)  # looks disabled
    assert window.open_in_pane(str(cmu_svs), 0).wait()  # a 20x scan
    assert not window.preset_actions[40.0].isEnabled()
    assert "20x" in window.preset_actions[40.0].toolTip()
    assert window.preset_actions[20.0].isEnabled()
    assert window.open_in_pane(str(no_mpp_png), 0).wait()
    assert not any(action.isEnabled() for action in window.preset_actions.values())
    assert all("pixel size" in action.toolTip() for action in window.preset_actions.values())


def test_one_zoom_limit_for_wheel_keys_and_presets(window, cmu_svs, qtbot):
    from PySide6.QtCore import QPointF, Qt

    assert window.open_in_pane(str(cmu_svs), 0).wait()
    view = window.views[0]
    power = view.slide.info.magnification
    view.set_magnification(40.0)
    assert view.magnification() <= power + 1e-6
    for _ in range(40):
        view.smooth_zoom(1.25, QPointF(100, 100))
    qtbot.waitUntil(lambda: not view._animator.isActive(), timeout=10_000)  # it ends
    assert view.magnification() == pytest.approx(power)  # the wheel went to 61x
    for _ in range(10):
        qtbot.keyClick(view, Qt.Key.Key_Plus)
    view.zoom_at(8.0)
    assert view.magnification() == pytest.approx(power)


def test_unticked_layers_show_their_checkbox(window, synthetic_case, qtbot):
    from PySide6.QtCore import Qt

    from her2viewer.gui.app import make_app

    make_app()
    assert window.open_in_pane(str(synthetic_case / "he.svs"), 0).wait()
    hidden = HeatmapLayer("hidden", values=np.ones((4, 4)), downsample=500, visible=False)
    window.add_layer(hidden, 0)
    window.layers_panel.list.clearSelection()
    qtbot.wait(50)
    lst = window.layers_panel.list
    item = lst.item(0)
    assert item.checkState() == Qt.CheckState.Unchecked
    image = lst.viewport().grab().toImage()
    rect = lst.visualItemRect(item)
    brightest = max(
        image.pixelColor(x, y).lightness()
        for x in range(rect.left(), rect.left() + 20)
        for y in range(rect.top(), rect.bottom())
    )
    assert brightest > 120  # the box's frame; it was dark on dark


def test_scale_bar_label_is_not_truncated(window, no_mpp_png, qtbot):
    assert window.open_in_pane(str(no_mpp_png), 0).wait()
    view = window.views[0]
    qtbot.wait(100)
    image = view.grab().toImage()
    _, label = scale_bar(view.state.downsample, None)
    assert "(no mpp)" in label
    text_width = view.fontMetrics().horizontalAdvance(label)
    rows = range(view.height() - 44, view.height() - 22)  # the label row of the scale bar
    bright = [
        x
        for x in range(0, min(view.width(), 400))
        for y in rows
        if image.pixelColor(x, y).lightness() > 180
    ]
    assert max(bright) >= 16 + 0.8 * text_width  # drawn out to its end, not cut at 80 px


def test_status_bar_is_current_and_says_things_once(window, synthetic_cohort, qtbot):
    from PySide6.QtGui import QCursor

    from her2viewer.gui.radiology_panel import attach_radiology_panel, show_radiology
    from her2viewer.overlay.layers import MaskLayer

    radiology = attach_radiology_panel(window)
    assert window.open_in_pane(str(synthetic_cohort.parent / "case000" / "he.svs"), 0).wait()
    view = window.views[0]
    tumor = MaskLayer("HER2Net tumor", labels=np.ones((8, 8), np.uint8), downsample=500)
    tumor.class_names = {1: "tumor"}
    window.add_layer(tumor, 0)
    view.cursor_moved.emit(100.0, 200.0)
    status = window._status
    assert status["pos"].text().startswith("x 100")
    assert status["value"].text() == "HER2Net tumor"  # not "HER2Net tumor: tumor"
    view.zoom_at(2.0)
    view.fit()  # Home: the point under the cursor changed; the old one is not shown
    pos = view.mapFromGlobal(QCursor.pos())  # earlier tests may have left the mouse over it
    if view.underMouse() and view.rect().contains(pos):
        x, y = view.screen_to_level0(pos.x(), pos.y())
        assert status["pos"].text().startswith(f"x {x:,.0f}  y {y:,.0f} px (level 0)")
    else:
        assert status["pos"].text() == "" and status["value"].text() == ""
    view.cursor_moved.emit(100.0, 200.0)
    show_radiology(radiology)  # slide readouts stay with the slides
    assert not any(label.isVisible() for label in status.values())
    window.pages.setCurrentIndex(0)
    assert status["mag"].isVisible()


def test_panning_keeps_the_slide_in_sight_in_every_pane(window, synthetic_cohort, qtbot):
    case = synthetic_cohort.parent / "case000"
    assert window.open_in_pane(str(case / "he.svs"), 0).wait()
    assert window.open_in_pane(str(cmu := case.parent / "case001" / "ihc.svs"), 1).wait()
    assert cmu.exists()
    he, other = window.views
    he.zoom_at(4.0)
    for _ in range(60):  # drag far to the right and down
        he.pan_by(-400, -400)
    for view in (he, other):
        x0, y0, x1, y1 = view.visible_bounds()
        assert x1 > x0 and y1 > y0, view.title  # some of the slide is still in view
    state = he.state
    he.center_on(float("nan"), float("nan"))  # ignored, never a NaN view
    assert he.state == state


# -- item 23: progress means progress ------------------------------------------------------
def test_first_demo_start_shows_a_progress_dialog_and_keeps_drawing(window, qtbot, monkeypatch):
    import time

    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QProgressDialog

    import her2viewer.demo
    from her2viewer.gui.app import prepare_demo_case

    seen, ticks = [], []

    def slow_generation():  # returns once the GUI thread has ticked 10 times (or 60 s)
        end = time.monotonic() + 60
        while len(ticks) < 10 and time.monotonic() < end:
            time.sleep(0.01)
        return "the case folder"

    def look():
        dialogs = [d for d in window.findChildren(QProgressDialog) if d.isVisible()]
        seen.extend(d.labelText() for d in dialogs)
        ticks.append(1)

    monkeypatch.setattr(her2viewer.demo, "ensure_demo_case", slow_generation)
    timer = QTimer(window, interval=50, timeout=look)
    timer.start()
    assert prepare_demo_case(window) == "the case folder"
    timer.stop()
    assert len(ticks) >= 10  # the event loop ran: the window was drawn, not black
    assert seen and "demo case" in seen[-1] and seen[-1].endswith(" s")
    assert not [d for d in window.findChildren(QProgressDialog) if d.isVisible()]


def test_startup_work_errors_reach_the_caller(window):
    from her2viewer.errors import Her2ViewerError
    from her2viewer.gui.app import run_with_progress

    def fail(_context):
        raise Her2ViewerError("the cache folder is not writable.")

    with pytest.raises(Her2ViewerError, match="not writable"):
        run_with_progress(fail, "Working", window)


def test_a_bar_at_100_percent_means_done(window, qtbot):
    import threading

    from her2viewer.gui.job_panel import JobPanel

    class Slow(JobPanel):
        def run(self):
            self.start(work, "slow", "Working…")

        def show_result(self, result):
            self.status.setText(result)

    release = threading.Event()

    def work(context):
        context.report(5, 5, "reading patches")  # counted steps done, the model still runs
        release.wait(10)
        return "finished"

    panel = Slow(window, "Run")
    panel.run()
    qtbot.waitUntil(lambda: panel.progress.maximum() == 0, timeout=5000)  # busy, not 100%
    assert "reading patches" in panel.progress.format()
    release.set()
    qtbot.waitUntil(lambda: panel.job is None, timeout=5000)
    assert panel.progress.value() == panel.progress.maximum() == 1
    assert panel.status.text() == "finished"


# -- item 22: demo models say so; slides outside a model's scope are named ------------------
def test_demo_results_say_so_on_the_line_and_scope_is_stated(
    window, synthetic_case, no_mpp_png, qtbot
):
    from dataclasses import replace

    from her2viewer.models.checks import DEMO_NOTICE

    panel = attach_her2net_panel(window)
    assert window.open_in_pane(str(no_mpp_png), 0).wait()  # the demo bundle needs a pixel size
    panel.run()
    qtbot.waitUntil(lambda: panel.job is None, timeout=60_000)
    assert "pixel size" in panel.status.text() and panel.status.text() == window.errors[-1]
    assert "\n" not in panel.status.text()  # the sentence itself, not "Failed."

    assert window.open_in_pane(str(synthetic_case / "he.svs"), 0).wait()
    panel.run()
    qtbot.waitUntil(lambda: panel.job is None, timeout=120_000)
    line = panel.status.text()
    assert line.startswith("HER2 ") and "\n" not in line and DEMO_NOTICE in line
    warning = "Warning: x.svs is at 10x but the model accepts H&E slides at 20x to 40x only."
    panel.show_result(replace(panel.result, warning=warning))
    assert panel.status.text().startswith(warning) and DEMO_NOTICE in panel.status.text()


def test_grading_demo_says_so_on_every_line(window, synthetic_case, qtbot):
    from her2viewer.gui.grading_panel import attach_grading_panel
    from her2viewer.models.checks import DEMO_NOTICE

    panel = attach_grading_panel(window)
    assert window.open_in_pane(str(synthetic_case / "ihc.svs"), 0).wait()
    panel.run()
    qtbot.waitUntil(lambda: panel.job is None, timeout=180_000)
    assert panel.result is not None, window.errors
    assert DEMO_NOTICE in panel.status.text() and DEMO_NOTICE in panel.widget.probabilities.text()


def test_geojson_for_the_left_slide_lands_on_the_left_pane(panel_window, synthetic_case, tmp_path):
    """view SLIDE --geojson F drew F on the IHC pane once the partner opened and became active."""
    import json

    geojson = tmp_path / "outline.geojson"
    polygon = [[[100, 100], [900, 100], [900, 700], [100, 100]]]
    feature = {
        "type": "Feature",
        "geometry": {"type": "Polygon", "coordinates": polygon},
        "properties": {"objectType": "annotation"},
    }
    geojson.write_text(json.dumps({"type": "FeatureCollection", "features": [feature]}))
    panel_window.open_slides([synthetic_case / "he.svs", synthetic_case / "ihc.svs"]).wait()
    panel_window.set_active(panel_window.views[1])
    assert panel_window.add_geojson(geojson, pane=0)
    assert len(panel_window.views[0].layers) == 1
    assert panel_window.views[1].layers == []
