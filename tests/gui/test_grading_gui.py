"""IHC grading panel: grade the IHC pane in the background, patch grades, Grad-CAM of the view."""

from __future__ import annotations

import pytest

from her2viewer.gui.grading_panel import attach_grading_panel
from her2viewer.overlay.layers import HeatmapLayer, MaskLayer


@pytest.fixture()
def window(panel_window):
    return panel_window


def test_grade_ihc_and_gradcam_of_the_view(window, synthetic_case, qtbot):
    panel = attach_grading_panel(window)
    panel.run()  # nothing open: a message, no job
    assert panel.job is None and "IHC" in window.errors[-1]
    assert window.open_in_pane(str(synthetic_case / "he.svs"), 0).wait()
    assert window.open_in_pane(str(synthetic_case / "ihc.svs"), 1).wait()
    window.set_active(window.views[0])
    panel.run()
    assert panel.job is not None and panel.pane == 1 and panel.cancel_button.isEnabled()
    qtbot.waitUntil(lambda: panel.job is None, timeout=120_000)
    assert panel.result is not None, panel.status.text()
    assert panel.status.text().startswith(f"IHC grade {panel.result.grade} from")
    assert "tumor mask" in panel.status.text()
    assert panel.widget.probabilities.text().startswith("Class probabilities: 0 ")
    grades = [layer for layer in window.views[1].layers if isinstance(layer, MaskLayer)]
    assert [layer.name for layer in grades] == ["Patch grades (0, 1+, 2+, 3+)"]
    view = window.views[1]
    x, y = panel.result.coords[0] + panel.result.patch_size_level0 // 2
    view.set_magnification(5.0)
    view.center_on(float(x), float(y))
    panel.widget.run_gradcam()
    assert panel.job is not None
    qtbot.waitUntil(lambda: panel.job is None, timeout=120_000)
    assert panel.widget.cam is not None, panel.status.text()
    names = [layer.name for layer in view.layers]
    assert names.count("Grad-CAM (view)") == 1 and names.count(grades[0].name) == 1
    cam = next(layer for layer in view.layers if isinstance(layer, HeatmapLayer))
    assert cam.value_at(x, y) is not None  # the patch in the middle of the view is explained


def test_cancel_stops_grading(window, synthetic_case, qtbot):
    panel = attach_grading_panel(window)
    assert window.open_in_pane(str(synthetic_case / "ihc.svs"), 0).wait()
    panel.run()
    panel.cancel()
    qtbot.waitUntil(lambda: panel.job is None, timeout=120_000)
    assert panel.status.text() == "Cancelled." and panel.result is None
    assert not window.views[0].layers and panel.run_button.isEnabled()


def test_user_errors_are_shown(window, synthetic_case, qtbot, monkeypatch, tmp_path):
    from her2viewer.analysis import grade
    from her2viewer.models import patch_cnn

    panel = attach_grading_panel(window)
    assert window.open_in_pane(str(synthetic_case / "ihc.svs"), 0).wait()
    monkeypatch.setattr(grade, "MAX_VIEW_PATCHES", 1)
    panel.widget.run_gradcam()  # the whole slide is in view: more patches than allowed
    qtbot.waitUntil(lambda: panel.job is None, timeout=120_000)
    assert "zoom in to at most 1" in window.errors[-1] and panel.widget.cam is None
    monkeypatch.setattr(patch_cnn, "DEMO_GRADING_BUNDLE", tmp_path / "gone")
    panel.run()
    assert panel.job is None and "demo bundle is missing" in window.errors[-1]
