"""Cohort runs (issue 20): local pool and Ray give the same results, resume, survive kills.

The runs use the quick analyses (segment, ihc) of the 4-case synthetic cohort: the engines
and the bookkeeping are what is tested, each analysis has its own tests.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from her2viewer.cli.main import main
from her2viewer.project.cohort import import_csv
from her2viewer.project.results import collect_garbage, results_table
from her2viewer.project.run import run_project
from her2viewer.project.store import Project
from her2viewer.project.tasks import ANALYSES, FAULT_ENV, parse_analyses, plan, run_case
from tests.reliability.conftest import leftovers, one_line_error

pytestmark = pytest.mark.slow
QUICK = ["segment", "ihc"]


def _project(folder, labels) -> Project:
    project = Project.create(folder)
    import_csv(project, labels)
    return project


@pytest.fixture(scope="module")
def local_run(tmp_path_factory, synthetic_cohort):
    """The cohort run once by the local engine: ``(project, report)``."""
    project = _project(tmp_path_factory.mktemp("local") / "proj", synthetic_cohort)
    return project, run_project(project, QUICK, engine="local", workers=2)


def _artefacts(project: Project) -> list[str]:
    return sorted(p.name for p in (project.folder / "artefacts").rglob("*.npz"))


def test_a_local_run_does_every_task_once_and_a_rerun_nothing(local_run):
    project, report = local_run
    assert (report.planned, report.done, report.failed) == (8, 8, 0)
    rows = project.results()
    assert len(rows) == 8 and {r.status for r in rows} == {"done"}
    ihc = {r.case_id: r.summary["score"] for r in rows if r.analysis == "ihc"}
    assert ihc["case000"] == 3 and ihc["case001"] == 0  # the truth of the clear cases
    assert all(project.resolve(a).is_file() for r in rows for a in r.artefacts)
    assert len(_artefacts(project)) == 8 and leftovers(project.folder) == []
    again = run_project(project, QUICK, engine="local", workers=2)
    assert (again.planned, again.done) == (0, 0)
    assert [(r.task_key, r.started) for r in project.results()] == [
        (r.task_key, r.started) for r in rows
    ]


def test_a_local_ray_cluster_gives_the_local_results(local_run, tmp_path, synthetic_cohort):
    project = _project(tmp_path / "proj", synthetic_cohort)
    report = run_project(project, QUICK, engine="ray", workers=2)
    assert (report.done, report.failed) == (8, 0)
    assert results_table(project) == results_table(local_run[0])
    assert _artefacts(project) == _artefacts(local_run[0])


@pytest.mark.parametrize("engine", ["local", "ray"])
def test_a_killed_worker_and_a_failing_case_leave_every_case_done_once(
    engine, tmp_path, synthetic_cohort, monkeypatch
):
    marker = tmp_path / "killed"
    faults = f"kill:case001:ihc:{marker},fail:case002:segment"
    monkeypatch.setenv(FAULT_ENV, faults)
    project = _project(tmp_path / "proj", synthetic_cohort)
    report = run_project(project, QUICK, engine=engine, workers=2)
    assert marker.exists()  # the worker running case001's ihc did die
    rows = {(r.case_id, r.analysis): r for r in project.results()}
    assert len(rows) == 8 and (report.done, report.failed) == (6, 2)
    assert rows["case001", "ihc"].status == "done"
    failed = rows["case002", "segment"]
    assert failed.status == "failed" and failed.attempts == 2
    assert failed.error == "injected failure of segment on case002"
    names = _artefacts(project)
    assert len(names) == len(set(names)) == 6 and leftovers(project.folder) == []


def test_a_killed_driver_resumes_without_redoing_finished_tasks(tmp_path, synthetic_cohort):
    project = _project(tmp_path / "proj", synthetic_cohort)
    command = [sys.executable, "-m", "her2viewer", "project", "run", str(project.folder)]
    command += ["--analyses", ",".join(QUICK), "--quiet"]
    driver = subprocess.Popen(command, start_new_session=True, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not project.results("done") and time.monotonic() < deadline:
        assert driver.poll() is None, "the run ended before it could be killed"
        time.sleep(0.05)
    os.killpg(driver.pid, signal.SIGKILL)  # the driver and its pool, mid-run
    driver.wait()
    first = {(r.case_id, r.analysis): r.started for r in project.results()}
    assert 0 < len(first) < 8
    report = run_project(project, QUICK, engine="local", workers=2)
    assert report.planned == 8 - len(first) and report.failed == 0
    rows = project.results()
    assert len(rows) == 8 and all(r.status == "done" for r in rows)
    kept = {(r.case_id, r.analysis): r.started for r in rows if (r.case_id, r.analysis) in first}
    assert kept == first  # finished tasks were not redone
    collect_garbage(project)  # a temporary file the killed worker was writing, if any
    assert leftovers(project.folder) == []


def test_every_analysis_runs_on_a_case_with_its_artefacts_in_the_project(
    tmp_path, synthetic_cohort
):
    project = _project(tmp_path / "proj", synthetic_cohort)
    names = parse_analyses("cells,grade,ihc,her2net,clam,extract,segment")
    assert names == list(ANALYSES)  # run order: extract before clam
    case = next(group for group in plan(project, names) if group[0].case_id == "case000")
    outcomes = run_case(case)
    assert [o.status for o in outcomes] == ["done"] * 7, [o.error for o in outcomes]
    for outcome in outcomes:
        project.record(outcome.row(project))
        assert all(path.startswith(str(project.folder)) for path in outcome.artefacts)
    summaries = {o.task.analysis: o.summary for o in outcomes}
    assert summaries["extract"]["patches"] == summaries["clam"]["patches"] > 0
    assert 0 <= summaries["clam"]["probabilities"]["positive"] <= 1
    assert summaries["ihc"]["score"] == 3 and summaries["cells"]["n_cells"] > 0
    features = list((project.folder / "features").rglob("*.h5"))
    assert len(features) == 1  # CLAM read the features extract wrote
    assert [group[0].case_id for group in plan(project, names)] == [
        "case001", "case002", "case003",
    ]  # fmt: skip


def test_a_bad_ray_address_is_one_sentence(tmp_path, synthetic_cohort, capsys):
    project = _project(tmp_path / "proj", synthetic_cohort)
    args = ["project", "run", str(project.folder), "--analyses", "ihc", "--quiet"]
    assert main([*args, "--engine", "ray", "--address", "nonsense"]) == 2
    one_line_error(capsys, "Cannot join the Ray cluster at nonsense: Invalid address format")
    assert project.results() == []
