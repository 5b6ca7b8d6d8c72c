"""CLAM panel: Analyze in the background, heatmap layer, prediction, top-k gallery jump."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QSettings

from her2viewer.gui.clam_panel import attach_clam_panel
from her2viewer.gui.mainwindow import MainWindow
from her2viewer.gui.tiles import TileCache, TileLoader


@pytest.fixture()
def window(qtbot, tmp_path):
    loader = TileLoader(TileCache(64), workers=1)
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    win = MainWindow(loader, settings)
    qtbot.addWidget(win)
    win.resize(900, 600)
    win.show()
    yield win
    loader.shutdown()


def test_analyze_adds_heatmap_prediction_and_gallery(window, synthetic_case, qtbot):
    panel = attach_clam_panel(window)
    panel.run()  # nothing open: a message, no job
    assert panel.job is None and "H&E" in window.errors[-1]
    assert window.open_in_pane(str(synthetic_case / "he.svs"), 0)
    panel.run()
    assert panel.job is not None and panel.cancel_button.isEnabled()
    qtbot.waitUntil(lambda: panel.job is None, timeout=300_000)
    assert panel.result is not None, panel.status.text()
    names = [layer.name for layer in window.views[0].layers]
    assert names.count("CLAM attention") == 1 and "CLAM attention (partial)" not in names
    assert panel.status.text().startswith("CLAM prediction:")
    assert panel.gallery.count() == 2 * min(8, len(panel.result.coords))
    item = panel.gallery.item(0)
    panel._jump(item)
    state = window.views[0].state
    assert (state.cx, state.cy) == item.data(256)
