"""The blinded reading window: one case at a time, big answer buttons, honest timer.

The window only talks to a :class:`~her2viewer.study.reading.ReadingSession`
(which cannot read the truth, nor the model in an unassisted arm) and shows
cases by their position in the reader's order ("Case 12 of 21"), never by case
id or file name. Slides are opened on a worker thread and drawn by the shared
:class:`~her2viewer.gui.slideview.SlideView`; an answer is committed to the study
file the moment its button is pressed.

The IHC pane follows the H&E through the case's registration stored in the study
(relatively when there is none), with the linked cursor, as in the main viewer.
The reader may mark the point or outline behind the call (stored with the answer,
seen by nobody else) and, where the study asks, give a HER2 score and the
percentage of complete membrane staining. Reading time excludes pauses and idle
gaps over the study's limit (:class:`~her2viewer.study.reading.ActiveClock`).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from PySide6.QtCore import QEvent, Qt, QTimer
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QApplication,
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QSplitter,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from her2viewer.errors import Her2ViewerError, StudyError
from her2viewer.gui.app import has_display
from her2viewer.gui.opener import SlideOpener
from her2viewer.gui.slideview import SlideView
from her2viewer.gui.study.marks import MarkPainter, MarkTool
from her2viewer.gui.sync import SyncGroup
from her2viewer.gui.tiles import TileLoader, shared_loader
from her2viewer.overlay.layers import HeatmapLayer
from her2viewer.study.definition import CONFIDENCE_SCALES, HER2_SCORES, MAX_READING_SECONDS
from her2viewer.study.marks import ReaderMark
from her2viewer.study.reading import ActiveClock, ReadingSession

#: Input that shows the reader is at work (ends an idle gap).
ACTIVITY_EVENTS = frozenset(
    {
        QEvent.Type.MouseMove,
        QEvent.Type.MouseButtonPress,
        QEvent.Type.Wheel,
        QEvent.Type.KeyPress,
    }
)

#: Answer keys: status questions use P/N, others the digits 1.. in label order.
STATUS_KEYS = {"positive": "P", "negative": "N"}


def answer_keys(labels: tuple[str, ...]) -> dict[str, str]:
    """Keyboard shortcut per answer label."""
    if set(labels) == set(STATUS_KEYS):
        return dict(STATUS_KEYS)
    return {label: str(i + 1) for i, label in enumerate(labels[:9])}


def _ask_leave_unanswered(parent: QWidget) -> bool:
    reply = QMessageBox.question(
        parent,
        "Case not answered",
        "You have not answered this case. Leave it unanswered for now?",
        QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
        QMessageBox.StandardButton.No,
    )
    return reply == QMessageBox.StandardButton.Yes


class ReadingWindow(QMainWindow):
    """Full-window reading mode for one reader and one arm.

    Parameters
    ----------
    session : ReadingSession
        The reader's blinded session (the window closes it on close).
    loader : TileLoader, optional
        Tile loader; the application's shared one by default.
    confirm_leave : callable, optional
        ``confirm_leave(window) -> bool`` asked before leaving an unanswered case
        (a message box by default; tests pass a function).
    clock : callable, optional
        Monotonic seconds (``time.monotonic`` by default; tests pass a fake).
    """

    def __init__(
        self,
        session: ReadingSession,
        loader: TileLoader | None = None,
        confirm_leave: Callable[[QWidget], bool] = _ask_leave_unanswered,
        clock: Callable[[], float] = time.monotonic,
    ):
        super().__init__()
        self.session = session
        self.loader = loader or shared_loader()
        self.confirm_leave = confirm_leave
        self.clock = clock
        self.position = -1
        self.case = None
        self.paused = False
        self.slides: list = []
        self.timer = ActiveClock(session.rules.idle_limit_s)
        self._base_seconds = 0.0
        self.mark: ReaderMark | None = None
        self._retired: list = []
        self.model_layer: HeatmapLayer | None = None
        self._retire_timer = QTimer(self, singleShot=True, interval=500)
        self._retire_timer.timeout.connect(self._close_retired)
        self.opener = SlideOpener(
            self, failure="this case's slide cannot be opened; tell the study coordinator."
        )
        self.opener.opened.connect(self._on_opened)
        self.opener.failed.connect(self._on_failed)
        self.setWindowTitle(f"Reader study — reading as {session.reader} ({session.arm.name} arm)")
        self._build()
        QApplication.instance().installEventFilter(self)
        self.go_to(session.resume_position(), confirm=False)

    # -- layout --------------------------------------------------------------------
    def _build(self) -> None:
        self.views = [SlideView(self.loader, "H&E"), SlideView(self.loader, "IHC")]
        self.sync = SyncGroup(self)
        splitter = QSplitter(Qt.Orientation.Horizontal)
        self.mark_tool = MarkTool(self._slide_of, self.set_mark)
        painter = MarkPainter(self._mark_and_view, self.sync.matrix, self.mark_tool)
        for view in self.views:
            splitter.addWidget(view)
            self.sync.add(view)
            view.vector_painters.append(painter)
        self.message = QLabel(alignment=Qt.AlignmentFlag.AlignCenter)
        self.message.setStyleSheet("font-size: 22px; color: #ddd; background: #26282c;")
        self.stack = QStackedWidget()
        self.stack.addWidget(splitter)
        self.stack.addWidget(self.message)
        panel = QWidget()
        panel.setFixedWidth(320)
        layout = QVBoxLayout(panel)
        self.title = QLabel(styleSheet="font-size: 24px; font-weight: bold;")
        self.progress_label = QLabel()
        self.progress = QProgressBar(maximum=max(self.session.total, 1), textVisible=False)
        layout.addWidget(self.title)
        layout.addWidget(self.progress_label)
        layout.addWidget(self.progress)
        layout.addWidget(self._question_box())
        self.model_box = self._model_box() if self.session.arm.shows_model else None
        if self.model_box is not None:
            layout.addWidget(self.model_box)
        layout.addLayout(self._navigation())
        self.status = QLabel(wordWrap=True)
        layout.addWidget(self.status)
        layout.addStretch(1)
        central = QWidget()
        row = QHBoxLayout(central)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.stack, 1)
        row.addWidget(panel)
        self.setCentralWidget(central)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        QShortcut(QKeySequence("F11"), self, self._toggle_full_screen)

    def _question_box(self) -> QGroupBox:
        question = self.session.question
        box = QGroupBox("Your answer")
        layout = QVBoxLayout(box)
        self.answer_group = QButtonGroup(self)
        self.answer_buttons: dict[str, QPushButton] = {}
        for label, key in answer_keys(question.labels).items():
            button = QPushButton(f"{label}    [{key}]", checkable=True)
            button.setMinimumHeight(56)
            button.setStyleSheet("font-size: 20px;")
            button.clicked.connect(lambda _=False, lab=label: self.give_answer(lab))
            QShortcut(QKeySequence(key), self, lambda lab=label: self.give_answer(lab))
            self.answer_group.addButton(button)
            self.answer_buttons[label] = button
            layout.addWidget(button)
        scale = CONFIDENCE_SCALES[question.confidence]
        self.confidence = None
        if scale is not None:
            self.confidence = QSpinBox(minimum=scale[0], maximum=scale[1])
            self.confidence.setSpecialValueText("—")
            self.confidence.setMinimum(scale[0] - 1)
            caption = "probability positive (%)" if question.confidence == "0-100" else "certainty"
            layout.addWidget(QLabel(f"Confidence: {caption} {question.confidence}"))
            layout.addWidget(self.confidence)
        self._details(layout)
        self.comment = QLineEdit(placeholderText="comment (optional)")
        layout.addWidget(self.comment)
        layout.addLayout(self._mark_buttons())
        return box

    def _details(self, layout: QVBoxLayout) -> None:
        """The HER2 score and membrane percentage, where the study asks for them."""
        rules = self.session.rules
        self.her2_score = self.membrane = None
        if rules.ask_her2_score:
            self.her2_score = QComboBox()
            self.her2_score.addItems(["—", *HER2_SCORES])
            layout.addWidget(QLabel("HER2 score"))
            layout.addWidget(self.her2_score)
        if rules.ask_membrane_percent:
            self.membrane = QSpinBox(minimum=-1, maximum=100, suffix=" %")
            self.membrane.setSpecialValueText("—")
            layout.addWidget(QLabel("Complete membrane staining, % of tumour cells", wordWrap=True))
            layout.addWidget(self.membrane)

    def _mark_buttons(self) -> QHBoxLayout:
        row = QHBoxLayout()
        row.addWidget(QLabel("Mark:"))
        self.mark_buttons = {}
        for mode, text, key in (("point", "Point", "M"), ("outline", "Outline", "O")):
            button = QPushButton(f"{text} [{key}]", checkable=True)
            button.toggled.connect(lambda on, m=mode: self.set_mark_mode(m if on else None))
            QShortcut(QKeySequence(key), self, button.toggle)
            self.mark_buttons[mode] = button
            row.addWidget(button)
        clear = QPushButton("Clear")
        clear.clicked.connect(lambda: self.set_mark(None))
        row.addWidget(clear)
        return row

    # -- marks ---------------------------------------------------------------------
    def set_mark_mode(self, mode: str | None) -> None:
        """Click (``point``) or drag (``outline``) on a pane to mark; ``None``: pan again."""
        for name, button in self.mark_buttons.items():
            button.blockSignals(True)
            button.setChecked(name == mode)
            button.blockSignals(False)
        if mode is not None:
            self.mark_tool.mode = mode
        for view in self.views:
            view.tool = None if mode is None else self.mark_tool
            if mode is None:
                view.unsetCursor()  # the pane's own cursor again (open hand while panning)
            else:
                view.setCursor(Qt.CursorShape.CrossCursor)

    def set_mark(self, mark: ReaderMark | None) -> None:
        """Keep ``mark`` for the answer given next (it is stored with that answer)."""
        self.mark = mark
        self.set_mark_mode(None)
        for view in self.views:
            view.update()

    def _slide_of(self, view: SlideView) -> str:
        return "he" if view is self.views[0] else "ihc"

    def _mark_and_view(self):
        if self.mark is None:
            return None, None
        return self.mark, self.views[0 if self.mark.slide == "he" else 1]

    def _model_box(self) -> QGroupBox:
        box = QGroupBox("Model (assisted arm)")
        layout = QVBoxLayout(box)
        self.model_label = QLabel(wordWrap=True)
        self.show_model_layer = QCheckBox("show model heatmap  [H]", checked=True, enabled=False)
        self.show_model_layer.toggled.connect(self._on_model_layer_toggled)
        QShortcut(QKeySequence("H"), self, self.show_model_layer.toggle)
        layout.addWidget(self.model_label)
        layout.addWidget(self.show_model_layer)
        return box

    def _on_model_layer_toggled(self, on: bool) -> None:
        if self.model_layer is not None:
            self.model_layer.visible = on
            self.views[0].refresh()

    def _navigation(self) -> QHBoxLayout:
        row = QHBoxLayout()
        self.prev_button = QPushButton("◀ Previous")
        self.pause_button = QPushButton("Pause", checkable=True)
        self.next_button = QPushButton("Next ▶")
        self.prev_button.clicked.connect(lambda: self.go_to(self.position - 1))
        self.next_button.clicked.connect(lambda: self.go_to(self.position + 1))
        self.pause_button.toggled.connect(self.set_paused)
        QShortcut(QKeySequence("PgUp"), self, lambda: self.go_to(self.position - 1))
        QShortcut(QKeySequence("PgDown"), self, lambda: self.go_to(self.position + 1))
        QShortcut(QKeySequence("Space"), self, self.pause_button.toggle)
        for button in (self.prev_button, self.pause_button, self.next_button):
            row.addWidget(button)
        return row

    # -- timer ---------------------------------------------------------------------
    def visit_seconds(self) -> float:
        """Seconds spent on the current case during this visit, pauses and idle excluded."""
        return self.timer.seconds(self.clock())

    def eventFilter(self, watched, event) -> bool:  # noqa: N802 - Qt override
        """Any mouse or key input ends an idle gap (the filter never consumes events)."""
        if event.type() in ACTIVITY_EVENTS:
            self.timer.activity(self.clock())
        return False

    def set_paused(self, paused: bool) -> None:
        """Pause (hide the slide, stop the timer, lock the answers) or resume."""
        self.paused = paused
        if self.pause_button.isChecked() != paused:
            self.pause_button.setChecked(paused)
        if paused:
            self.timer.stop(self.clock())
            self._show_message("Paused — press Space or Pause to continue.")
        else:
            self.timer.start(self.clock())
            self._show_case_view()
        for button in self.answer_buttons.values():
            button.setEnabled(not paused)

    # -- navigation ----------------------------------------------------------------
    def go_to(self, position: int, confirm: bool = True) -> bool:
        """Show the case at a 0-based position; asks before leaving an unanswered case.

        Refused while paused (the slides stay hidden and the clock stopped).
        """
        if self.paused or not 0 <= position < self.session.total or position == self.position:
            return False
        unanswered = self.case is not None and self.session.case(self.position).answer is None
        if confirm and unanswered and not self.confirm_leave(self):
            return False
        self.position = position
        self.case = self.session.case(position)
        self.timer = ActiveClock(self.session.rules.idle_limit_s)
        self._base_seconds = self.case.seconds
        if not self.paused:
            self.timer.start(self.clock())
        self.set_mark(self.case.mark)
        self._refresh_panel()
        self._load_slides()
        self.setFocus()  # answer keys act at once, not typed into the comment field
        return True

    def _refresh_panel(self) -> None:
        case = self.case
        answered = self.session.answered()
        self.title.setText(case.title)
        self.progress_label.setText(f"{answered}/{case.total} answered")
        self.progress.setValue(answered)
        self.answer_group.setExclusive(False)
        for label, button in self.answer_buttons.items():
            button.setChecked(label == case.answer)
        self.answer_group.setExclusive(True)
        if self.confidence is not None:
            value = case.confidence
            self.confidence.setValue(int(value) if value is not None else self.confidence.minimum())
        self.comment.setText(case.comment)
        if self.her2_score is not None:
            self.her2_score.setCurrentIndex(
                HER2_SCORES.index(case.her2_score) + 1 if case.her2_score else 0
            )
        if self.membrane is not None:
            percent = case.membrane_percent
            self.membrane.setValue(-1 if percent is None else round(percent))
        if self.model_box is not None:
            hint = case.model
            text = "no model output for this case"
            if hint is not None:
                text = f"prediction: {hint.prediction}"
                if hint.probability is not None:
                    text += f"\nprobability positive: {hint.probability:.2f}"
            self.model_label.setText(text)
        self.prev_button.setEnabled(case.position > 0)
        self.next_button.setEnabled(case.position < case.total - 1)
        done = answered == case.total
        self.status.setText("All cases answered — thank you." if done else "")

    def _load_slides(self) -> None:
        self._retire_slides()
        if not self.case.slide_available:
            self._show_message(
                f"The slide of case {self.case.position + 1} is missing on this computer.\n"
                "Skip it and tell the study coordinator."
            )
            return
        self._show_message("Loading…")
        he_path, ihc_path = self.session.slide_paths(self.case.position)
        overlay = None
        if self.session.arm.shows_model:
            overlay = partial(self.session.model_overlay, self.case.position)
        self.opener.request(he_path, ihc_path, overlay)

    def _on_opened(self, token: int, he, ihc, overlay) -> None:
        if token != self.opener.token:
            for slide in (he, ihc):
                if slide is not None:
                    slide.close()
            return
        self.slides = [s for s in (he, ihc) if s is not None]
        self.views[0].set_slide(he, title="H&E")
        self.model_layer = None
        if overlay is not None:
            self.model_layer = HeatmapLayer(
                name=overlay.name, values=overlay.scores, downsample=overlay.downsample,
                opacity=0.45, visible=self.show_model_layer.isChecked(),
            )  # fmt: skip
            self.views[0].add_layer(self.model_layer)
        if self.model_box is not None:
            self.show_model_layer.setEnabled(overlay is not None)
        self.views[1].setVisible(ihc is not None)
        if ihc is not None:
            self.views[1].set_slide(ihc, title="IHC")
            try:
                matrix = self.session.registration(self.case.position)
            except Her2ViewerError as exc:
                matrix = None
                self.status.setText(str(exc))
            self.sync.set_transform(self.views[1], matrix)
            if matrix is not None:
                self.views[0].view_changed.emit()  # the IHC pane moves onto the same tissue
        if not self.paused:
            self._show_case_view()

    def _on_failed(self, token: int, message: str) -> None:
        if token == self.opener.token:
            self._show_message(message)

    def _show_message(self, text: str) -> None:
        self.message.setText(text)
        self.stack.setCurrentWidget(self.message)

    def _show_case_view(self) -> None:
        if self.slides:
            self.stack.setCurrentIndex(0)
        elif self.case is not None and not self.case.slide_available:
            self._load_slides()

    def _retire_slides(self) -> None:
        """Stop the views' tile requests; close the slides once no tile read is in flight."""
        for view in self.views:
            self.loader.cancel(view._owner)  # the owner id SlideView submits its tiles under
        self._retired += self.slides
        self.slides = []
        self._close_retired()

    def _close_retired(self, wait: float = 0.0) -> None:
        if not self._retired:
            return
        if not self.loader.wait_idle(wait):
            self._retire_timer.start()
            return
        for slide in self._retired:
            slide.close()
        self._retired = []

    # -- answers -------------------------------------------------------------------
    def give_answer(self, label: str, advance: bool = True) -> None:
        """Commit an answer for the current case (with confidence, comment and time)."""
        if self.paused or self.case is None:
            return
        confidence = None
        if self.confidence is not None and self.confidence.value() >= self.confidence.minimum() + 1:
            confidence = float(self.confidence.value())
        # a case left open for days is not read for days: the store takes at most a day
        seconds = min(self._base_seconds + self.visit_seconds(), MAX_READING_SECONDS)
        score = self.her2_score.currentText() if self.her2_score is not None else None
        percent = self.membrane.value() if self.membrane is not None else -1
        try:
            self.session.answer(
                self.case.position, label, confidence, round(seconds, 3), self.comment.text(),
                her2_score=None if score in (None, "—") else score,
                membrane_percent=None if percent < 0 else float(percent),
                mark=self.mark,
            )  # fmt: skip
        except Her2ViewerError as exc:
            self.status.setText(str(exc))
            return
        self.case = self.session.case(self.position)
        self._refresh_panel()
        if advance and self.position < self.session.total - 1:
            self.go_to(self.position + 1, confirm=False)

    def _toggle_full_screen(self) -> None:
        self.showNormal() if self.isFullScreen() else self.showFullScreen()

    def showEvent(self, event) -> None:  # noqa: N802 - Qt override
        super().showEvent(event)
        self.setFocus()

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt override
        QApplication.instance().removeEventFilter(self)
        self.opener.shutdown()
        self._retire_timer.stop()
        self._retire_slides()
        self._close_retired(wait=10.0)
        self.session.close()
        super().closeEvent(event)


def run_reading_app(
    study: Path, reader: str, arm: str | None = None, pin: str | None = None
) -> int:
    """Open the reading window full-screen and run the event loop; return the exit status."""
    session = ReadingSession(study, reader, arm, pin=pin)
    if QApplication.instance() is None and not has_display():
        session.close()
        raise StudyError(
            "the reading window needs a display and none was found (DISPLAY is not set); "
            "read on a computer with a screen or over a remote desktop."
        )
    app = QApplication.instance() or QApplication(sys.argv[:1])
    window = ReadingWindow(session)
    window.showMaximized()
    return app.exec()
