"""A dock panel that runs one analysis in a background job: Run, Cancel, progress, status.

Subclasses give the work (a function of a :class:`~her2viewer.jobs.JobContext`, run off
the GUI thread) and show its result; the polling, buttons and error reporting live here once.
"""

from __future__ import annotations

from collections.abc import Callable

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
        self.panes: tuple[int, ...] = ()  # the panes whose slides the job and result belong to
        self.run_button = QPushButton(run_text)
        self.run_button.setToolTip(
            f"{run_text.replace('&&', '&')} in the background: the viewer stays usable, "
            "progress and result show below"
        )
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop the running analysis (enabled while one runs)")
        self.cancel_button.setEnabled(False)
        self.progress = QProgressBar()
        self.progress.setValue(0)
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
        if hasattr(window, "slide_changed"):
            window.slide_changed.connect(self._on_slide_changed)

    def run(self) -> None:  # pragma: no cover - overridden
        """Start the analysis (subclasses call :meth:`start`)."""
        raise NotImplementedError

    def show_result(self, result) -> None:  # pragma: no cover - overridden
        """Show a finished job's result."""
        raise NotImplementedError

    def on_tick(self) -> None:
        """Called on every poll while a job runs (e.g. to show partial results)."""

    def start(
        self,
        work: Callable,
        name: str,
        running_text: str,
        panes: tuple[int, ...] = (),
        process: bool = False,
        background: bool = True,
    ) -> None:
        """Run ``work(context)`` in a background job and poll it from the GUI thread.

        ``panes`` are the panes whose slides the work reads: when one of them gets
        another slide, the job is cancelled and its result never shown. With ``process``
        (``work`` must pickle) it runs in the worker process, where it cannot hold the GIL
        the viewer needs; otherwise on a low-priority thread. Without ``background`` the
        work takes no background slot (it hands its work to processes of its own).
        """
        self.panes = tuple(panes)
        self.job = Job(work, name, background=background, process=process).start()
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.progress.setRange(0, 1)
        self.progress.setValue(0)  # a new run starts at 0, not at the last run's 100%
        self.progress.setFormat("%p%")
        self.status.setText(running_text)
        self.timer.start()

    def cancel(self) -> None:
        """Ask the running analysis to stop."""
        if self.job is not None:
            self.job.cancel()

    def replace_layers(self, layers: list[tuple[object, int]]) -> None:
        """Remove this panel's previous layers and add ``(layer, pane index)`` pairs."""
        self._remove_layers()
        self.layers = list(layers)
        for layer, index in self.layers:
            self.window.add_layer(layer, index)

    def _remove_layers(self) -> None:
        """Take this panel's layers off their panes (a pane's new slide already dropped them)."""
        for layer, index in self.layers:
            view = self.window.views[index]
            if layer in view.layers:
                view.remove_layer(layer)
        self.layers = []

    def clear_result(self) -> None:
        """Forget the shown result (subclasses clear their own widgets, then call this)."""
        self._remove_layers()
        self.status.setText("No result yet.")
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat("%p%")

    def _on_slide_changed(self, index: int) -> None:
        """A pane got another slide: a job or result of its old slide goes with it."""
        if index not in self.panes:
            return
        if self.job is not None:
            self.job.cancel()  # its result, if it still comes, is never shown
            self.job = None
            self.timer.stop()
            self.run_button.setEnabled(True)
            self.cancel_button.setEnabled(False)
        self.clear_result()

    def _show_progress(self, job: Job) -> None:
        """Fraction done; once every counted step is done, a busy bar naming the last phase."""
        done, total = job.progress.done, job.progress.total
        if total and done >= total:
            self.progress.setRange(0, 0)  # counted work done, the rest (model, saving) runs
            message = job.progress.message
            self.progress.setFormat(f"{message}: done, finishing…" if message else "finishing…")
            return
        self.progress.setRange(0, max(1, total))
        self.progress.setValue(done)
        self.progress.setFormat(f"%p% {job.progress.message}".rstrip())

    def _poll(self) -> None:
        job = self.job
        if job is None:
            return
        self._show_progress(job)
        self.on_tick()
        if job.state in ("pending", "running"):
            return
        self.timer.stop()
        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        self.job = None
        self.progress.setRange(0, 1)
        self.progress.setFormat("%p%")
        if job.state == "done":
            self.progress.setValue(1)
            self.show_result(job.result)
        elif job.state == "cancelled":
            self.status.setText("Cancelled.")
        else:
            message = str(job.error) if isinstance(job.error, Her2ViewerError) else repr(job.error)
            self.status.setText(message)  # e.g. the slide is outside what the model accepts
            self.window.show_error(message)


ANALYSIS_DOCK = "analysis_dock"


def dock_panel(window, panel: QWidget, title: str) -> QWidget:
    """Dock ``panel`` on the right of ``window`` under ``title`` and return it.

    Analysis panels share one tabbed dock (the first one attached stays in front), in a
    scroll area, so the window keeps its size however many analyses are available and
    whatever they show.
    """
    from her2viewer.gui.mainwindow import scrolled

    dock = QDockWidget(title, window)
    dock.setObjectName(f"{title.lower().replace(' ', '_')}_dock")
    dock.setProperty(ANALYSIS_DOCK, True)
    dock.setWidget(scrolled(panel))
    window.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)
    others = [d for d in window.findChildren(QDockWidget) if d.property(ANALYSIS_DOCK)]
    if others[0] is not dock:
        window.tabifyDockWidget(others[-2] if len(others) > 1 else others[0], dock)
        others[0].raise_()
    return panel
