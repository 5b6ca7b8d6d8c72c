"""Copy annotations to the other pane through the registration; copies follow a nudge."""

from __future__ import annotations

import json

import numpy as np
import pytest
import shapely
from PySide6.QtWidgets import QMenu

from her2viewer.annotations.commands import Add, Replace
from her2viewer.annotations.model import Annotation
from her2viewer.geometry.shapes import apply_matrix


@pytest.fixture()
def pair(panel_window, synthetic_case, tmp_path, monkeypatch):
    """A window with a synthetic H&E (pane 1) and IHC (pane 2), empty annotation stores."""
    monkeypatch.setenv("HER2VIEWER_DATA", str(tmp_path / "data"))
    window = panel_window
    assert window.open_slides([synthetic_case / "he.svs", synthetic_case / "ihc.svs"]).wait()
    truth = json.loads((synthetic_case / "truth.json").read_text())
    return window, np.array(truth["transform_ihc_to_he"])


def _draw(window, pane: int, *anns: Annotation):
    """Add ``anns`` to pane ``pane`` and select them; return its controller."""
    controller = window.annotations.controllers[window.views[pane]]
    controller.push(Add(anns))
    controller.select([ann.id for ann in anns])
    return controller


def _tumor() -> Annotation:
    return Annotation(
        shapely.Polygon([(900, 800), (1800, 700), (2000, 1500), (1000, 1600)]),
        class_name="Tumor",
        name="invasive",
    )


def test_copy_to_the_other_pane_goes_through_the_registration(pair, qtbot):
    window, ihc_to_he = pair
    he_view, ihc_view = window.views[:2]
    window.set_pane_transform(1, ihc_to_he)
    tumor = _tumor()
    _draw(window, 0, tumor)
    window.set_active(he_view)
    window.pair_annotations.action.trigger()  # Annotations > Copy to other pane

    ihc = window.annotations.controllers[ihc_view]
    (copy,) = list(ihc.document)
    expected = apply_matrix(tumor.geometry, np.linalg.inv(ihc_to_he))
    assert shapely.equals_exact(copy.geometry, expected, tolerance=0.01)
    assert copy.id != tumor.id and copy.transferred_from == "he.svs"
    assert (copy.class_name, copy.name) == ("Tumor", "invasive")
    assert ihc.selected_ids == [copy.id]
    window.set_active(ihc_view)  # the Annotations dock says where the copy came from
    tree = window.annotation_panel.tree
    qtbot.waitUntil(lambda: copy.id in tree.items)
    assert tree.items[copy.id].toolTip(1) == "transferred from he.svs"
    # editable there, and one undoable step
    ihc.translate_selected(10, 0)
    assert ihc.document.get(copy.id).geometry.bounds[0] == pytest.approx(expected.bounds[0] + 10)
    ihc.stack.undo()
    ihc.stack.undo()
    assert len(ihc.document) == 0

    # the pane's context menu offers it too (IHC -> H&E here)
    second = Annotation(shapely.Point(1500, 1200).buffer(100), class_name="Stroma")
    _draw(window, 1, second)
    menu = QMenu()
    window.pair_annotations.fill_menu(menu, ihc_view)
    (action,) = [a for a in menu.actions() if a.text() == "Copy to other pane"]
    action.trigger()
    he_doc = window.annotations.controllers[he_view].document
    back = next(ann for ann in he_doc if ann.transferred_from == "ihc.svs")
    expected = apply_matrix(second.geometry, ihc_to_he)
    assert shapely.equals_exact(back.geometry, expected, tolerance=0.01)


def test_unedited_copies_follow_a_nudge_and_edited_ones_stay(pair):
    window, ihc_to_he = pair
    he_view, ihc_view = window.views[:2]
    window.set_pane_transform(1, ihc_to_he)
    kept, edited = _tumor(), Annotation(shapely.Point(2200, 1800).buffer(80), kind="ellipse")
    _draw(window, 0, kept, edited)
    copies = window.pair_annotations.copy_selected(he_view)
    ihc = window.annotations.controllers[ihc_view]
    ihc.select([copies[1].id])
    ihc.translate_selected(-30, 15)
    moved_by_hand = ihc.document.get(copies[1].id).geometry

    nudged = np.array([[1, 0, 60.0], [0, 1, -40.0], [0, 0, 1]]) @ ihc_to_he
    window.set_pane_transform(1, nudged)  # what the IHC panel's nudge and the landmark fit do
    follows = ihc.document.get(copies[0].id)
    want = apply_matrix(kept.geometry, np.linalg.inv(nudged))
    assert shapely.equals_exact(follows.geometry, want, tolerance=0.01)
    assert ihc.document.get(copies[1].id).geometry.equals_exact(moved_by_hand, 0.0)
    assert ihc.stack.log[-1].description.startswith("Follow the registration")

    # cleared registration: copies stay; a copy edited since no longer follows
    window.set_pane_transform(1, None)
    assert ihc.document.get(copies[0].id).geometry.equals_exact(follows.geometry, 0.0)
    window.set_pane_transform(1, ihc_to_he)
    back = ihc.document.get(copies[0].id)
    want = apply_matrix(kept.geometry, np.linalg.inv(ihc_to_he))
    assert shapely.equals_exact(back.geometry, want, tolerance=0.01)
    ihc.push(Replace({back.id: back.replace(geometry=shapely.Point(500, 500).buffer(50))}))
    window.set_pane_transform(1, nudged)
    assert ihc.document.get(copies[0].id).geometry.centroid.x == pytest.approx(500, abs=1)


def test_copy_is_refused_without_a_registration_or_a_selection(pair):
    window, _ = pair
    he_view, ihc_view = window.views[:2]
    window.set_pane_transform(1, None)  # panes only in relative step
    _draw(window, 0, _tumor())
    assert window.pair_annotations.copy_selected(he_view) == []
    assert window.errors[-1].startswith("Register the pair first")
    assert len(window.annotations.controllers[ihc_view].document) == 0
    window.annotations.controllers[he_view].select([])
    assert window.pair_annotations.copy_selected(he_view) == []
    assert "Select the annotations" in window.errors[-1]
    menu = QMenu()
    window.pair_annotations.fill_menu(menu, he_view)
    assert not menu.actions()  # nothing selected: no entry


def test_an_unusable_link_is_refused_in_one_sentence(pair):
    window, _ = pair
    he_view, ihc_view = window.views[:2]
    window.set_pane_transform(1, np.diag([1e-5, 1e-5, 1.0]))  # a flat map, no registration's
    _draw(window, 0, _tumor())
    assert window.pair_annotations.copy_selected(he_view) == []
    assert window.errors[-1].startswith("Cannot carry annotations through this registration")
    assert len(window.annotations.controllers[ihc_view].document) == 0
