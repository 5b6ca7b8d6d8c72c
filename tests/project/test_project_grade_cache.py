"""A cohort run loads the grading CNN once per worker process, not once per case."""

from __future__ import annotations

import pytest

from her2viewer.analysis import grade
from her2viewer.project import tasks
from her2viewer.project.cohort import import_csv
from her2viewer.project.store import Project


@pytest.fixture()
def loads(monkeypatch):
    """Count the grading CNN loads, wherever a run loads it from."""
    calls = []

    def counted(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    real = grade.load_patch_cnn
    monkeypatch.setattr(grade, "load_patch_cnn", counted)
    monkeypatch.setattr(tasks, "load_patch_cnn", counted, raising=False)
    tasks._grade_model.cache_clear()
    yield calls
    tasks._grade_model.cache_clear()


def test_two_cases_are_graded_with_one_load_of_the_model(tmp_path, synthetic_cohort, loads):
    project = Project.create(tmp_path / "proj")
    import_csv(project, synthetic_cohort)
    cases = tasks.plan(project, ["grade"])[:2]
    outcomes = [outcome for case in cases for outcome in tasks.run_case(case)]
    assert [outcome.status for outcome in outcomes] == ["done", "done"]
    assert len(loads) == 1


def test_the_per_process_model_caches_are_bounded():
    for loader in (tasks._encoder, tasks._her2net_model, tasks._grade_model):
        assert loader.cache_info().maxsize == tasks.MODELS_KEPT
