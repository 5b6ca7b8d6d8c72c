"""A cancelled project run (the app's Cancel, Ctrl-C in `project run`) starts no new case and
stores the cases in flight like any other: nothing finished is lost, nothing is half-written,
and the case list says which cases ran.

The local engine with one worker keeps two cases in flight, so a cancel as the first case is
stored leaves exactly one case in flight: the second case is done and stored, the last two
never start.
"""

from __future__ import annotations

import os
import signal
import threading

import pytest

from her2viewer.cli.main import main
from her2viewer.project.cohort import import_csv
from her2viewer.project.run import run_project
from her2viewer.project.store import Project
from tests.reliability.conftest import leftovers

pytestmark = pytest.mark.slow
RAN, NOT_RUN = {"case000", "case001"}, {"case002", "case003"}


def _project(folder, labels) -> Project:
    project = Project.create(folder)
    import_csv(project, labels)
    return project


def _check_stored(project: Project, ran: set[str]) -> None:
    """``ran`` stored as done, nothing else; every artefact belongs to a stored result."""
    rows = project.results()
    assert {r.case_id for r in rows} == ran and {r.status for r in rows} == {"done"}
    kept = {project.resolve(a) for r in rows for a in r.artefacts}
    assert all(path.is_file() for path in kept)
    files = {p for p in (project.folder / "artefacts").rglob("*") if p.is_file()}
    assert files == kept and leftovers(project.folder) == []


@pytest.mark.parametrize("engine", ["local", "ray"])  # one CPU of Ray: two cases in flight too
def test_a_cancelled_run_stores_the_cases_in_flight_and_starts_no_other(
    engine, tmp_path, synthetic_cohort
):
    project = _project(tmp_path / "proj", synthetic_cohort)
    stored = []
    report = run_project(
        project, ["segment"], engine=engine, workers=1,
        progress=lambda done, total, case: case and stored.append(case),
        cancelled=lambda: bool(stored),  # Cancel pressed as the first case is stored
    )  # fmt: skip
    assert set(stored) == RAN
    assert report.cancelled and (report.planned, report.done, report.not_run) == (4, 2, 2)
    _check_stored(project, RAN)
    again = run_project(project, ["segment"], workers=1)  # the next run does the rest
    assert (again.planned, again.done, again.cancelled) == (2, 2, False)


def _interrupting(monkeypatch, times: int) -> None:
    """Send this process Ctrl-C (SIGINT) as each of the first ``times`` results is stored."""
    record, sent = Project.record, []

    def record_then_interrupt(self, row):
        record(self, row)
        if len(sent) < times:
            sent.append(row.case_id)
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(Project, "record", record_then_interrupt)


def _run(folder) -> int:
    command = ["project", "run", str(folder), "--analyses", "segment", "--workers", "1"]
    return main([*command, "--quiet"])


def test_ctrl_c_in_project_run_stores_the_cases_in_flight(
    tmp_path, synthetic_cohort, monkeypatch, capfd
):
    project = _project(tmp_path / "proj", synthetic_cohort)
    _interrupting(monkeypatch, times=1)
    handler = signal.getsignal(signal.SIGINT)
    assert _run(project.folder) == 130
    captured = capfd.readouterr()
    assert "stopping: no new case starts" in captured.err
    assert captured.out.strip() == (
        "cancelled: 2 tasks done, 0 failed, 2 not run (the next 'project run' does them)"
    )
    assert signal.getsignal(signal.SIGINT) is handler  # the run's own handler is gone
    _check_stored(project, RAN)


def test_a_second_ctrl_c_stops_project_run_at_once(tmp_path, synthetic_cohort, monkeypatch, capfd):
    project = _project(tmp_path / "proj", synthetic_cohort)
    _interrupting(monkeypatch, times=2)  # the second as the case in flight is stored
    assert _run(project.folder) == 130
    assert capfd.readouterr().err.strip().endswith("her2viewer: cancelled")
    assert {r.case_id for r in project.results()} == RAN and leftovers(project.folder) == []


def test_the_panel_cancel_stores_the_cases_in_flight_and_the_list_says_so(
    panel_window, synthetic_cohort, tmp_path, qtbot
):
    pytest.importorskip("PySide6")
    panel = panel_window.projects
    project = _project(tmp_path / "proj", synthetic_cohort)
    assert panel.open_project(project.folder)
    panel.run_cases(sorted(RAN | NOT_RUN), ["segment"])
    clicked = threading.Event()
    job = panel.job
    job.on_progress(lambda progress: progress.message and clicked.wait(60))  # hold the driver
    qtbot.waitUntil(lambda: bool(panel._finished), timeout=120000)  # the first case stored
    panel.cancel_button.click()
    assert panel.status.text().startswith("Cancelling: the cases in flight finish")
    clicked.set()
    qtbot.waitUntil(lambda: panel.job is None, timeout=120000)
    assert panel.status.text().startswith("Cancelled: 2 done, 0 failed of 4 tasks")
    assert panel.status.text().endswith("2 not run (the next run does them).")
    _check_stored(project, RAN)
    column = panel.model.COLUMNS.index("segment")
    shown = {
        panel.case_at(row): panel.proxy.index(row, column).data()
        for row in range(panel.proxy.rowCount())
    }
    assert shown == {"case000": "✓", "case001": "✓", "case002": "", "case003": ""}
    assert not panel.model.queued  # no case is left shown as queued
