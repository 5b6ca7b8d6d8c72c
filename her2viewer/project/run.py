"""Run analyses over a project: plan, hand the cases to an engine, store each result row.

The Qt-free entry point of ``her2viewer project run`` and of the app's "run on selected cases".
A cancelled run (the app's Cancel, or Ctrl-C) starts no new case; the cases in flight finish and
are stored like any other, so a cancel loses no finished work and leaves nothing half-written.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from her2viewer.project.engines import run_local, run_ray
from her2viewer.project.store import Project, ProjectError
from her2viewer.project.tasks import Outcome, plan

#: The engines of ``--engine``.
ENGINES = ("local", "ray")

Progress = Callable[[int, int, str], None]
#: Written to the terminal on a run's first Ctrl-C.
STOPPING = (
    "\nstopping: no new case starts; the cases in flight finish and are stored "
    "(Ctrl-C again to stop now)\n"
)


@dataclass
class RunReport:
    """What a run did: tasks planned, done and failed, its wall time (s), and whether it was
    cancelled (its :attr:`not_run` tasks are left for the next run)."""

    planned: int = 0
    done: int = 0
    failed: int = 0
    seconds: float = 0.0
    cancelled: bool = False

    @property
    def not_run(self) -> int:
        """Tasks planned that did not run (a cancelled run's rest)."""
        return self.planned - self.done - self.failed


@contextlib.contextmanager
def _interrupt_stops(interrupted: threading.Event) -> Iterator[None]:
    """On the main thread, make the first Ctrl-C set ``interrupted`` (and say so on the
    terminal) and the next one raise KeyboardInterrupt, as usual; elsewhere do nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def first(signum, frame) -> None:
        interrupted.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)
        with contextlib.suppress(OSError):
            os.write(2, STOPPING.encode())  # no Python buffer: safe in a handler

    previous = signal.signal(signal.SIGINT, first)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous or signal.default_int_handler)


def run_project(
    project: Project,
    analyses: list[str],
    *,
    engine: str = "local",
    workers: int | None = None,
    address: str | None = None,
    gpus_per_task: float = 0,
    actors: int = 0,
    cases: list[str] | None = None,
    progress: Progress | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> RunReport:
    """Run ``analyses`` on every case of ``project`` (or only ``cases``) not done yet.

    Each outcome is stored as the worker returns it (the artefacts are already written), so
    a run killed at any point resumes where it stopped.

    Parameters
    ----------
    project : Project
    analyses : list of str
        Names from :data:`~her2viewer.project.tasks.ANALYSES`.
    engine : {"local", "ray"}
    workers : int, optional
        Processes of the local pool, or CPUs of a local Ray cluster (default: 1 / all).
    address : str, optional
        A Ray cluster to join (``ray://host:10001`` or ``auto``); a local one otherwise.
    gpus_per_task : float
        GPUs Ray gives each model actor (the CPU-only tasks get none).
    actors : int
        Ray actors that run the model analyses and keep their models loaded; with 0, one per
        ``gpus_per_task`` GPUs of the cluster, or none (plain tasks) when that is 0 too.
    cases : list of str, optional
        Case ids to run (the app's selection); all cases when None.
    progress : callable, optional
        ``progress(done, total, message)`` after each case.
    cancelled : callable, optional
        ``cancelled()`` true (the app's Cancel) stops the run: no case starts any more, the
        cases in flight finish and are stored like any other, and the report says
        ``cancelled``. On the main thread (the CLI) the first Ctrl-C does the same; a second
        one raises KeyboardInterrupt at once (a terminal's Ctrl-C interrupts the workers'
        cases too: their artefacts are never half-written, and they are not stored).
    """
    if engine not in ENGINES:
        raise ProjectError(f"Unknown engine {engine!r}: choose from {', '.join(ENGINES)}.")
    work = plan(project, analyses)
    if cases is not None:
        work = [group for group in work if group[0].case_id in set(cases)]
    report = RunReport(planned=sum(map(len, work)))
    start = time.perf_counter()
    report_progress = progress or (lambda done, total, message: None)
    report_progress(0, report.planned, "")

    def store(outcomes: list[Outcome]) -> None:
        for outcome in outcomes:
            project.record(outcome.row(project))
            report.done += outcome.status == "done"
            report.failed += outcome.status == "failed"
        report_progress(report.done + report.failed, report.planned, outcomes[0].task.case_id)

    interrupted = threading.Event()

    def stop() -> bool:
        return interrupted.is_set() or (cancelled is not None and cancelled())

    with project.exclusive(), _interrupt_stops(interrupted):
        if engine == "local":
            run_local(work, store, workers or 1, stop)
        else:
            run_ray(work, store, workers, address, gpus_per_task, actors, stop)
    report.seconds = time.perf_counter() - start
    report.cancelled = report.not_run > 0 and stop()
    return report
