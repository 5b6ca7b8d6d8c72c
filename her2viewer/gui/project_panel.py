"""The Project dock: a project's cases in a table, opened in the viewer, run in the background.

File > New project…, Open project… and Recent projects open a project folder
(:mod:`her2viewer.project`). The dock lists its cases with a thumbnail (made on a worker from
the slide once, then kept in the project folder), the status of each analysis and the key
figures, filtered by text and status and sorted by any column. A double-click opens the case's
pair linked by its registration, with its saved results (read back with each result class's
``load()``, on a worker) and its annotations (the project's stores); Alt+PgDown / Alt+PgUp
open the next / previous case of the list (PgUp/PgDown alone step CT slices). *Run on
selected cases…* hands the chosen analyses to the cohort engine
(:func:`~her2viewer.project.run.run_project`) in a job: progress below the list, each case's
figures as soon as its results are stored. Cancel starts no other case; the cases in flight
finish and are stored (shown done), the rest are shown not run and left for the next run.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import numpy as np
from PySide6.QtCore import (
    QAbstractTableModel,
    QEvent,
    QModelIndex,
    QSize,
    QSortFilterProxyModel,
    Qt,
    Signal,
)
from PySide6.QtGui import QAction, QImage, QKeySequence, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDockWidget,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QTableView,
    QVBoxLayout,
)

from her2viewer.annotations.store import store_path
from her2viewer.errors import Her2ViewerError
from her2viewer.gui.job_panel import JobPanel
from her2viewer.jobs.core import BACKGROUND_NICENESS, Progress, lower_thread_priority
from her2viewer.project.browse import (
    FIGURES,
    case_results,
    case_status,
    case_thumbnail,
    key_figure,
    pane_transform,
    saved_results,
    slide_roles,
)
from her2viewer.project.cohort import add_slides, import_csv
from her2viewer.project.run import run_project
from her2viewer.project.store import Case, Project
from her2viewer.project.tasks import ANALYSES

#: The case statuses the filter offers (see :func:`~her2viewer.project.browse.case_status`).
STATUSES = ("new", "partial", "done", "failed")
#: How a case's analysis shows in its column.
MARKS = {"done": "✓", "failed": "✗", "queued": "…"}
#: Column titles of the analyses (full names in their tooltips).
SHORT_NAMES = {
    "segment": "seg", "extract": "ext", "clam": "clam", "her2net": "h2n",
    "grade": "grd", "ihc": "ihc", "cells": "cells",
}  # fmt: skip
#: Side of a thumbnail in the list (px).
ICON_PX = 48
#: Room for a case id beside its thumbnail (px).
CASE_TEXT_PX = 90
#: Width of the Project dock when a project opens (px).
DOCK_PX = 480
#: Projects kept under File > Recent projects.
MAX_RECENT_PROJECTS = 8
#: What a new run offers ticked.
DEFAULT_ANALYSES = ("segment", "ihc")


class CaseTable(QAbstractTableModel):
    """The cases of a project: thumbnail and id, patient, status, key figures, analyses."""

    COLUMNS = ("Case", "Patient", "Status", *FIGURES, *ANALYSES)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.project: Project | None = None
        self.cases: list[Case] = []
        self._rows: dict[str, int] = {}  # case id -> row
        self.results: dict[str, dict] = {}
        self.analyses: list[str] = []  # the analyses the project has run on some case
        self.thumbnails: dict[str, QPixmap] = {}
        self.queued: set[str] = set()  # cases of the running run not finished yet

    def load(self, project: Project) -> None:
        """Show ``project``'s cases (read again from its database)."""
        self.beginResetModel()
        self.project = project
        self.cases = project.cases()
        self._rows = {case.case_id: row for row, case in enumerate(self.cases)}
        self.thumbnails, self.queued = {}, set()
        self._read_results()
        self.endResetModel()

    def refresh(self) -> None:
        """Read the results again (a run stored some); rows keep their place and selection."""
        self._read_results()
        last = self.index(len(self.cases) - 1, len(self.COLUMNS) - 1)
        self.dataChanged.emit(self.index(0, 0), last)

    def _read_results(self) -> None:
        self.results = case_results(self.project)
        seen = {name for rows in self.results.values() for name in rows}
        self.analyses = [name for name in ANALYSES if name in seen]

    def set_thumbnail(self, case_id: str, pixmap: QPixmap) -> None:
        """Show ``pixmap`` beside case ``case_id``."""
        self.thumbnails[case_id] = pixmap
        row = self.row_of(case_id)
        if row is not None:
            self.dataChanged.emit(self.index(row, 0), self.index(row, 0))

    def row_of(self, case_id: str) -> int | None:
        """The row of case ``case_id``; None when the project has no such case."""
        return self._rows.get(case_id)

    def status(self, row: int) -> str:
        """The case's status word, ``queued`` while a run has it to do."""
        case = self.cases[row]
        if case.case_id in self.queued:
            return "queued"
        return case_status(case, self.results.get(case.case_id, {}), self.analyses)

    # -- Qt's model interface ----------------------------------------------------------
    def rowCount(self, parent=QModelIndex()) -> int:  # noqa: N802, B008 - Qt override
        return 0 if parent.isValid() else len(self.cases)

    def columnCount(self, parent=QModelIndex()) -> int:  # noqa: N802, B008 - Qt override
        return 0 if parent.isValid() else len(self.COLUMNS)

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole):  # noqa: N802
        if orientation != Qt.Orientation.Horizontal:
            return None
        title = self.COLUMNS[section]
        if role == Qt.ItemDataRole.DisplayRole:
            return SHORT_NAMES.get(title, title)
        if role == Qt.ItemDataRole.ToolTipRole and title in ANALYSES:
            return f"{title}: ✓ done, ✗ failed, … queued"
        return None

    def data(self, index, role=Qt.ItemDataRole.DisplayRole):
        case = self.cases[index.row()]
        if role == Qt.ItemDataRole.DecorationRole and index.column() == 0:
            return self.thumbnails.get(case.case_id)
        if role == Qt.ItemDataRole.DisplayRole:
            return self.text(index.row(), index.column())
        if role == Qt.ItemDataRole.ToolTipRole:
            return self._tooltip(index.row(), self.COLUMNS[index.column()])
        return None

    # -- cells -------------------------------------------------------------------------
    def text(self, row: int, column: int) -> str:
        """What cell ``(row, column)`` says."""
        case, title = self.cases[row], self.COLUMNS[column]
        results = self.results.get(case.case_id, {})
        if title == "Case":
            return case.case_id
        if title == "Patient":
            return case.patient_id or ""
        if title == "Status":
            return self.status(row)
        if title in FIGURES:
            figure = key_figure(results, title)
            return figure[0] if figure else ""
        result = results.get(title)
        if result is None:
            return MARKS["queued"] if case.case_id in self.queued else ""
        return MARKS[result.status]

    def sort_key(self, row: int, column: int) -> tuple:
        """The order of cell ``(row, column)``: figures by value, empty cells last."""
        title = self.COLUMNS[column]
        if title in FIGURES:
            figure = key_figure(self.results.get(self.cases[row].case_id, {}), title)
            return (0, figure[1]) if figure else (1, 0)
        text = self.text(row, column)
        return (0, text) if text else (1, "")

    def _tooltip(self, row: int, title: str) -> str | None:
        case = self.cases[row]
        results = self.results.get(case.case_id, {})
        if title == "Case":
            return "\n".join(f"{role}: {getattr(case, role)}" for role in slide_roles(case))
        if title in ANALYSES and title in results:
            result = results[title]
            if result.status == "failed":
                return f"{title} failed: {result.error}"
            return f"{title} done in {result.seconds or 0:.1f} s"
        return None

    def matches(self, row: int, text: str, status: str | None) -> bool:
        """Whether the case of ``row`` has ``status`` (any when None) and mentions ``text``
        (case-insensitive) in its id, patient, metadata or slide names."""
        if status is not None and self.status(row) != status:
            return False
        case = self.cases[row]
        words = [case.case_id, case.patient_id or "", *map(str, case.metadata.values())]
        words += [Path(getattr(case, role)).name for role in slide_roles(case)]
        return text.lower() in " ".join(words).lower()


