"""The Cells panel: marker and profile choice, a live preview that follows the sliders, the
histogram with its thresholds, the full run's layers and exports."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from PIL import Image

from her2viewer.analysis.cells import CLASS_COLORS, SAFE_COLORS
from her2viewer.annotations.commands import Add
from her2viewer.annotations.model import Annotation
from her2viewer.cells.profiles import BUILT_IN, load_profile
from her2viewer.geometry.geojson import read_features
from her2viewer.gui.cells_panel import attach_cells_panel
from her2viewer.overlay.points import DensityLayer, PointsLayer
from her2viewer.slide.cell_field import draw_cell_field

#: PNG resolution of 0.5 um/px (dots per inch).
DPI_05_UM = 50800


@pytest.fixture()
def field_png(tmp_path):
    field = draw_cell_field(700, 500, (0.4, 0.3, 0.2, 0.1), marker="her2", seed=5)
    path = tmp_path / "her2_field.png"
    Image.fromarray(field.rgb).save(path, dpi=(DPI_05_UM, DPI_05_UM))
    return path


@pytest.fixture()
def panel(panel_window, field_png):
    panel = attach_cells_panel(panel_window)
    assert panel_window.open_in_pane(str(field_png), 0).wait()
    return panel


def _slider(widget, name, value):
    widget.sliders[name].setValue(value)


def test_marker_choice_lists_its_profiles_and_sets_the_sliders(panel):
    widget = panel.widget
    widget.marker_box.setCurrentText("ki67")
    names = [widget.profile_box.itemText(i) for i in range(widget.profile_box.count())]
    assert names == [n for n, p in BUILT_IN.items() if p.marker == "ki67"]
    assert widget.thresholds() == load_profile(None, "ki67").thresholds
    widget.marker_box.setCurrentText("her2")
    assert widget.sliders["weak"].value() == round(BUILT_IN["her2-4b5"].thresholds.weak * 100)


def test_a_slider_pushes_its_neighbours_to_keep_the_order(panel):
    widget = panel.widget
    _slider(widget, "weak", 80)
    t = widget.thresholds()
    assert t.weak == 0.8 and t.weak < t.moderate < t.strong


def test_moving_a_slider_previews_the_visible_cells(panel, qtbot):
    widget = panel.widget
    _slider(widget, "moderate", 35)
    qtbot.waitUntil(lambda: widget.preview_result is not None, timeout=60_000)
    qtbot.waitUntil(lambda: widget.preview_job is None, timeout=60_000)
    first = widget.preview_result
    assert len(first.cells) > 200
    assert "ms" in widget.preview_label.text() and widget.preview_seconds > 0
    assert widget.preview_layer in panel.window.views[0].layers
    # the histogram shows the cells, its lines sit on the thresholds
    _, counts = widget.bars.getData()
    assert counts.sum() == len(first.cells)
    assert widget.threshold_lines["moderate"].value() == pytest.approx(0.35)
    # a stricter strong threshold: the same measured cells are classed again at once
    strong_before = int((first.cells.classes == 3).sum())
    _slider(widget, "strong", 150)
    qtbot.waitUntil(lambda: widget.preview_result is not first, timeout=60_000)
    assert widget.preview_job is None and widget.preview_result.cells.table is first.cells.table
    assert int((widget.preview_result.cells.classes == 3).sum()) < strong_before
    assert widget.threshold_lines["strong"].value() == pytest.approx(1.5)
    # the weak threshold decides membrane completeness: the engine measures again
    second = widget.preview_result
    _slider(widget, "weak", 5)
    qtbot.waitUntil(
        lambda: widget.preview_result.info["thresholds"]["weak"] == 0.05, timeout=60_000
    )
    assert widget.preview_result.cells.table is not second.cells.table


def test_run_shows_layers_category_and_exports(panel, qtbot, tmp_path):
    widget = panel.widget
    widget.live.setChecked(False)
    panel.run()
    qtbot.waitUntil(lambda: panel.result is not None, timeout=120_000)
    summary = panel.result.summary()
    assert summary["category"] in ("0", "1+", "2+", "3+")
    assert summary["category"] in panel.status.text()
    assert "all detected cells counted" in panel.status.text()
    layers = panel.window.views[0].layers
    points = next(layer for layer in layers if isinstance(layer, PointsLayer))
    assert any(isinstance(layer, DensityLayer) for layer in layers)
    assert points.colors == CLASS_COLORS
    widget.safe_colors.setChecked(True)
    assert points.colors == SAFE_COLORS
    x, y = points.xy[0]
    assert "nucleus" in points.value_at(x + 1, y)
    widget.export(tmp_path / "cells.csv")
    widget.export(tmp_path / "cells.geojson")
    lines = (tmp_path / "cells.csv").read_text().splitlines()
    assert len(lines) == summary["n_cells"] + 1
    features = read_features(tmp_path / "cells.geojson")
    assert len(features) == summary["n_cells"]
    assert {f.object_type for f in features} == {"cell"}
    assert all(f.nucleus is not None for f in features[:20])


def test_saved_profile_loads_back_with_the_slider_thresholds(panel, tmp_path):
    widget = panel.widget
    _slider(widget, "weak", 15)
    widget.save_profile_file(tmp_path / "lab-4b5.json")
    widget.profile_box.setCurrentText("her2-herceptest")
    widget.load_profile_file(tmp_path / "lab-4b5.json")
    assert widget.profile_box.currentText() == "lab-4b5"
    assert widget.thresholds().weak == 0.15
    assert np.isclose(widget.profile().thresholds.weak, 0.15)


def _annotate(window, class_name: str, box) -> tuple:
    """Add a rectangle of ``class_name`` on the first pane (made active)."""
    view = window.views[0]
    window.set_active(view)
    controller = window.annotations.controllers[view]
    ann = Annotation(box, kind="rectangle", class_name=class_name)
    controller.push(Add([ann]))
    return controller, ann


def _counted_inside(panel, qtbot, box) -> None:
    """Wait for the run; its cells all lie inside ``box``."""
    qtbot.waitUntil(lambda: panel.result is not None, timeout=120_000)
    table = panel.result.cells.table
    assert len(table) > 50 and shapely.contains_xy(box, table.x, table.y).all()


def test_tumor_annotations_restrict_the_counted_cells(panel, qtbot):
    window, widget = panel.window, panel.widget
    box = shapely.box(100, 100, 400, 300)
    controller, ann = _annotate(window, "Tumor", box)
    widget.live.setChecked(False)
    assert not hasattr(widget, "region_box")  # the shared chooser, not a copy
    panel.chooser.box.setCurrentText("Class: Tumor")
    panel.run()
    _counted_inside(panel, qtbot, box)
    assert "1 Tumor annotation" in panel.status.text()
    figures = controller.document.get(ann.id).results
    assert figures["Cells HER2 cells"] == panel.result.summary()["n_cells"]
    assert figures["Cells HER2 category"] == panel.result.summary()["category"]
    assert figures["Cells HER2 region_area_um2"] == pytest.approx(box.area * 0.25)


def test_score_selected_region_of_any_class(panel, qtbot):
    window, widget = panel.window, panel.widget
    box = shapely.box(300, 150, 650, 450)
    controller, ann = _annotate(window, "Stroma", box)
    controller.select([ann.id])
    widget.live.setChecked(False)
    panel.chooser.score_selected()
    _counted_inside(panel, qtbot, box)
    assert "1 annotation from the H&E pane (selected)" in panel.status.text()
    assert "Cells HER2 positive %" in controller.document.get(ann.id).results


def test_ki67_hot_spot_method_from_the_panel(panel, qtbot):
    widget = panel.widget
    assert not widget.ki67_box.isEnabled()  # HER2 first
    widget.marker_box.setCurrentText("ki67")
    assert widget.ki67_box.isEnabled()
    widget.ki67_box.setCurrentText("hot-spot")
    widget.live.setChecked(False)
    panel.run()
    qtbot.waitUntil(lambda: panel.result is not None, timeout=120_000)
    assert panel.result.summary()["figures"]["method"] == "hot spot"
    assert "hot spot:" in panel.status.text()
