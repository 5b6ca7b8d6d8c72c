"""HER2Net panel in the viewer: background run, layers on the H&E pane, P bar, tile jump."""

from __future__ import annotations

import pytest

from her2viewer.gui.her2net_panel import attach_her2net_panel


@pytest.fixture()
def window(panel_window):
    return panel_window


def test_panel_runs_in_background_and_adds_layers(window, synthetic_case, qtbot):
    panel = attach_her2net_panel(window)
    panel.run()  # no slide yet: a message, no job
    assert panel.job is None and window.errors
    assert window.open_in_pane(str(synthetic_case / "he.svs"), 0).wait()
    panel.run()
    assert panel.job is not None and not panel.run_button.isEnabled()
    qtbot.waitUntil(lambda: panel.result is not None, timeout=120_000)
    names = [layer.name for layer in window.views[0].layers]
    assert "HER2Net tumor" in names and "HER2Net high expression" in names
    assert panel.widget.bar.value == panel.result.high_expression_percent
    assert panel.widget.bar.threshold == 10.0
    assert panel.status.text().startswith(f"HER2 {panel.result.her2_status}")
    assert panel.widget.table.rowCount() == len(panel.result.tiles) > 0
    tile = panel.result.tiles[0]
    panel.widget._jump(0, 0)
    state = window.views[0].state
    assert (state.cx, state.cy) == (
        tile.x + panel.result.tile_size_px / 2,
        tile.y + panel.result.tile_size_px / 2,
    )
    panel.run()  # a second run comes from the cache and replaces the layers
    qtbot.waitUntil(lambda: panel.job is None, timeout=120_000)
    names = [layer.name for layer in window.views[0].layers]
    assert names.count("HER2Net tumor") == 1