class CaseFilter(QSortFilterProxyModel):
    """The case list as shown: filtered by :attr:`text` and :attr:`status`, sorted by value."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.text = ""
        self.status: str | None = None

    def set_filter(self, text: str, status: str | None) -> None:
        """Show only the cases that mention ``text`` and have ``status`` (any when None)."""
        self.text, self.status = text.strip(), status
        self.invalidate()

    def filterAcceptsRow(self, row: int, parent) -> bool:  # noqa: N802 - Qt override
        return self.sourceModel().matches(row, self.text, self.status)

    def lessThan(self, left, right) -> bool:  # noqa: N802 - Qt override
        model = self.sourceModel()
        first = model.sort_key(left.row(), left.column())
        second = model.sort_key(right.row(), right.column())
        if first[0] != second[0]:  # an empty cell goes last in either order
            return (first[0] < second[0]) == (self.sortOrder() == Qt.SortOrder.AscendingOrder)
        return first < second


class RunDialog(QDialog):
    """*Run on selected cases…*: which analyses, and how many processes."""

    def __init__(self, parent, count: int, ticked: list[str]) -> None:
        super().__init__(parent)
        self.setWindowTitle("Run on selected cases — her2viewer")
        layout = QVBoxLayout(self)
        layout.addWidget(
            QLabel(f"Run on {count} case{'s' * (count != 1)} (done ones are skipped):")
        )
        self.boxes = {name: QCheckBox(name) for name in ANALYSES}
        for name, box in self.boxes.items():
            box.setChecked(name in ticked)
            layout.addWidget(box)
        row = QHBoxLayout()
        row.addWidget(QLabel("processes"))
        self.workers = QSpinBox(minimum=1, maximum=max(1, os.cpu_count() or 1), value=1)
        self.workers.setToolTip("Cases run at once, each in a process of its own")
        row.addWidget(self.workers)
        layout.addLayout(row)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)

    def analyses(self) -> list[str]:
        """The analyses ticked, in run order."""
        return [name for name, box in self.boxes.items() if box.isChecked()]


def _add_cases(folder: str, source: str, context) -> list[Case]:
    """The job of *Add slides…* and *Import cohort CSV…*: a folder of slides paired into cases,
    or a cohort CSV's cases (each slide is opened for its fingerprint)."""
    project = Project.open(folder)
    if Path(source).suffix.lower() == ".csv":
        return import_csv(project, source)
    return add_slides(project, [source])


