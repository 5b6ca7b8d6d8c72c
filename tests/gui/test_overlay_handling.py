"""Overlay handling: hide all overlays with one key, a key per layer, layers grouped under
their analysis, a legend that never pushes the layer list out of view (issue 19)."""

import numpy as np
import pytest

pytest.importorskip("PySide6")

from PySide6.QtCore import QPoint, Qt  # noqa: E402

from her2viewer.gui.analysis_panel import ResultWidget, dock_analysis  # noqa: E402
from her2viewer.gui.panels import LIST_MIN_HEIGHT  # noqa: E402
from her2viewer.overlay import HeatmapLayer, MaskLayer  # noqa: E402


class TwoLayers:
    def __init__(self):
        labels = np.zeros((24, 30), np.uint8)
        labels[4:12, 5:20] = 1
        self.mask = MaskLayer("Toy tumour", labels=labels, downsample=100)
        self.heat = HeatmapLayer(
            "Toy score", values=np.random.default_rng(0).random((24, 30)), downsample=100
        )

    def layers(self):
        return [self.heat, self.mask]


class ToyWidget(ResultWidget):
    result_type = TwoLayers

    def describe(self, result) -> str:
        return "two layers"


@pytest.fixture()
def shown(panel_window, synthetic_case, qtbot):
    window = panel_window
    assert window.open_in_pane(synthetic_case / "he.svs", 0).wait()
    view = window.views[0]
    qtbot.waitUntil(view.fully_loaded, timeout=20000)
    own = HeatmapLayer("plain", values=np.ones((4, 4)), downsample=800, opacity=0.8)
    window.add_layer(own, 0)
    panel = dock_analysis(window, ToyWidget(), "Toy analysis")
    panel.pane, panel.panes = 0, (0,)
    result = TwoLayers()
    panel.show_result(result)
    window.set_active(view)
    return window, view, own, result


def _rows(panel):
    return [panel.list.item(i).text().strip() for i in range(panel.list.count())]


def test_layers_of_an_analysis_sit_under_its_name_and_toggle_together(shown):
    window, view, own, result = shown
    panel = window.layers_panel
    assert _rows(panel) == [
        "▾ Toy analysis",
        "Toy tumour  [mask]",
        "Toy score  [heatmap]",
        "plain  [heatmap]",
    ]
    group = panel.list.item(0)
    group.setCheckState(Qt.CheckState.Unchecked)
    assert not result.mask.visible and not result.heat.visible and own.visible
    panel.list.item(1).setCheckState(Qt.CheckState.Checked)
    assert panel.list.item(0).checkState() == Qt.CheckState.PartiallyChecked


def test_one_key_hides_every_overlay_and_gives_them_back(shown, qtbot):
    window, view, own, result = shown
    before = view.overlay_signature()
    assert len(before) == 3
    view.setFocus()
    qtbot.keyClick(view, Qt.Key.Key_O)
    assert window.overlay_keys.hide_all.isChecked()
    assert view.overlay_signature() == ()  # the slide alone...
    assert own.visible and result.mask.visible  # ...each layer keeps its own tick
    qtbot.keyClick(view, Qt.Key.Key_O)
    assert view.overlay_signature() == before


def test_a_pane_shown_while_overlays_are_hidden_hides_its_own(shown, synthetic_case):
    window, view, own, result = shown
    window.overlay_keys.set_hidden(True)
    assert window.open_in_pane(synthetic_case / "ihc.svs", 1).wait()  # a new pane, active
    other = window.views[1]
    other.add_layer(MaskLayer("mask", labels=np.ones((4, 4), np.uint8), downsample=800))
    assert window.active is other and other.overlay_signature() == ()


def test_alt_and_a_number_toggles_that_layer(shown, qtbot):
    window, view, own, result = shown
    view.setFocus()
    qtbot.keyClick(view, Qt.Key.Key_1, Qt.KeyboardModifier.AltModifier)
    assert not result.mask.visible  # layer 1 is the top of the stack
    qtbot.keyClick(view, Qt.Key.Key_3, Qt.KeyboardModifier.AltModifier)
    assert not own.visible
    assert "'plain'" in window.overlay_keys.toggles[2].toolTip()
    assert not window.overlay_keys.toggles[3].isEnabled()


def test_the_legend_never_pushes_the_layer_list_out_of_view(shown, qtbot):
    window, view, own, result = shown
    panel = window.layers_panel
    for index in range(12):
        window.add_layer(HeatmapLayer(f"extra {index}", values=np.ones((4, 4)), downsample=800), 0)
    panel.list.setCurrentRow(panel.list.count() - 1)  # a heatmap: colormap, range, legend
    window.resize(1280, 620)
    qtbot.wait(100)
    assert panel.legend.isVisible()
    assert panel.list.height() >= LIST_MIN_HEIGHT
    scroll = panel.parentWidget().parentWidget()  # the dock's scroll area
    top = panel.list.mapTo(scroll, QPoint(0, 0)).y()
    assert top >= 0 and top + LIST_MIN_HEIGHT <= scroll.height()  # in view, not scrolled off
