"""The Project dock (issue 20, in the app): case list, filters and sorting, opening a case with
its saved results, registration and annotations, next/previous keys, runs, recent projects."""

from __future__ import annotations

import shutil
import threading

import cv2
import numpy as np
import pytest

pytest.importorskip("PySide6")

from PySide6.QtCore import QSettings, Qt  # noqa: E402
from PySide6.QtGui import QAction  # noqa: E402

from her2viewer.gui.project_panel import ICON_PX  # noqa: E402
from her2viewer.project.browse import THUMBNAIL_PX, thumbnail_path  # noqa: E402
from her2viewer.project.cohort import import_csv  # noqa: E402
from her2viewer.project.store import Project, ResultRow  # noqa: E402
from her2viewer.project.tasks import plan, run_case  # noqa: E402
from her2viewer.slide.base import Slide  # noqa: E402

#: IHC scores and CLAM P(positive) recorded per case (the list's figures).
FIGURES = {"case000": (3, 0.9), "case001": (0, 0.1), "case002": (2, 0.6)}


def _record(project: Project, case_id: str, analysis: str, summary: dict, status="done"):
    error = "the slide could not be read." if status == "failed" else None
    row = ResultRow(case_id, analysis, "k", status, "0", error=error, summary=summary)
    project.record(row)


@pytest.fixture(scope="module")
def project_folder(tmp_path_factory, synthetic_cohort):
    """A 4-case project: case000 segmented and IHC-scored for real (artefacts on disk), the
    figures of case000-002 recorded, case003's CLAM failed."""
    project = Project.create(tmp_path_factory.mktemp("projects") / "cohort")
    import_csv(project, synthetic_cohort)
    group = next(g for g in plan(project, ["segment", "ihc"]) if g[0].case_id == "case000")
    for outcome in run_case(group):
        project.record(outcome.row(project))
    for case_id, (score, p) in FIGURES.items():
        if case_id != "case000":
            _record(project, case_id, "ihc", {"score": score, "score_label": f"{score}+"})
        probabilities = {"negative": 1 - p, "positive": p}
        _record(project, case_id, "clam", {"probabilities": probabilities})
    _record(project, "case003", "clam", {}, status="failed")
    return project.folder


@pytest.fixture()
def panel(panel_window, project_folder):
    panel = panel_window.projects
    assert panel.open_project(project_folder)
    return panel


def _column(panel, title: str) -> int:
    return panel.model.COLUMNS.index(title)


def _texts(panel, title: str) -> list[str]:
    column = _column(panel, title)
    return [panel.proxy.index(row, column).data() for row in range(panel.proxy.rowCount())]


def test_the_list_shows_every_case_with_status_figures_and_thumbnails_made_off_the_gui_thread(
    panel_window, project_folder, monkeypatch, qtbot
):
    threads = []
    original = Slide.thumbnail

    def hooked(self, *args, **kwargs):
        threads.append(threading.current_thread() is threading.main_thread())
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Slide, "thumbnail", hooked)
    shutil.rmtree(project_folder / "thumbnails", ignore_errors=True)
    panel = panel_window.projects
    assert not panel.dock.isVisibleTo(panel_window)  # no project, no dock
    assert panel.open_project(project_folder)
    assert panel.dock.isVisibleTo(panel_window)
    assert panel.shown_cases() == ["case000", "case001", "case002", "case003"]
    assert _texts(panel, "IHC") == ["3+", "0+", "2+", ""]
    assert _texts(panel, "CLAM P") == ["0.90", "0.10", "0.60", ""]
    assert _texts(panel, "Status") == ["done", "partial", "partial", "failed"]
    assert _texts(panel, "segment") == ["✓", "", "", ""]
    assert _texts(panel, "clam")[3] == "✗"
    qtbot.waitUntil(lambda: len(panel.model.thumbnails) == 4, timeout=60000)
    assert threads and not any(threads)  # every slide read on a worker
    project = Project.open(project_folder)
    case = project.cases()[0]
    kept = cv2.imread(str(thumbnail_path(project, case.he_fingerprint)))  # kept for next time
    assert max(kept.shape[:2]) == THUMBNAIL_PX
    icon = panel.proxy.index(0, 0).data(Qt.ItemDataRole.DecorationRole)
    assert not icon.isNull() and max(icon.width(), icon.height()) == ICON_PX


def test_sorting_by_a_figure_and_filtering_by_text_and_status(panel):
    panel.table.sortByColumn(_column(panel, "IHC"), Qt.SortOrder.DescendingOrder)
    assert panel.shown_cases()[:3] == ["case000", "case002", "case001"]
    panel.table.sortByColumn(_column(panel, "CLAM P"), Qt.SortOrder.AscendingOrder)
    assert panel.shown_cases() == ["case001", "case002", "case000", "case003"]  # empty last
    panel.search.setText("CASE002")
    assert panel.shown_cases() == ["case002"]
    panel.search.setText("")
    panel.status_box.setCurrentText("failed")
    assert panel.shown_cases() == ["case003"]
    panel.status_box.setCurrentText("any status")
    assert len(panel.shown_cases()) == 4