def _run_cases(folder: str, analyses: list[str], cases: list[str], workers: int, context) -> str:
    """The job of a run: the cohort engine on ``cases``; its one-line report.

    Cancel stops the run without raising: no case starts any more, the cases in flight finish
    and are stored, and the report says how many tasks are left for the next run.
    """
    lower_thread_priority(BACKGROUND_NICENESS)  # the engine's processes inherit it
    report = run_project(
        Project.open(folder), analyses, workers=workers, cases=cases,
        progress=lambda done, total, case: context.publish(Progress(done, total, case)),
        cancelled=lambda: context.token.cancelled,
    )  # fmt: skip
    figures = (
        f"{report.done} done, {report.failed} failed of {report.planned} tasks "
        f"in {report.seconds:.0f} s."
    )
    if report.cancelled:
        return f"Cancelled: {figures} {report.not_run} not run (the next run does them)."
    return figures


def _pixmap(rgb: np.ndarray) -> QPixmap:
    height, width = rgb.shape[:2]
    image = QImage(rgb.data, width, height, 3 * width, QImage.Format.Format_RGB888)
    pixmap = QPixmap.fromImage(image)  # a copy: ``rgb`` may go
    return pixmap.scaled(  # a pixmap is drawn at its own size: fit it in the icon's box
        ICON_PX, ICON_PX, Qt.AspectRatioMode.KeepAspectRatio,
        Qt.TransformationMode.SmoothTransformation,
    )  # fmt: skip


