"""A dock panel that runs one analysis in a background job: Run, Cancel, progress, status.

Subclasses give the work (a function of a :class:`~her2viewer.jobs.JobContext`, run off
the GUI thread) and show its result; the polling, buttons and error reporting live here once.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import (
    QDockWidget,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from her2viewer.errors import Her2ViewerError
from her2viewer.jobs import Job

POLL_MS = 100


class JobPanel(QWidget):
    """Base of the analysis panels docked on the main window.

    Parameters
    ----------
    window : MainWindow
        The window whose panes the panel reads and draws on.
    run_text : str
        Label of the Run button.
    """

    def __init__(self, window, run_text: str) -> None:
        super().__init__()
        self.window = window
        self.job: Job | None = None
        self.layers: list = []
        self.run_button = QPushButton(run_text)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.progress = QProgressBar()
        self.status = QLabel("No result yet.")
        self.status.setWordWrap(True)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        self.body = QVBoxLayout(self)
        self.body.addLayout(buttons)
        self.body.addWidget(self.progress)
        self.body.addWidget(self.status)
        self.timer = QTimer(self)
        self.timer.setInterval(POLL_MS)
        self.timer.timeout.connect(self._poll)
        self.run_button.clicked.connect(self.run)
        self.cancel_button.clicked.connect(self.cancel)

    def run(self) -> None:  # pragma: no cover - overridden
        """Start the analysis (subclasses call :meth:`start`)."""
        raise NotImplementedError

    def show_result(self, result) -> None:  # pragma: no cover - overridden
        """Show a finished job's result."""
        raise NotImplementedError

    def first_slide_path(self) -> str | None:
        """Path of the first pane's slide, or None after asking the user to open one."""
        slides = [s for s in getattr(self.window, "slides", []) if s is not None]
        if not slides:
            self.window.show_error("Open an H&E slide first.")
            return None
        return slides[0].info.path

    def model_path(self, chosen: Path | None, default: Callable[[], Path]) -> Path | None:
        """The chosen model, else ``default()``; None after showing why there is none."""
        try:
            return chosen or default()
        except Her2ViewerError as exc:
            self.window.show_error(str(exc))
            return None

    def on_tick(self) -> None:
        """Called on every poll while a job runs (e.g. to show partial results)."""

    def start(self, work: Callable, name: str, running_text: str) -> None:
        """Run ``work(context)`` in a background job and poll it from the GUI thread."""
        self.job = Job(work, name).start()
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.status.setText(running_text)
        self.timer.start()

    def cancel(self) -> None:
        """Ask the running analysis to stop."""
        if self.job is not None:
            self.job.cancel()

    def replace_layers(self, layers: list[tuple[object, int]]) -> None:
        """Remove this panel's previous layers and add ``(layer, pane index)`` pairs."""
        for layer, index in self.layers:
            self.window.views[index].remove_layer(layer)
        self.layers = list(layers)
        for layer, index in self.layers:
            self.window.add_layer(layer, index)

    def _poll(self) -> None:
        job = self.job
        if job is None:
            return
        self.progress.setMaximum(max(1, job.progress.total))
        self.progress.setValue(job.progress.done)
        self.on_tick()
        if job.state in ("pending", "running"):
            return
        self.timer.stop()
        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        self.job = None
        if job.state == "done":
            self.progress.setValue(self.progress.maximum())
            self.show_result(job.result)
        elif job.state == "cancelled":
            self.status.setText("Cancelled.")
        else:
            message = str(job.error) if isinstance(job.error, Her2ViewerError) else repr(job.error)
            self.status.setText("Failed.")
            self.window.show_error(message)


ANALYSIS_DOCK = "analysis_dock"


def dock_panel(window, panel: QWidget, title: str) -> QWidget:
    """Dock ``panel`` on the right of ``window`` under ``title`` and return it.

    Analysis panels share one tabbed dock (the first one attached stays in front), so
    the window keeps its size however many analyses are available.
    """
    dock = QDockWidget(title, window)
    dock.setObjectName(f"{title.lower().replace(' ', '_')}_dock")
    dock.setProperty(ANALYSIS_DOCK, True)
    dock.setWidget(panel)
    window.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)
    others = [d for d in window.findChildren(QDockWidget) if d.property(ANALYSIS_DOCK)]
    if others[0] is not dock:
        window.tabifyDockWidget(others[-2] if len(others) > 1 else others[0], dock)
        others[0].raise_()
    return panel
