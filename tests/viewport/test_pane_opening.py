"""Rule 3 in the main window: slides open on a worker, the pane says so, errors go to the box."""

import threading

import numpy as np
import pytest

pytest.importorskip("PySide6")

from PySide6.QtWidgets import QMessageBox  # noqa: E402

from her2viewer.gui.app import settle  # noqa: E402
from her2viewer.slide.base import Slide  # noqa: E402


@pytest.fixture()
def window(panel_window):
    return panel_window


@pytest.fixture()
def png(tmp_path):
    from PIL import Image

    image = np.full((900, 1400, 3), 235, np.uint8)
    image[200:700, 300:1100] = (200, 120, 170)
    path = tmp_path / "plain.png"
    Image.fromarray(image).save(path)
    return path


@pytest.fixture()
def gui_thread_reads(monkeypatch):
    """The GUI-thread read hook: for every slide opened or read, whether it was on the GUI
    thread (opening a slide reads it: a plain image is decoded and its pyramid built)."""
    calls = []
    for name in ("__init__", "read_region", "thumbnail", "associated_image"):
        original = getattr(Slide, name)

        def hooked(self, *args, _original=original, _name=name, **kwargs):
            calls.append((_name, threading.current_thread() is threading.main_thread()))
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(Slide, name, hooked)
    return calls


@pytest.mark.parametrize("kind", ["png", "svs"])
def test_opening_a_slide_reads_nothing_on_the_gui_thread(
    window, png, synthetic_case, gui_thread_reads, kind
):
    path = png if kind == "png" else synthetic_case / "he.svs"
    opening = window.open_in_pane(str(path), 0)
    assert window.views[0].message == f"opening {path.name}…"
    assert window.opening and opening.ok is None
    assert opening.wait(30)
    assert window.views[0].message is None and not window.opening
    assert window.slides[0].info.path.endswith(path.name)
    assert settle(window, 30)
    assert ("__init__", False) in gui_thread_reads
    assert not [name for name, on_gui in gui_thread_reads if on_gui], "read on the GUI thread"


def test_a_slide_that_cannot_open_goes_to_the_message_box(window, tmp_path, gui_thread_reads):
    bad = tmp_path / "broken.svs"
    bad.write_bytes(b"not a slide")
    opening = window.open_in_pane(str(bad), 1)
    assert window.views[1].message == "opening broken.svs…"
    assert not opening.wait(30)
    assert window.views[1].message is None and window.slides[1] is None
    assert "broken.svs" in window.errors[-1] and "\n" not in window.errors[-1]
    boxes = [box for box in window.findChildren(QMessageBox) if box.isVisible()]
    assert boxes and boxes[-1].text() == window.errors[-1]


def test_a_newer_open_in_the_same_pane_replaces_the_pending_one(window, png, synthetic_case):
    first = window.open_in_pane(str(synthetic_case / "he.svs"), 0)
    second = window.open_in_pane(str(png), 0)
    assert window.views[0].message == "opening plain.png…"
    assert second.wait(30) and first.ok is False
    assert window.slides[0].info.path.endswith("plain.png") and not window.errors


def test_a_pair_opens_together_and_is_linked_once_both_are_open(window, synthetic_case):
    matrix = np.array([[1.0, 0.0, 25.0], [0.0, 1.0, -10.0], [0.0, 0.0, 1.0]])
    opening = window.open_slides([synthetic_case / "he.svs", synthetic_case / "ihc.svs"], matrix)
    assert [view.message for view in window.views] == ["opening he.svs…", "opening ihc.svs…"]
    assert opening.wait(30)
    he, ihc = window.views
    np.testing.assert_allclose(window.sync.matrix(ihc, he), matrix)
    assert window.sync.has_transform(ihc)
