"""Score selected region in the HER2Net, CLAM and grading docks (issue 17): each analysis is
restricted to the annotation selected on its pane, says so, and writes its figures into it."""

from __future__ import annotations

import pytest
import shapely

from her2viewer.annotations.commands import Add
from her2viewer.annotations.model import Annotation
from her2viewer.gui.clam_panel import attach_clam_panel
from her2viewer.gui.grading_panel import attach_grading_panel
from her2viewer.gui.her2net_panel import attach_her2net_panel

#: A region well inside the 3000 x 2400 synthetic slides (level-0 px; 0.5 um/px).
REGION = shapely.box(600, 500, 2400, 1900)


@pytest.fixture(autouse=True)
def own_stores(tmp_path, monkeypatch):
    """Annotation stores of this test only: what it draws on the shared cases stays here."""
    monkeypatch.setenv("HER2VIEWER_DATA", str(tmp_path / "data"))


def _select_region(window, pane: int):
    """Draw :data:`REGION` as a Tumor annotation on ``pane`` and select it."""
    window.set_active(window.views[pane])
    controller = window.annotations.active
    ann = Annotation(REGION, kind="rectangle", class_name="Tumor")
    assert controller.push(Add([ann]))
    controller.select([ann.id])
    return controller, ann


def _run_on_region(panel, window, pane: int, qtbot):
    """Score the selected region; the result, its annotation's results and the pane's name."""
    controller, ann = _select_region(window, pane)
    panel.chooser.score_selected()
    assert panel.job is not None, window.errors
    qtbot.waitUntil(lambda: panel.job is None, timeout=300_000)
    assert panel.result is not None, panel.status.text()
    name = ("H&E", "IHC")[pane]
    summary = panel.result.summary()
    assert summary["region"] == f"1 annotation from the {name} pane (selected)"
    assert summary["region_area_um2"] == pytest.approx(REGION.area * 0.25)
    assert f"Region: 1 annotation from the {name} pane (selected)" in panel.status.text()
    return panel.result, controller.document.get(ann.id).results


def test_her2net_of_the_selected_region(panel_window, synthetic_case, qtbot):
    window = panel_window
    panel = attach_her2net_panel(window)
    assert window.open_in_pane(str(synthetic_case / "he.svs"), 0).wait()
    result, figures = _run_on_region(panel, window, 0, qtbot)
    half = result.tile_size_px / 2
    assert all(REGION.contains(shapely.Point(t.x + half, t.y + half)) for t in result.tiles)
    assert figures["HER2Net status"] == result.her2_status
    assert figures["HER2Net P %"] == round(result.high_expression_percent, 1)
    assert figures["HER2Net region_area_um2"] == pytest.approx(REGION.area * 0.25)


def test_clam_of_the_selected_region(panel_window, synthetic_case, qtbot):
    window = panel_window
    panel = attach_clam_panel(window)
    assert window.open_in_pane(str(synthetic_case / "he.svs"), 0).wait()
    result, figures = _run_on_region(panel, window, 0, qtbot)
    near = REGION.buffer(512)  # a patch's corner lies within one patch of its centre
    assert all(near.contains(shapely.Point(x, y)) for x, y in result.coords)
    assert figures["CLAM prediction"] == result.names[result.prediction.prediction]
    assert set(figures) >= {f"CLAM p {name}" for name in result.names}


def test_grading_of_the_selected_region_on_the_ihc(panel_window, synthetic_case, qtbot):
    window = panel_window
    panel = attach_grading_panel(window)
    assert window.open_in_pane(str(synthetic_case / "he.svs"), 0).wait()
    assert window.open_in_pane(str(synthetic_case / "ihc.svs"), 1).wait()
    panel.chooser.box.setCurrentText("Class: Tumor")
    window.set_active(window.views[1])
    panel.run()  # nothing of class Tumor on the IHC yet: one sentence, no job
    assert panel.job is None and "No annotation of class Tumor" in window.errors[-1]
    result, figures = _run_on_region(panel, window, 1, qtbot)
    centres = result.coords + result.patch_size_level0 / 2
    assert all(REGION.contains(shapely.Point(x, y)) for x, y in centres)
    assert figures["IHC grade"] == result.grade
    assert set(figures) >= {f"IHC grade p {name}" for name in result.classes}
