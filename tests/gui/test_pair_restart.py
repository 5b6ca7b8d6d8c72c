"""Copies made with "Copy to other pane" keep following the registration after a restart."""

from __future__ import annotations

import json

import numpy as np
import pytest
import shapely
import shapely.affinity

pytest.importorskip("PySide6")


from her2viewer.annotations.commands import Add  # noqa: E402
from her2viewer.annotations.model import Annotation  # noqa: E402
from her2viewer.geometry.shapes import apply_matrix  # noqa: E402
from her2viewer.gui.annotations.pair import place, placed_matrix  # noqa: E402

NUDGE = np.array([[1.0, 0.0, 60.0], [0.0, 1.0, -40.0], [0.0, 0.0, 1.0]])


def _restart(window, window_factory):
    """Close ``window`` saving its session; a new window restored from it."""
    window.sessions.autosave = True
    window.close()
    again = window_factory()
    opening = again.sessions.restore()
    assert opening is not None and opening.wait()
    return again


def test_copies_follow_the_registration_after_a_restart(window_factory, synthetic_case):
    window = window_factory()
    ihc_to_he = np.array(
        json.loads((synthetic_case / "truth.json").read_text())["transform_ihc_to_he"]
    )
    paths = [synthetic_case / "he.svs", synthetic_case / "ihc.svs"]
    assert window.open_slides(paths, ihc_to_he).wait()
    kept = Annotation(shapely.Polygon([(900, 800), (1800, 700), (2000, 1500), (1000, 1600)]))
    edited = Annotation(shapely.Point(2200, 1800).buffer(80), kind="ellipse")
    he = window.annotations.controllers[window.views[0]]
    he.push(Add([kept, edited]))
    he.select([kept.id, edited.id])
    follows, moved = window.pair_annotations.copy_selected(window.views[0])
    ihc = window.annotations.controllers[window.views[1]]
    ihc.select([moved.id])
    ihc.translate_selected(-30, 15)
    by_hand = ihc.document.get(moved.id).geometry

    again = _restart(window, window_factory)
    ihc = again.annotations.controllers[again.views[1]]
    assert ihc.document.get(follows.id).copy_link["source"] == kept.id
    again.set_pane_transform(1, NUDGE @ ihc_to_he)
    want = apply_matrix(kept.geometry, np.linalg.inv(NUDGE @ ihc_to_he))
    assert shapely.equals_exact(ihc.document.get(follows.id).geometry, want, tolerance=0.01)
    assert shapely.equals_exact(ihc.document.get(moved.id).geometry, by_hand, tolerance=0.01)

    # and once more: the followed copy is still linked after a second restart
    third = _restart(again, window_factory)
    third.set_pane_transform(1, ihc_to_he)
    ihc = third.annotations.controllers[third.views[1]]
    want = apply_matrix(kept.geometry, np.linalg.inv(ihc_to_he))
    assert shapely.equals_exact(ihc.document.get(follows.id).geometry, want, tolerance=0.01)
    assert shapely.equals_exact(ihc.document.get(moved.id).geometry, by_hand, tolerance=0.01)


def test_a_case_reopened_without_a_session_keeps_its_copies_linked(window_factory, synthetic_case):
    """A project case reopens its pair and registration without the session file."""
    window = window_factory()
    ihc_to_he = np.array(
        json.loads((synthetic_case / "truth.json").read_text())["transform_ihc_to_he"]
    )
    paths = [synthetic_case / "he.svs", synthetic_case / "ihc.svs"]
    assert window.open_slides(paths, ihc_to_he).wait()
    stroma = Annotation(shapely.Point(1500, 1200).buffer(100), class_name="Stroma")
    ihc = window.annotations.controllers[window.views[1]]
    ihc.push(Add([stroma]))
    ihc.select([stroma.id])
    (copy,) = window.pair_annotations.copy_selected(window.views[1])  # IHC -> H&E
    window.close()  # no session saved

    again = window_factory()
    assert again.open_slides(paths, ihc_to_he).wait()
    again.set_pane_transform(1, NUDGE @ ihc_to_he)
    he = again.annotations.controllers[again.views[0]]
    want = apply_matrix(stroma.geometry, NUDGE @ ihc_to_he)
    assert shapely.equals_exact(he.document.get(copy.id).geometry, want, tolerance=0.01)


def test_only_an_unedited_unlocked_copy_with_a_sound_link_follows():
    """Qt-free part: what the link in a copy's file says, read back defensively."""
    matrix = np.array([[1.0, 0.0, 5.0], [0.0, 1.0, 7.0], [0.0, 0.0, 1.0]])
    copy = place(Annotation(shapely.Point(100.00004, 50.0).buffer(20)), "src-id", "fp", matrix)
    assert copy.geometry.bounds[0] == pytest.approx(80.0, abs=1e-3)  # on the files' grid
    assert copy.copy_link["source"] == "src-id"
    assert np.array_equal(placed_matrix(copy, "fp"), matrix)
    assert placed_matrix(copy, "another slide") is None
    assert placed_matrix(copy.replace(locked=True), "fp") is None
    moved = copy.replace(geometry=shapely.affinity.translate(copy.geometry, 0.01))
    assert placed_matrix(moved, "fp") is None  # edited
    for damaged in ([[1.0, 2.0]], "eye", [[float("nan")] * 3] * 3, None):
        link = {**copy.copy_link, "matrix": damaged}
        assert placed_matrix(copy.replace(copy_link=link), "fp") is None
