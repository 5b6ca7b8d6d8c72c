"""A document's pixel size can change after it is made (the Display dock's override), and
every subscriber hears of it: the panels measure again in µm, the store saves nothing."""

import numpy as np
import pytest
import shapely
from PIL import Image

from her2viewer.annotations.commands import Add, CommandStack
from her2viewer.annotations.model import Annotation, DocumentChange
from her2viewer.annotations.store import AnnotationStore, journal_path


def test_a_new_pixel_size_notifies_subscribers_and_is_not_saved(tmp_path):
    store = AnnotationStore.open(tmp_path / "a.geojson", mpp=None)
    document = store.document
    square = Annotation(shapely.box(0, 0, 1000, 1000))
    CommandStack(document).push(Add([square]))
    store.flush()  # everything saved: a snapshot, an empty journal
    saved = store.path.stat().st_ino
    heard: list[DocumentChange] = []
    document.subscribe(heard.append)
    assert "area_um2" not in document.measurements(square)
    document.mpp = 0.5
    assert heard == [DocumentChange("mpp")]
    assert document.measurements(square)["area_um2"] == pytest.approx(250_000)
    document.mpp = 0.5  # the same size again: no change
    document.mpp = float("nan")  # unknown again
    assert heard == [DocumentChange("mpp")] * 2 and document.mpp is None
    store.close()  # nothing unsaved: the snapshot is not written again
    assert store.path.stat().st_ino == saved and journal_path(store.path).read_bytes() == b""


def test_pixel_size_override_measures_the_annotations_again(window_factory, qtbot, tmp_path):
    from her2viewer.gui.app import settle

    window = window_factory((1000, 650))
    path = tmp_path / "no_mpp.png"
    Image.fromarray(np.full((1500, 2000, 3), 230, np.uint8)).save(path)
    assert window.open_in_pane(path).wait()
    assert settle(window, 30)
    controller = window.annotations.active
    controller.stack.push(Add([Annotation(shapely.box(100, 100, 1100, 1100), name="sq")]))
    panel = window.annotation_panel
    panel.setCurrentWidget(panel.measurements)  # shown: kept up to date row by row
    qtbot.waitUntil(lambda: len(panel.tree.items) == 1 and panel.measurements.model.rowCount())
    assert window.annotations.brush_box.suffix() == " px"
    window.display_panel.set_pixel_size(0.5)
    assert controller.document.mpp == 0.5
    qtbot.waitUntil(lambda: "area_um2" in panel.measurements.model.header())
    assert panel.tree.headerItem().text(2) == "Area (µm²)"
    assert panel.tree.topLevelItem(0).text(2) == "250,000.00"
    assert window.annotations.brush_box.suffix() == " µm"
    assert controller.tools["brush"].unit == "µm"
    window.display_panel.set_pixel_size(None)
    assert controller.document.mpp is None
    qtbot.waitUntil(lambda: panel.tree.headerItem().text(2) == "Area (px²)")
