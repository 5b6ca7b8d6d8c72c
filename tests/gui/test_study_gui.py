"""The reading window (offscreen): blinding of every widget, answers, timer, pause, resume."""

from __future__ import annotations

import pytest
from study_util import make_study

pytest.importorskip("PySide6")

from PySide6.QtCore import Qt  # noqa: E402
from PySide6.QtWidgets import QAbstractButton, QLabel, QLineEdit, QWidget  # noqa: E402

from her2viewer.gui.study.window import ReadingWindow, answer_keys  # noqa: E402
from her2viewer.gui.tiles import TileCache, TileLoader  # noqa: E402
from her2viewer.study.reading import ReadingSession  # noqa: E402
from her2viewer.study.store import StudyStore  # noqa: E402

LEAKS = ("HER2POS", "HER2NEG", "truth_", "he_truth", "ihc_truth", "0.8731", "0.87", "0.13")


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


def _open(qtbot, path, loader, arm="unassisted", answers=None, clock=None):
    asked = [] if answers is None else answers
    session = ReadingSession(path, "alice", arm)
    window = ReadingWindow(
        session,
        loader,
        confirm_leave=lambda w: asked.append(w.position) or False,
        clock=clock or FakeClock(),
    )
    qtbot.addWidget(window)
    window.show()
    return window


def _all_text(window: QWidget) -> str:
    parts = [window.windowTitle()]
    for widget in window.findChildren(QWidget):
        parts += [
            widget.toolTip(),
            widget.statusTip(),
            widget.windowTitle(),
            widget.accessibleName(),
        ]
        if isinstance(widget, (QLabel, QAbstractButton, QLineEdit)):
            parts.append(widget.text())
        if hasattr(widget, "title") and isinstance(widget.title, str):
            parts.append(widget.title)
    return "\n".join(parts)


def test_reading_window_blinded_unassisted(qtbot, tmp_path, cmu_svs, loader):
    path = make_study(tmp_path, n=6, slide=cmu_svs)
    window = _open(qtbot, path, loader)
    qtbot.waitUntil(lambda: bool(window.slides), timeout=15000)
    assert window.stack.currentIndex() == 0
    assert window.title.text() == "Case 1 of 6"
    assert window.progress_label.text() == "0/6 answered"
    assert window.model_box is None
    assert window.views[1].isVisible()
    text = _all_text(window)
    for leak in LEAKS:
        assert leak not in text, leak
    window.close()


def test_answers_commit_advance_and_confirm_before_leaving(qtbot, tmp_path, loader):
    path = make_study(tmp_path, n=4)  # no slide files: the window says so and still records
    asked: list[int] = []
    clock = FakeClock()
    window = _open(qtbot, path, loader, answers=asked, clock=clock)
    assert "missing on this computer" in window.message.text()
    assert window.stack.currentWidget() is window.message
    clock.now += 5.0
    window.set_paused(True)
    assert "Paused" in window.message.text()
    assert not window.answer_buttons["positive"].isEnabled()
    assert not window.go_to(2, confirm=False)  # no browsing while paused
    clock.now += 100.0  # paused time does not count
    window.set_paused(False)
    clock.now += 2.0
    window.answer_buttons["positive"].click()
    assert window.position == 1 and window.progress_label.text() == "1/4 answered"
    with StudyStore(path) as store:
        (answer,) = store.answers()
    assert answer.answer == "positive" and answer.seconds == pytest.approx(7.0)
    assert not window.go_to(2)  # unanswered: asks, and the fake says "stay"
    assert asked == [1] and window.position == 1
    window.comment.setText("faint membrane?")
    window.give_answer("negative", advance=False)
    window.give_answer("positive", advance=False)  # change of mind: a new revision
    with StudyStore(path) as store:
        history = [a for a in store.answers(current_only=False) if a.comment]
    assert [a.answer for a in history] == ["negative", "positive"]
    assert window.answer_buttons["positive"].isChecked()
    window.close()


def test_window_resumes_where_reader_stopped(qtbot, tmp_path, loader):
    path = make_study(tmp_path, n=5)
    window = _open(qtbot, path, loader)
    for _ in range(3):
        window.give_answer("negative")
    window.close()
    again = _open(qtbot, path, loader)
    assert again.position == 3 and again.title.text() == "Case 4 of 5"
    assert again.progress_label.text() == "3/5 answered"
    again.go_to(0, confirm=False)
    assert again.answer_buttons["negative"].isChecked()
    again.close()


def test_keyboard_shortcut_answers(qtbot, tmp_path, loader):
    path = make_study(tmp_path, n=3)
    window = _open(qtbot, path, loader)
    with qtbot.waitActive(window):
        window.activateWindow()
    qtbot.keyClick(window, Qt.Key.Key_N)
    with StudyStore(path) as store:
        assert [a.answer for a in store.answers()] == ["negative"]
    assert answer_keys(("0", "1+", "2+", "3+")) == {"0": "1", "1+": "2", "2+": "3", "3+": "4"}
    window.close()


def test_assisted_arm_shows_model_output(qtbot, tmp_path, loader):
    path = make_study(tmp_path, n=2)
    window = _open(qtbot, path, loader, arm="assisted")
    assert window.model_box is not None
    assert "probability positive: 0.87" in window.model_label.text() or (
        "probability positive: 0.13" in window.model_label.text()
    )
    assert "HER2POS" not in _all_text(window)
    window.close()


def test_results_window_draws_summary(qtbot, tmp_path):
    from her2viewer.errors import StudyError
    from her2viewer.gui.study.results import ResultsWindow, load_summary
    from her2viewer.study.report import write_report

    path = make_study(tmp_path, n=6)
    with StudyStore(path) as store:
        for reader in ("ann", "ben"):
            store.ensure_reader(reader)
            for case_id in store.truth():
                store.record_answer(reader, "unassisted", case_id, "positive", seconds=4.0)
    write_report(path, tmp_path / "rep", n_boot=50)
    window = ResultsWindow(load_summary(tmp_path / "rep"))
    qtbot.addWidget(window)
    assert window.tabs.count() == 5
    assert window.tabs.widget(4).rowCount() == 3 * 2  # model + 2 readers, 2 labels each
    roc = window.tabs.widget(0)
    assert len(roc.getPlotItem().listDataItems()) == 1 + 1 + 2  # diagonal, model, 2 readers
    assert window.tabs.widget(2).rowCount() > 0
    with pytest.raises(StudyError, match="not a readable study summary"):
        load_summary(tmp_path / "nothing.json")
