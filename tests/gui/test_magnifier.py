"""The magnifier lens (hold Z): the tissue under the cursor at 4x, from tiles read on the
workers only (issue 19)."""

import threading

import cv2
import numpy as np
import pytest

pytest.importorskip("PySide6")

from PySide6.QtCore import QPoint, Qt  # noqa: E402

from her2viewer.gui.magnifier import RADIUS, ZOOM, Magnifier  # noqa: E402
from her2viewer.slide.base import Slide  # noqa: E402


def _grey(view) -> np.ndarray:
    image = view.grab().toImage().convertToFormat(view.grab().toImage().Format.Format_RGB888)
    w, h = image.width(), image.height()
    rows = np.frombuffer(image.constBits(), np.uint8).reshape(h, image.bytesPerLine())
    rgb = rows[:, : w * 3].reshape(h, w, 3)
    return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY).astype(np.float32)


@pytest.fixture()
def gui_thread_reads(monkeypatch):
    """Whether each slide read happened on the GUI thread."""
    calls = []
    original = Slide.read_region

    def hooked(self, *args, **kwargs):
        calls.append(threading.current_thread() is threading.main_thread())
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Slide, "read_region", hooked)
    return calls


def test_holding_z_shows_the_tissue_under_the_cursor_at_4x(
    panel_window, synthetic_case, qtbot, gui_thread_reads
):
    window = panel_window
    assert window.open_in_pane(synthetic_case / "he.svs", 0).wait()
    view = window.views[0]
    qtbot.waitUntil(view.fully_loaded, timeout=20000)
    lens = next(p for p in view.vector_painters if isinstance(p, Magnifier))
    centre = QPoint(view.width() // 2, view.height() // 2)
    qtbot.mouseMove(view, centre)
    plain = _grey(view)
    view.setFocus()
    qtbot.keyPress(view, Qt.Key.Key_Z)
    assert view.target_level() >= 2  # the fitted small slide: the lens has finer tiles
    assert lens.active and lens.level() == view.target_level() - 2
    qtbot.waitUntil(lambda: view.loader.pending(id(lens)) == 0, timeout=20000)
    qtbot.wait(50)
    magnified = _grey(view)
    # the lens shows what lies within RADIUS / ZOOM of the cursor, ZOOM times larger
    half = int(RADIUS / ZOOM)
    cx, cy = centre.x(), centre.y()
    source = plain[cy - half : cy + half, cx - half : cx + half]
    expected = cv2.resize(source, (2 * half * int(ZOOM),) * 2, interpolation=cv2.INTER_LINEAR)
    inner = int(half * ZOOM * 0.8)
    side = 2 * half * int(ZOOM)
    shown = magnified[cy - side // 2 : cy + side // 2, cx - side // 2 : cx + side // 2]
    box = slice(side // 2 - inner, side // 2 + inner)
    correlation = np.corrcoef(shown[box, box].ravel(), expected[box, box].ravel())[0, 1]
    assert correlation > 0.8
    assert not np.allclose(shown[box, box], plain[cy - inner : cy + inner, cx - inner : cx + inner])
    qtbot.keyRelease(view, Qt.Key.Key_Z)
    assert not lens.active
    assert np.array_equal(_grey(view), plain)
    assert gui_thread_reads and not any(gui_thread_reads)  # every read on a worker


def test_the_lens_follows_the_mouse_and_is_drawn_last(panel_window, synthetic_case, qtbot):
    window = panel_window
    assert window.open_in_pane(synthetic_case / "he.svs", 0).wait()
    view = window.views[0]
    lens = next(p for p in view.vector_painters if isinstance(p, Magnifier))
    lens.show_at(QPoint(100, 80))
    assert view.vector_painters[-1] is lens
    qtbot.mouseMove(view, QPoint(300, 200))
    assert (lens.centre.x(), lens.centre.y()) == (300, 200)
    lens.hide()
    qtbot.mouseMove(view, QPoint(310, 200))
    assert (lens.centre.x(), lens.centre.y()) == (300, 200)  # hidden: no longer follows
