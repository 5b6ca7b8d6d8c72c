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

A widget whose analysis takes a region (``regions = True``) gets a
:class:`~her2viewer.gui.region_chooser.RegionChooser` above it: *Score selected region*
runs the analysis inside the annotations selected on the pane (or every annotation of a
class, minus Ignore*), the status line names the region and its area, and the widget's
:meth:`ResultWidget.figures` go into those annotations' results.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path

from PySide6.QtWidgets import QVBoxLayout, QWidget

from her2viewer.analysis.contract import analyse_path
from her2viewer.annotations.roi import Region, region_text
from her2viewer.errors import Her2ViewerError
from her2viewer.gui.job_panel import JobPanel, dock_panel
from her2viewer.gui.region_chooser import RegionChooser, record_figures
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
    regions : bool
        The analysis takes a region of annotations (the panel shows a region chooser and
        :meth:`options` reads :attr:`run_region`).
    """

    analyse: Callable
    result_type: type
    run_text = "Run"
    running_text = "Running…"
    job_name = "analysis"
    default_bundle: Callable[[], Path] | None = None
    process = True
    regions = False

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

    @property
    def run_region(self) -> Region | None:
        """The region of the run being started or shown (None: the whole slide)."""
        chosen = self.panel.region
        return chosen[1] if chosen is not None else None

    def figures(self, result) -> dict:
        """A result's figures as a region's annotations show them (none by default)."""
        return {}

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
        #: The pane and region of the last run (None: the whole slide).
        self.region: tuple[int, Region] | None = None
        self.chooser = RegionChooser() if widget.regions else None
        if self.chooser is not None:
            self.body.addWidget(self.chooser)
            self.chooser.score_region.connect(self.run)
            window.annotations.active_changed.connect(self.chooser.refresh)
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
        if not panes or (default and bundle is None) or not self._choose_region(panes):
            return
        self.pane = panes[0]
        path = self.window.slides[self.pane].info.path
        work = self.widget.work(path, bundle, self.widget.options(panes))
        widget = self.widget
        self.start(work, widget.job_name, widget.running_text, panes, widget.process)

    def _choose_region(self, panes: tuple[int, ...]) -> bool:
        """Note the chooser's region on ``panes``; False after showing why there is none."""
        try:
            self.region = self.chooser.chosen(self.window, panes) if self.chooser else None
        except Her2ViewerError as exc:
            self.window.show_error(str(exc))
            return False
        return True

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
        if self.region is not None and self.result is result:
            pane, region = self.region
            what = f"{self.widget.job_name} of the region"
            record_figures(self.window, pane, region, self.widget.figures(result), what)

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
    outside what the model accepts), the region it covers (a result with a ``roi``
    summary), and a demo model's notice on the same line."""
    roi = getattr(result, "roi", None)
    if roi and roi.get("region"):
        text = f"{text}. Region: {region_text(roi)}."
    line = with_notice(text, getattr(result, "notice", None))
    warning = getattr(result, "warning", None)
    return f"{warning} {line}" if warning else line


def dock_analysis(window, widget: ResultWidget, title: str, bundle=None) -> AnalysisPanel:
    """Dock an :class:`AnalysisPanel` with ``widget`` on ``window`` under ``title``."""
    return dock_panel(window, AnalysisPanel(window, widget, bundle), title)
