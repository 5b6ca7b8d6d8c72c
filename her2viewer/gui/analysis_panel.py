"""One panel for every analysis: run, progress, cancel, error line, summary, layers.

An :class:`AnalysisPanel` runs an analysis contract function
(``analyse_<name>(slide, bundle, options, context)``, see
:mod:`her2viewer.analysis.contract`) on the slide of a pane in a background job, shows
the result's one-line summary (with the slide-scope warning and a demo model's notice),
and adds the result's layers to the pane; a result belongs to its slide, so a pane that
gets another slide drops it (:class:`~her2viewer.gui.job_panel.JobPanel`). What differs
between analyses lives in a small :class:`ResultWidget`: which panes it reads, its
options, its status line and its own view of the result (a gallery, a table, extra
controls). Adding an analysis to the viewer is a widget and ``dock_analysis``.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path

from PySide6.QtWidgets import QVBoxLayout, QWidget

from her2viewer.analysis.contract import analyse_path
from her2viewer.errors import Her2ViewerError
from her2viewer.gui.job_panel import JobPanel, dock_panel
from her2viewer.models.bundle import is_bundle, load_bundle
from her2viewer.models.checks import demo_notice, with_notice


class ResultWidget(QWidget):
    """One analysis's part of an :class:`AnalysisPanel` (subclasses fill in the blanks).

    Attributes
    ----------
    analyse : callable
        The module-level contract function run in the job.
    result_type : type
        The class of its result.
    run_text, running_text, job_name : str
        The Run button's label, the status while it runs, the job's name.
    default_bundle : callable, optional
        The shipped model used when the panel is given none; None for a rule-based analysis.
    process : bool
        Run the job in the worker process (its work must pickle, as :meth:`work`'s does),
        where it cannot hold the GIL the viewer needs; on a low-priority thread otherwise.
    """

    analyse: Callable
    result_type: type
    run_text = "Run"
    running_text = "Running…"
    job_name = "analysis"
    default_bundle: Callable[[], Path] | None = None
    process = True

    def __init__(self) -> None:
        super().__init__()
        self.panel: AnalysisPanel | None = None
        self.body = QVBoxLayout(self)
        self.body.setContentsMargins(0, 0, 0, 0)

    @property
    def window(self):
        """The main window of the panel this widget belongs to."""
        return self.panel.window

    def panes(self) -> tuple[int, ...] | None:
        """The panes the analysis reads (the first is analysed); None after a message."""
        if self.window.slides and self.window.slides[0] is not None:
            return (0,)
        self.window.show_error("Open an H&E slide first.")
        return None

    def work(self, path: str, bundle: Path | None, options) -> Callable:
        """The job: the contract function on ``path``, as a partial that pickles."""
        return partial(analyse_path, self.analyse, path, bundle, options)

    def tick(self) -> None:
        """Called on every poll while the job runs (e.g. to show a partial result)."""

    def options(self, panes: tuple[int, ...]):
        """The analysis options for a run on ``panes`` (None: the analysis defaults)."""
        return None

    def describe(self, result) -> str:  # pragma: no cover - overridden
        """The status line of a result (the panel adds the warning and the notice)."""
        raise NotImplementedError

    def layers(self, result, pane: int) -> list[tuple[object, int]]:
        """``(layer, pane index)`` pairs to show: the result's layers on its pane."""
        return [(layer, pane) for layer in result.layers()]

    def show(self, result) -> None:
        """Show what the summary line does not (a gallery, a table); nothing by default."""

    def clear(self) -> None:
        """Forget what :meth:`show` showed."""


class AnalysisPanel(JobPanel):
    """Run an analysis on a pane's slide in the background and show its result.

    Parameters
    ----------
    window : MainWindow
        The window whose panes the panel reads and draws on.
    widget : ResultWidget
        The analysis's own part.
    bundle : path, optional
        The model; the widget's ``default_bundle`` when not given.
    """

    def __init__(self, window, widget: ResultWidget, bundle: str | Path | None = None) -> None:
        super().__init__(window, widget.run_text)
        self.widget = widget
        widget.panel = self
        self.bundle = Path(bundle) if bundle else None
        self.result = None
        self.pane: int | None = None
        self.body.addWidget(widget)

    def model_path(self, chosen: Path | None, default: Callable[[], Path]) -> Path | None:
        """The chosen model, else ``default()``; None after showing why there is none."""
        try:
            return chosen or default()
        except Her2ViewerError as exc:
            self.window.show_error(str(exc))
            return None

    def run(self) -> None:
        """Start the analysis of the widget's pane in a background job."""
        if self.job is not None:
            return
        panes = self.widget.panes()
        default = self.widget.default_bundle
        bundle = self.model_path(self.bundle, default) if panes and default else None
        if not panes or (default and bundle is None):
            return
        self.pane = panes[0]
        path = self.window.slides[self.pane].info.path
        work = self.widget.work(path, bundle, self.widget.options(panes))
        widget = self.widget
        self.start(work, widget.job_name, widget.running_text, panes, widget.process)

    def on_tick(self) -> None:
        """Let the widget show partial results of the running job."""
        self.widget.tick()

    def show_result(self, result) -> None:
        """Layers on the pane, the summary line with warning and notice, the widget's view."""
        if isinstance(result, self.widget.result_type):
            self.result = result
        self.replace_layers(self.widget.layers(result, self.pane))
        self.status.setText(result_text(self.widget.describe(result), result))
        self.widget.show(result)

    def clear_result(self) -> None:
        """Forget the result: the widget's view, then layers, status and progress."""
        self.result = None
        self.widget.clear()
        super().clear_result()


def bundle_notice(path) -> str | None:
    """The demo notice of the model bundle at ``path`` (None for a real model or a plain
    checkpoint); it reads the bundle, so call it in the job's work, off the GUI thread."""
    return demo_notice(load_bundle(path).meta) if is_bundle(path) else None


def result_text(text: str, result) -> str:
    """A result line as shown: the slide-scope warning sentence of the result first (it is
    outside what the model accepts), and a demo model's notice on the same line."""
    line = with_notice(text, getattr(result, "notice", None))
    warning = getattr(result, "warning", None)
    return f"{warning} {line}" if warning else line


def dock_analysis(window, widget: ResultWidget, title: str, bundle=None) -> AnalysisPanel:
    """Dock an :class:`AnalysisPanel` with ``widget`` on ``window`` under ``title``."""
    return dock_panel(window, AnalysisPanel(window, widget, bundle), title)
