"""CLAM panel: Analyze in the background, heatmap layer, prediction, top-k gallery jump."""

from __future__ import annotations

import pytest

from her2viewer.gui.clam_panel import attach_clam_panel


@pytest.fixture()
def window(panel_window):
    return panel_window


def test_analyze_adds_heatmap_prediction_and_gallery(window, synthetic_case, qtbot):
    panel = attach_clam_panel(window)
    panel.run()  # nothing open: a message, no job
    assert panel.job is None and "H&E" in window.errors[-1]
    assert window.open_in_pane(str(synthetic_case / "he.svs"), 0).wait()
    panel.run()
    assert panel.job is not None and panel.cancel_button.isEnabled()
    qtbot.waitUntil(lambda: panel.job is None, timeout=300_000)
    assert panel.result is not None, panel.status.text()
    names = [layer.name for layer in window.views[0].layers]
    assert names.count("CLAM attention") == 1 and "CLAM attention (partial)" not in names
    assert panel.status.text().startswith("CLAM prediction:")
    assert panel.widget.gallery.count() == 2 * min(8, len(panel.result.coords))
    item = panel.widget.gallery.item(0)
    panel.widget._jump(item)
    state = window.views[0].state
    assert (state.cx, state.cy) == item.data(256)