class ProjectPanel(JobPanel):
    """The Project dock's content: the case list, its filters, and runs on selected cases.

    Parameters
    ----------
    window : MainWindow
        The window that shows the cases.

    Attributes
    ----------
    project : Project or None
        The open project.
    case_id : str or None
        The case the panes show (opened from the list).
    """

    #: (project token, case id, RGB array) from the thumbnail worker.
    thumbnail_ready = Signal(int, str, object)
    #: (open token, results or an error sentence) from the results worker.
    results_ready = Signal(int, object)

    def __init__(self, window) -> None:
        super().__init__(window, "Run on selected cases…")
        self.project: Project | None = None
        self.case_id: str | None = None
        self.dock: QDockWidget | None = None
        self.model = CaseTable(self)
        self.proxy = CaseFilter(self)
        self.proxy.setSourceModel(self.model)
        self.title = QLabel("No project open: File > New project… or Open project…")
        self.title.setWordWrap(True)
        self.search = QLineEdit(placeholderText="Filter: case, patient, metadata, slide")
        self.status_box = QComboBox()
        self.status_box.addItems(["any status", *STATUSES])
        self.status_box.setToolTip("Show only the cases with this status")
        self.table = self._table()
        filters = QHBoxLayout()
        filters.addWidget(self.search, 1)
        filters.addWidget(self.status_box)
        self.body.insertWidget(0, self.title)
        self.body.insertLayout(1, filters)
        self.body.insertWidget(2, self.table, 1)
        self.body.insertLayout(3, self._add_buttons())
        self.run_button.setEnabled(False)
        self.status.setText("No run yet.")
        self.search.textChanged.connect(self._filter)
        self.status_box.currentIndexChanged.connect(self._filter)
        self.thumbnail_ready.connect(self._on_thumbnail)
        self.results_ready.connect(self._on_results)
        window.pane_transform_changed.connect(self._store_registration)
        window.installEventFilter(self)  # its close stops the workers
        self._workers = [ThreadPoolExecutor(1, thread_name_prefix=f"project-{n}") for n in "tr"]
        self._tokens = {"project": 0, "open": 0}
        self._finished: list[str] = []  # cases the running job has stored
        self._stored = 0  # of those, how many the list has read

    def _add_buttons(self) -> QHBoxLayout:
        row = QHBoxLayout()
        self.add_buttons = []
        for text, tip, slot in (
            ("Add slides…", "Add a folder of slides, paired into cases", self.add_dialog),
            ("Import cohort CSV…", "Add the cases of a labels.csv", self.import_dialog),
        ):
            button = QPushButton(text)
            button.setToolTip(tip)
            button.setEnabled(False)
            button.clicked.connect(slot)
            row.addWidget(button)
            self.add_buttons.append(button)
        return row

    def _table(self) -> QTableView:
        table = QTableView()
        table.setModel(self.proxy)
        table.setSortingEnabled(True)
        table.sortByColumn(0, Qt.SortOrder.AscendingOrder)
        table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        table.setIconSize(QSize(ICON_PX, ICON_PX))
        table.verticalHeader().setDefaultSectionSize(ICON_PX + 4)
        table.verticalHeader().hide()
        table.horizontalHeader().setMinimumSectionSize(28)
        table.doubleClicked.connect(lambda index: self.open_case(self.case_at(index.row())))
        return table

    # -- projects ----------------------------------------------------------------------
    def open_project(self, folder: str | Path) -> bool:
        """Open the project in ``folder`` (errors in the usual box); whether it opened."""
        return self._show_project(Project.open, folder)

    def new_project(self, folder: str | Path) -> bool:
        """Make ``folder`` (new or empty) a project and open it; whether it was made."""
        return self._show_project(Project.create, folder)

    def _show_project(self, make, folder) -> bool:
        if self.job is not None:
            self.window.show_error("A project job is still going: wait for it or cancel it.")
            return False
        try:
            project = make(folder)
        except Her2ViewerError as exc:
            self.window.show_error(str(exc))
            return False
        self.project, self.case_id = project, None
        self._list_cases()
        self.run_button.setEnabled(True)
        for button in self.add_buttons:
            button.setEnabled(True)
        self.window.annotations.store_path = self._annotation_store
        self._remember(str(project.folder))
        if self.dock is not None:
            self.dock.show()
            self.dock.raise_()
            self.window.resizeDocks([self.dock], [DOCK_PX], Qt.Orientation.Horizontal)
        return True

    def _list_cases(self) -> None:
        """List the project's cases (read again) and make their thumbnails."""
        self.model.load(self.project)
        self.title.setText(f"{self.project.folder.name}: {len(self.model.cases)} cases")
        self.title.setToolTip(str(self.project.folder))
        self._make_thumbnails()
        self.table.resizeColumnsToContents()
        self.table.setColumnWidth(0, ICON_PX + CASE_TEXT_PX)  # thumbnails arrive later

    def _annotation_store(self, fingerprint: str) -> Path:
        """A project slide's annotations live in the project folder; other slides' as before."""
        known = {c.slide(role)[1] for c in self.model.cases for role in slide_roles(c)}
        if fingerprint not in known:
            return store_path(fingerprint)
        path = self.project.annotation_path(fingerprint)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def recent_projects(self) -> list[str]:
        """Project folders opened lately, newest first."""
        value = self.window.settings.value("recent_projects", [])
        return [value] if isinstance(value, str) else list(value or [])

    def _remember(self, folder: str) -> None:
        recent = [folder, *(f for f in self.recent_projects() if f != folder)]
        self.window.settings.setValue("recent_projects", recent[:MAX_RECENT_PROJECTS])
        self.fill_recent()

    def fill_recent(self) -> None:
        """List the recent projects under File > Recent projects."""
        menu = self.recent_menu
        menu.clear()
        for folder in self.recent_projects():
            action = menu.addAction(folder)
            action.setStatusTip(f"Open the project {folder}")
            action.triggered.connect(lambda _checked=False, f=folder: self.open_project(f))
        menu.setEnabled(bool(self.recent_projects()))

    def _make_thumbnails(self) -> None:
        self._tokens["project"] += 1
        token, project = self._tokens["project"], self.project
        for case in self.model.cases:
            self._workers[0].submit(self._thumbnail, token, project, case)

    def _thumbnail(self, token: int, project: Project, case: Case) -> None:
        """On the thumbnail worker: read or make one case's thumbnail, unless stale."""
        if token != self._tokens["project"]:
            return
        try:
            rgb = case_thumbnail(project, case)
        except Her2ViewerError:
            return  # a missing or damaged slide: no thumbnail (opening it says why)
        if token == self._tokens["project"]:  # not closed or replaced meanwhile
            self.thumbnail_ready.emit(token, case.case_id, rgb)

    def _on_thumbnail(self, token: int, case_id: str, rgb: np.ndarray) -> None:
        if token == self._tokens["project"]:
            self.model.set_thumbnail(case_id, _pixmap(rgb))

    # -- the list ----------------------------------------------------------------------
    def _filter(self) -> None:
        index = self.status_box.currentIndex()
        self.proxy.set_filter(self.search.text(), STATUSES[index - 1] if index else None)

    def case_at(self, row: int) -> str:
        """The case id shown in row ``row`` of the list (as filtered and sorted)."""
        source = self.proxy.mapToSource(self.proxy.index(row, 0))
        return self.model.cases[source.row()].case_id

    def shown_cases(self) -> list[str]:
        """The case ids of the list, top to bottom."""
        return [self.case_at(row) for row in range(self.proxy.rowCount())]

    def selected_cases(self) -> list[str]:
        """The case ids selected in the list, top to bottom."""
        rows = sorted(index.row() for index in self.table.selectionModel().selectedRows())
        return [self.case_at(row) for row in rows]

    def _select(self, case_id: str) -> None:
        index = self.proxy.mapFromSource(self.model.index(self.model.row_of(case_id), 0))
        if index.isValid():  # not filtered out
            self.table.selectRow(index.row())
            self.table.scrollTo(index)

    def step(self, delta: int):
        """Open the case ``delta`` rows below (above when negative) the one shown; the
        :class:`~her2viewer.gui.mainwindow.Opening`, or None at either end of the list."""
        shown = self.shown_cases()
        if not shown:
            return None
        at = shown.index(self.case_id) if self.case_id in shown else -1 if delta > 0 else 0
        row = at + delta
        return self.open_case(shown[row]) if 0 <= row < len(shown) else None

    # -- opening a case ----------------------------------------------------------------
    def _case(self, case_id: str) -> Case:
        return self.model.cases[self.model.row_of(case_id)]

    def open_case(self, case_id: str):
        """Open the case's slides (H&E left, IHC right) linked by its registration; once
        open, its saved results are read on a worker and shown. Returns the opening."""
        case = self._case(case_id)
        self.case_id = case_id
        self._select(case_id)
        self._tokens["open"] += 1
        token = self._tokens["open"]
        paths = [getattr(case, role) for role in slide_roles(case)]
        opening = self.window.open_slides(paths, pane_transform(case))
        opening.finished.connect(lambda ok: ok and self._load_results(token, case))
        return opening

    def _load_results(self, token: int, case: Case) -> None:
        self._workers[1].submit(self._read_results, token, self.project, case)

    def _read_results(self, token: int, project: Project, case: Case) -> None:
        """On the results worker: the case's saved results, or the sentence saying why not."""
        try:
            loaded = saved_results(project, case)
        except Her2ViewerError as exc:
            loaded = str(exc)
        if token == self._tokens["open"]:
            self.results_ready.emit(token, loaded)

    def _on_results(self, token: int, loaded) -> None:
        if token != self._tokens["open"]:
            return  # another case was opened since
        if isinstance(loaded, str):
            self.window.show_error(loaded)
            return
        panels = self.window.sessions.analysis_panels().values()
        for _name, pane, result in loaded:
            panel = next((p for p in panels if p.widget.result_type is type(result)), None)
            if panel is None:
                for layer in result.layers():
                    self.window.add_layer(layer, pane)
            else:
                panel.pane, panel.panes = pane, (pane,)
                panel.show_result(result)

    def _store_registration(self, index: int) -> None:
        """Keep the pair's link (registered, or fitted on landmarks) as the case's registration."""
        if index != 1 or self.case_id is None:
            return
        case = self._case(self.case_id)
        slides = self.window.slides[:2]
        shown = [s.info.fingerprint if s is not None else None for s in slides]
        if len(shown) < 2 or shown != [case.he_fingerprint, case.ihc_fingerprint]:
            return  # the panes show something else than the case
        views = self.window.views
        linked = self.window.sync.has_transform(views[1])
        matrix = self.window.sync.matrix(views[1], views[0]) if linked else None
        case.registration = np.linalg.inv(matrix).tolist() if linked else None
        self.project.set_registration(case.case_id, case.registration)

    # -- runs ------------------------------------------------------------------------
    def run(self) -> None:
        """Ask which analyses to run on the selected cases, then run them in the background."""
        cases = self.selected_cases()
        if not cases:
            self.window.show_error("Select the cases to run in the project's list first.")
            return
        ticked = self.window.settings.value("project_analyses", list(DEFAULT_ANALYSES))
        dialog = RunDialog(self, len(cases), [ticked] if isinstance(ticked, str) else ticked)
        if dialog.exec() != QDialog.DialogCode.Accepted or not dialog.analyses():
            return
        self.window.settings.setValue("project_analyses", dialog.analyses())
        self.run_cases(cases, dialog.analyses(), dialog.workers.value())

    def run_cases(self, cases: list[str], analyses: list[str], workers: int = 1) -> None:
        """Run ``analyses`` on ``cases`` with the cohort engine (a local pool of ``workers``
        processes) in a job; the list shows each case's results as they are stored."""
        if self.job is not None or self.project is None:
            return
        self.model.queued = set(cases)
        self.model.refresh()
        work = partial(_run_cases, str(self.project.folder), analyses, cases, workers)
        self.start(work, "project run", f"Running {', '.join(analyses)}…", background=False)
        finished = self._finished = []  # the cases stored, in order (the engine's reports)
        self.job.on_progress(
            lambda progress: progress.message and finished.append(progress.message)
        )

    def cancel(self) -> None:
        """Stop the job; a run first finishes and stores its cases in flight (said below)."""
        if self.job is not None and self.job.name == "project run":
            self.status.setText("Cancelling: the cases in flight finish and are stored…")
        super().cancel()

    def on_tick(self) -> None:
        """Read the results again whenever the run stored more (and once it ended)."""
        ended = self.job.state not in ("pending", "running")
        if len(self._finished) != self._stored or ended:
            self._stored = len(self._finished)
            self.model.queued -= set(self._finished)
            if ended:
                self.model.queued = set()
            self.model.refresh()

    def add_cases(self, source: str | Path) -> None:
        """Add a folder of slides (paired into cases) or a cohort CSV's cases in a job; the
        list shows them once added."""
        if self.job is not None:
            self.window.show_error("A project job is still going: wait for it or cancel it.")
            return
        work = partial(_add_cases, str(self.project.folder), str(source))
        self.start(work, "project add", f"Adding {Path(source).name}…", background=False)

    def add_dialog(self) -> None:
        """Ask for a folder of slides and add it."""
        folder = QFileDialog.getExistingDirectory(self.window, "Add slides", self._start_folder())
        if folder:
            self.add_cases(folder)

    def import_dialog(self) -> None:
        """Ask for a cohort CSV and add its cases."""
        path, _ = QFileDialog.getOpenFileName(
            self.window, "Import cohort CSV", self._start_folder(), "CSV (*.csv)"
        )
        if path:
            self.add_cases(path)

    def show_result(self, result) -> None:
        """A run's one-line report, or the cases added (listed again)."""
        if isinstance(result, str):
            self.status.setText(result)
            return
        self.status.setText(f"Added {len(result)} case{'s' * (len(result) != 1)}.")
        self._list_cases()

    def eventFilter(self, watched, event) -> bool:  # noqa: N802 - Qt override
        if watched is self.window and event.type() == QEvent.Type.Close:
            self.cancel()  # a run stores the cases in flight and ends; the next run does the rest
            self._tokens["project"] += 1  # queued thumbnails and results are dropped
            self._tokens["open"] += 1
            for worker in self._workers:
                worker.shutdown(wait=False, cancel_futures=True)
        return False

    # -- menus -----------------------------------------------------------------------
    def add_actions(self, menu) -> None:
        """File > New project…, Open project…, Recent projects, Next / Previous case."""
        menu.addSeparator()
        for text, slot, tip, key in (
            ("New pro&ject…", self.new_dialog, "Make a new (empty) folder a project", None),
            ("Open pro&ject…", self.open_dialog, "Open a project folder's case list", None),
        ):
            self._add_action(menu, text, slot, tip, key)
        self.recent_menu = menu.addMenu("Recent pro&jects")
        self.fill_recent()
        self._add_action(
            menu, "Next case", lambda: self.step(1), "Open the next case of the project list",
            QKeySequence("Alt+PgDown"),
        )  # fmt: skip
        self._add_action(
            menu, "Previous case", lambda: self.step(-1),
            "Open the previous case of the project list", QKeySequence("Alt+PgUp"),
        )  # fmt: skip

    def _add_action(self, menu, text: str, slot, tip: str, key) -> QAction:
        action = QAction(text, self.window)
        if key is not None:
            action.setShortcut(key)
        action.setToolTip(tip)
        action.setStatusTip(tip)
        action.triggered.connect(lambda _checked=False: slot())
        menu.addAction(action)
        return action

    def new_dialog(self) -> None:
        """Ask for a new or empty folder and make it a project."""
        folder = QFileDialog.getExistingDirectory(
            self.window, "New project: choose a new or empty folder", self._start_folder()
        )
        if folder:
            self.new_project(folder)

    def open_dialog(self) -> None:
        """Ask for a project folder and open it."""
        folder = QFileDialog.getExistingDirectory(
            self.window, "Open project folder", self._start_folder()
        )
        if folder:
            self.open_project(folder)

    def _start_folder(self) -> str:
        recent = self.recent_projects()
        return str(Path(recent[0]).parent) if recent else self.window.last_folder()


def attach_project_panel(window, menu) -> ProjectPanel:
    """Dock the Project panel on the left of ``window`` (shown once a project opens) and add
    its actions to ``menu`` (the File menu)."""
    panel = ProjectPanel(window)
    dock = QDockWidget("Project", window)
    dock.setObjectName("project_dock")
    dock.setWidget(panel)
    dock.setFeatures(
        QDockWidget.DockWidgetFeature.DockWidgetMovable
        | QDockWidget.DockWidgetFeature.DockWidgetFloatable
    )
    window.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, dock)
    dock.hide()
    panel.dock = dock
    panel.add_actions(menu)
    return panel
