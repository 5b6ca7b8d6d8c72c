"""Cohort runs on Ray actors (issue 20): model analyses on actors that keep their models loaded.

A local cluster of 2 CPUs runs segment (a CPU task) and CLAM (on num_gpus=0 actors) over the
4-case synthetic cohort; the results equal the local engine's, and an actor killed mid-case is
restarted and its case resubmitted, so every case is done exactly once.
"""

from __future__ import annotations

import pytest

from her2viewer.cli.main import main
from her2viewer.project.cohort import import_csv
from her2viewer.project.results import results_table
from her2viewer.project.run import run_project
from her2viewer.project.store import Project
from her2viewer.project.tasks import FAULT_ENV, MODEL_ANALYSES, plan, split_models
from tests.reliability.conftest import leftovers, one_line_error

pytestmark = pytest.mark.slow
RUN = ["segment", "clam"]


def _project(folder, labels) -> Project:
    project = Project.create(folder)
    import_csv(project, labels)
    return project


def test_a_case_splits_into_its_cpu_part_and_its_model_part(tmp_path, synthetic_cohort):
    project = _project(tmp_path / "proj", synthetic_cohort)
    rest, models = split_models(plan(project, ["segment", "extract", "clam", "ihc"]))
    assert [[t.analysis for t in case] for case in rest] == [["segment", "ihc"]] * 4
    assert [[t.analysis for t in case] for case in models] == [["extract", "clam"]] * 4
    assert all(t.analysis in MODEL_ANALYSES for case in models for t in case)


def test_ray_actors_give_the_local_results(tmp_path, synthetic_cohort):
    local = _project(tmp_path / "local", synthetic_cohort)
    run_project(local, RUN, engine="local", workers=1)
    project = _project(tmp_path / "proj", synthetic_cohort)
    report = run_project(project, RUN, engine="ray", workers=2, actors=2)
    assert (report.planned, report.done, report.failed) == (8, 8, 0)
    (header, rows), (local_header, local_rows) = results_table(project), results_table(local)
    assert header == local_header and len(rows) == len(local_rows) == 4
    for row, local_row in zip(rows, local_rows, strict=True):
        # float32 sums differ in the last bits with the number of torch threads (1 per actor)
        assert [pytest.approx(v, rel=1e-5) if isinstance(v, float) else v for v in row] == local_row
    assert {r.attempts for r in project.results()} == {1}


def test_a_killed_actor_and_a_failing_case_leave_every_case_done_once(
    tmp_path, synthetic_cohort, monkeypatch
):
    marker = tmp_path / "killed"
    monkeypatch.setenv(FAULT_ENV, f"kill:case001:clam:{marker},fail:case002:clam")
    project = _project(tmp_path / "proj", synthetic_cohort)
    report = run_project(project, RUN, engine="ray", workers=2, actors=1)
    assert marker.exists()  # the actor running case001's CLAM did die
    rows = {(r.case_id, r.analysis): r for r in project.results()}
    assert len(project.results()) == len(rows) == 8 and (report.done, report.failed) == (7, 1)
    killed = rows["case001", "clam"]
    assert killed.status == "done" and killed.attempts == 2  # resubmitted to the restarted actor
    failed = rows["case002", "clam"]
    assert failed.status == "failed" and failed.attempts == 2
    assert failed.error == "injected failure of clam on case002"
    assert leftovers(project.folder) == []


def test_more_gpus_per_task_than_the_cluster_has_is_one_sentence(
    tmp_path, synthetic_cohort, capsys
):
    project = _project(tmp_path / "proj", synthetic_cohort)
    args = ["project", "run", str(project.folder), "--analyses", "clam", "--quiet"]
    assert main([*args, "--engine", "ray", "--workers", "1", "--gpus-per-task", "1"]) == 2
    one_line_error(capsys, "--gpus-per-task 1 asks for more GPUs than the Ray cluster has (0).")
