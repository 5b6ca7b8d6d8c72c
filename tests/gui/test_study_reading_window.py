"""The reading window (offscreen) on a registered pair: panes and cursor through the study's
registration, the reader's mark, HER2 score and membrane percentage, idle time."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("PySide6")

from PySide6.QtCore import QEvent, QPointF, Qt  # noqa: E402
from PySide6.QtGui import QMouseEvent  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from her2viewer.gui.study.window import ReadingWindow  # noqa: E402
from her2viewer.gui.tiles import TileCache, TileLoader  # noqa: E402
from her2viewer.study.definition import (  # noqa: E402
    CaseRow,  # noqa: E402
    ReadingRules,
    make_question,
)
from her2viewer.study.reading import ReadingSession  # noqa: E402
from her2viewer.study.store import CaseRegistration, StudyStore  # noqa: E402

#: IHC -> H&E: a rotation by about 5 degrees and a shift, as the synthetic pair has.
MATRIX = np.array([[0.996, 0.087, -150.0], [-0.087, 0.996, 210.0], [0.0, 0.0, 1.0]])


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def loader():
    loader = TileLoader(TileCache(64), workers=1)
    yield loader
    loader.shutdown()


def _study(tmp_path, case_dir, rules):
    cases = [
        CaseRow(f"c{i}", str(case_dir / "he.svs"), str(case_dir / "ihc.svs")) for i in range(2)
    ]
    path = tmp_path / "registered.h2study"
    regs = {c.case_id: CaseRegistration(MATRIX, "test", 2.0) for c in cases}
    StudyStore.create(path, make_question("status"), cases, rules=rules, registrations=regs).close()
    return path


def _window(qtbot, path, loader, clock):
    window = ReadingWindow(ReadingSession(path, "alice"), loader, lambda w: True, clock)
    qtbot.addWidget(window)
    window.resize(1200, 700)
    window.show()
    qtbot.waitUntil(lambda: bool(window.slides), timeout=20000)
    return window


def _drag(view, points):
    """Press, move through and release the left button over ``view`` at screen points."""
    kinds = [QEvent.Type.MouseButtonPress] + [QEvent.Type.MouseMove] * (len(points) - 2)
    kinds.append(QEvent.Type.MouseButtonRelease)
    for kind, (x, y) in zip(kinds, points, strict=True):
        pos = QPointF(x, y)
        buttons = Qt.MouseButton.NoButton if kind == QEvent.Type.MouseButtonRelease else (
            Qt.MouseButton.LeftButton
        )  # fmt: skip
        event = QMouseEvent(
            kind, pos, view.mapToGlobal(pos), Qt.MouseButton.LeftButton, buttons,
            Qt.KeyboardModifier.NoModifier,
        )  # fmt: skip
        QApplication.sendEvent(view, event)


def test_panes_and_cursor_follow_the_stored_registration(qtbot, tmp_path, synthetic_case, loader):
    window = _window(qtbot, _study(tmp_path, synthetic_case, None), loader, FakeClock())
    he, ihc = window.views
    assert window.sync.has_transform(ihc)
    assert np.allclose(window.sync.matrix(ihc, he), MATRIX)
    he.set_state(he.state.__class__(1200.0, 900.0, 2.0))
    centre = MATRIX @ [ihc.state.cx, ihc.state.cy, 1.0]
    assert np.allclose(centre[:2], (1200.0, 900.0), atol=1.0)  # same tissue in both panes
    he.cursor_moved.emit(1000.0, 800.0)
    expected = np.linalg.inv(MATRIX) @ [1000.0, 800.0, 1.0]
    assert np.allclose(ihc.crosshair, expected[:2])
    window.close()


def test_mark_score_membrane_and_idle_time_go_with_the_answer(
    qtbot, tmp_path, synthetic_case, loader
):
    rules = ReadingRules(idle_limit_s=60, ask_her2_score=True, ask_membrane_percent=True)
    path = _study(tmp_path, synthetic_case, rules)
    clock = FakeClock()
    window = _window(qtbot, path, loader, clock)
    he, ihc = window.views
    window.give_answer("positive", advance=False)  # score and percentage missing
    assert "asks for a HER2 score" in window.status.text()
    window.set_mark_mode("outline")
    assert he.tool is window.mark_tool and ihc.tool is window.mark_tool
    _drag(ihc, [(200, 200), (320, 210), (330, 330), (210, 320)])
    assert window.mark.slide == "ihc" and window.mark.geometry.geom_type == "Polygon"
    assert he.tool is None  # back to panning
    first = window.mark
    window.set_mark_mode("point")
    qtbot.mouseClick(he, Qt.MouseButton.LeftButton, pos=he.rect().center())
    assert window.mark.geometry.geom_type == "Point" and window.mark.slide == "he"
    window.set_mark(first)
    window.her2_score.setCurrentText("2+")
    window.membrane.setValue(35)
    clock.now += 10.0
    QApplication.sendEvent(he, QMouseEvent(
        QEvent.Type.MouseMove, QPointF(5, 5), he.mapToGlobal(QPointF(5, 5)),
        Qt.MouseButton.NoButton, Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier,
    ))  # fmt: skip
    clock.now += 500.0  # away from the desk: only the idle limit (60 s) counts
    window.give_answer("positive")
    with StudyStore(path) as store:
        (answer,) = store.answers()
    assert answer.seconds == pytest.approx(70.0)
    assert (answer.her2_score, answer.membrane_percent) == ("2+", 35.0)
    assert answer.reader_mark().geometry.equals(first.geometry)
    assert window.position == 1 and window.mark is None  # the next case starts unmarked
    window.go_to(0, confirm=False)
    assert window.mark.geometry.equals(first.geometry)  # the reader's own mark comes back
    assert window.her2_score.currentText() == "2+" and window.membrane.value() == 35
    window.close()
