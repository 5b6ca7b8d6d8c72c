"""The background worker process at the app's exit: no new one starts once exit began."""

import pytest

from her2viewer.jobs import worker
from her2viewer.jobs.core import Cancelled, JobContext


def _answer(_context) -> int:
    return 42


def test_a_job_pending_at_exit_starts_no_worker_process(monkeypatch):
    monkeypatch.setattr(worker, "_worker", {})  # this test's own worker state: none started
    worker._stop()  # the app exits (atexit) before any process job ran
    with pytest.raises(Cancelled, match="closing"):
        worker.run_in_worker(_answer, JobContext())
    assert "pool" not in worker._worker  # no process spawned, no channels to leak