def test_double_click_opens_the_pair_linked_by_its_registration_with_saved_results(
    panel, project_folder, qtbot
):
    window = panel.window
    he_to_ihc = np.array([[1.0, 0.0, 40.0], [0.0, 1.0, -25.0], [0.0, 0.0, 1.0]])
    Project.open(project_folder).set_registration("case000", he_to_ihc.tolist())
    assert panel.open_project(project_folder)  # read again with its registration
    view = panel.table.viewport()
    rect = panel.table.visualRect(panel.proxy.index(0, 1))
    qtbot.mouseClick(view, Qt.MouseButton.LeftButton, pos=rect.center())
    qtbot.mouseDClick(view, Qt.MouseButton.LeftButton, pos=rect.center())
    qtbot.waitUntil(lambda: all(s is not None for s in window.slides[:2]), timeout=30000)
    assert [s.info.fingerprint for s in window.slides] == [
        panel.model.cases[0].he_fingerprint,
        panel.model.cases[0].ihc_fingerprint,
    ]
    ihc_to_he = window.sync.matrix(window.views[1], window.views[0])
    np.testing.assert_allclose(ihc_to_he, np.linalg.inv(he_to_ihc), atol=1e-9)
    qtbot.waitUntil(lambda: bool(window.views[1].layers), timeout=30000)
    assert [la.name for la in window.views[0].layers] == ["Tissue"]  # segment's mask
    assert [la.name for la in window.views[1].layers] == ["HER2 score categories"]
    stores = [window.annotations.stores[v].path for v in window.views]  # the project's own
    assert all(p.parent == project_folder / "annotations" for p in stores)


def test_a_new_link_of_the_panes_is_kept_as_the_case_registration(panel, project_folder, qtbot):
    window = panel.window
    assert panel.open_case("case001").wait(30)
    ihc_to_he = np.array([[1.0, 0.0, -12.0], [0.0, 1.0, 7.0], [0.0, 0.0, 1.0]])
    window.set_pane_transform(1, ihc_to_he)  # as the IHC panel or landmarks do
    case = next(c for c in Project.open(project_folder).cases() if c.case_id == "case001")
    np.testing.assert_allclose(case.registration, np.linalg.inv(ihc_to_he), atol=1e-9)


def test_next_and_previous_case_keys_follow_the_list(panel, qtbot):
    keys = {a.text(): a for a in panel.window.findChildren(QAction)}
    assert keys["Next case"].shortcut().toString() == "Alt+PgDown"  # PgUp/PgDown step CT slices
    assert keys["Previous case"].shortcut().toString() == "Alt+PgUp"
    panel.table.sortByColumn(_column(panel, "Case"), Qt.SortOrder.DescendingOrder)
    keys["Next case"].trigger()  # nothing open yet: the first case of the list
    assert panel.case_id == "case003"
    keys["Next case"].trigger()
    assert panel.case_id == "case002"
    keys["Previous case"].trigger()
    assert panel.case_id == "case003"
    assert panel.step(-1) is None and panel.case_id == "case003"  # top of the list
    qtbot.waitUntil(lambda: not panel.window.opening, timeout=30000)


@pytest.mark.slow
def test_run_on_a_selected_case_stores_and_shows_its_results(panel, project_folder, qtbot):
    panel.table.selectRow(panel.shown_cases().index("case002"))
    assert panel.selected_cases() == ["case002"]
    panel.run_cases(panel.selected_cases(), ["segment"])
    assert _texts(panel, "segment")[2] == "…"  # queued
    qtbot.waitUntil(lambda: panel.job is None, timeout=180000)
    assert panel.status.text().startswith("1 done, 0 failed of 1 tasks")
    assert _texts(panel, "segment") == ["✓", "", "✓", ""]
    rows = Project.open(project_folder).results()
    assert [(r.case_id, r.status) for r in rows if r.analysis == "segment"] == [
        ("case000", "done"),
        ("case002", "done"),
    ]


def test_recent_projects_and_one_sentence_errors(panel_window, project_folder, tmp_path, qtbot):
    from her2viewer.gui.mainwindow import MainWindow

    panel = panel_window.projects
    assert not panel.recent_menu.isEnabled()
    assert panel.open_project(project_folder)
    assert panel.recent_projects() == [str(project_folder)]
    assert [a.text() for a in panel.recent_menu.actions()] == [str(project_folder)]
    assert not panel.new_project(project_folder)  # a project already
    assert "already holds a project" in panel_window.errors[-1]
    assert not panel.open_project(tmp_path)
    assert "not a project" in panel_window.errors[-1] and "\n" not in panel_window.errors[-1]
    made = tmp_path / "new"
    assert panel.new_project(made) and (made / "project.sqlite").is_file()
    assert panel.recent_projects() == [str(made), str(project_folder)]
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    later = MainWindow(panel_window.loader, settings)  # the next start
    qtbot.addWidget(later)
    later.projects.recent_menu.actions()[1].trigger()
    assert later.projects.project.folder == project_folder


@pytest.mark.parametrize("source", ["folder", "csv"])
def test_a_new_project_is_filled_from_a_folder_of_slides_or_a_cohort_csv(
    panel_window, synthetic_cohort, tmp_path, qtbot, source
):
    panel = panel_window.projects
    assert panel.new_project(tmp_path / "new") and panel.shown_cases() == []
    panel.add_cases(synthetic_cohort.parent if source == "folder" else synthetic_cohort)
    qtbot.waitUntil(lambda: panel.job is None, timeout=60000)
    assert panel.status.text() == "Added 4 cases."
    assert panel.shown_cases() == ["case000", "case001", "case002", "case003"]
    assert all(case.he and case.ihc for case in panel.model.cases)  # paired
