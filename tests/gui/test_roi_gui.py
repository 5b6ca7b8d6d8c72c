"""Score selected region: the IHC panel scores inside the selected annotations of a pane."""

from __future__ import annotations

import pytest
import shapely

from her2viewer.analysis.ihc import IhcOptions, analyse_ihc
from her2viewer.annotations.commands import Add, EditClasses
from her2viewer.annotations.model import Annotation, PathClass
from her2viewer.annotations.roi import region_from_features
from her2viewer.gui.ihc_panel import attach_ihc_panel
from her2viewer.slide import open_slide


@pytest.fixture(autouse=True)
def own_stores(tmp_path, monkeypatch):
    """Annotation stores of this test only: what it draws on the shared cases stays here."""
    monkeypatch.setenv("HER2VIEWER_DATA", str(tmp_path / "data"))


def _pair(window, synthetic_cohort):
    case = synthetic_cohort.parent / "case002"  # the IHC 2+ case of the seed-0 cohort
    assert window.open_in_pane(str(case / "he.svs"), 0).wait()
    assert window.open_in_pane(str(case / "ihc.svs"), 1).wait()
    return case


def _draw(window, pane: int, geometry, class_name: str = "Tumor"):
    """Add an annotation on ``pane`` through its controller, select it, return both."""
    window.set_active(window.views[pane])
    controller = window.annotations.active
    ann = Annotation(geometry, kind="polygon", class_name=class_name)
    assert controller.push(Add([ann]))
    controller.select([ann.id])
    return controller, ann


def test_score_selected_region_on_the_ihc_pane(panel_window, synthetic_cohort, qtbot):
    window = panel_window
    case = _pair(window, synthetic_cohort)
    panel = attach_ihc_panel(window)
    tumor = shapely.Polygon([(600, 500), (1700, 450), (1800, 1500), (700, 1600)])
    controller, ann = _draw(window, 1, tumor)
    panel.chooser.score_selected()
    qtbot.waitUntil(lambda: panel.result is not None, timeout=180_000)

    # the same figures as the headless analysis of the same region
    region = region_from_features(list(controller.document), ids=[ann.id])
    with open_slide(case / "ihc.svs") as slide:
        expected = analyse_ihc(slide, None, IhcOptions(region=region))
    score = panel.result.score
    assert score.score == expected.score and score.percentages == expected.percentages
    summary = score.summary()
    assert summary["region"] == "1 annotation from the IHC pane (selected)"
    assert summary["region_area_um2"] == tumor.area * 0.25
    assert "Region: 1 annotation from the IHC pane (selected)" in panel.status.text()

    # the annotation's measurements show the region's figures; undo takes them back
    measured = controller.document.measurements(controller.document.get(ann.id))
    assert measured["IHC score"] == expected.label
    assert measured["IHC % weak_moderate_complete"] == round(
        expected.percentages["weak_moderate_complete"], 1
    )
    assert measured["IHC region_area_mm2"] == summary["region_area_mm2"]
    controller.stack.undo()
    assert "IHC score" not in controller.document.get(ann.id).results


def test_a_region_drawn_on_the_he_is_mapped_onto_the_ihc(panel_window, synthetic_cohort, qtbot):
    window = panel_window
    _pair(window, synthetic_cohort)
    panel = attach_ihc_panel(window)
    panel.chooser.box.setCurrentText("Class: Tumor")
    document = window.annotations.controllers[window.views[0]].document
    classes = [*document.classes, PathClass("Invasive", (200, 0, 0))]
    window.annotations.controllers[window.views[0]].push(EditClasses(classes))
    window.set_active(window.views[0])  # the region box offers the pane's own classes
    box = panel.chooser.box
    offered = [box.itemText(i) for i in range(box.count())]
    assert "Class: Invasive" in offered and "Class: Ignore*" not in offered
    assert box.currentText() == "Class: Tumor"
    panel.run()  # nothing of class Tumor on the H&E yet: one sentence, no job
    assert panel.job is None and "No annotation of class Tumor" in window.errors[-1]
    controller, ann = _draw(window, 0, shapely.box(800, 600, 2000, 1700))
    panel.run()
    qtbot.waitUntil(lambda: panel.result is not None, timeout=180_000)
    summary = panel.result.score.summary()
    assert summary["region"].endswith("drawn on the H&E, mapped onto the IHC")
    # the synthetic IHC is the H&E turned by a few degrees and scaled by 0.96-1.04
    assert (
        0.9 * ann.geometry.area * 0.25 < summary["region_area_um2"] < 1.1 * ann.geometry.area * 0.25
    )
    assert controller.document.get(ann.id).results["IHC score"] == panel.result.score.label
