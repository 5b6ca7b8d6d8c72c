"""The engines of a cohort run: a local process pool, or Ray tasks on a laptop or a cluster.

Both run :func:`~her2viewer.project.tasks.run_case` per case and hand each case's outcomes to
``on_outcomes`` in the driver (which alone writes the database), keep a bounded number of cases
in flight (back-pressure), and give a case a second attempt when its worker dies or raises
something unexpected; a case that fails twice comes back as failed outcomes with a one-line
error, and the run goes on.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections import deque
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

from her2viewer.project.store import ProjectError
from her2viewer.project.tasks import Outcome, Task, failed, run_case

#: Attempts per case (a worker killed or an unexpected error gets one retry).
ATTEMPTS = 2
#: Cases in flight per worker: enough to keep workers busy, few results held by the driver.
IN_FLIGHT_PER_WORKER = 2

OnOutcomes = Callable[[list[Outcome]], None]


def _start_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def run_local(cases: list[list[Task]], on_outcomes: OnOutcomes, workers: int) -> None:
    """Run ``cases`` on a pool of ``workers`` spawned processes on this machine.

    A worker that dies breaks the pool: the cases in flight are resubmitted to a new pool
    (counted as an attempt each, since the pool cannot tell which one killed it).
    """
    pending = deque((case, 1) for case in cases)
    threads = max(1, (os.cpu_count() or 1) // workers)

    def retry(case: list[Task], attempt: int, exc: BaseException) -> None:
        if attempt < ATTEMPTS:
            pending.append((case, attempt + 1))
        else:
            on_outcomes(failed(case, exc, attempt))

    context = multiprocessing.get_context("spawn")
    while pending:
        with ProcessPoolExecutor(workers, context, _start_worker, (threads,)) as pool:
            futures: dict = {}
            while pending or futures:
                while pending and len(futures) < workers * IN_FLIGHT_PER_WORKER:
                    case, attempt = pending.popleft()
                    futures[pool.submit(run_case, case)] = (case, attempt)
                done, _ = wait(futures, return_when=FIRST_COMPLETED)
                for future in done:
                    case, attempt = futures.pop(future)
                    try:
                        outcomes = future.result()
                    except Exception as exc:  # noqa: BLE001 - any worker failure is retried
                        retry(case, attempt, exc)
                        continue
                    for outcome in outcomes:
                        outcome.attempts = attempt
                    on_outcomes(outcomes)
                if any(isinstance(f.exception(), BrokenProcessPool) for f in done):
                    for case, attempt in futures.values():
                        retry(case, attempt, BrokenProcessPool("a worker process died"))
                    break


def _one_line(exc: BaseException) -> BaseException | str:
    """The error a Ray task raised (its cause), or the first line of a system failure."""
    cause = getattr(exc, "cause", None)
    if cause is not None:
        return cause
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def _start_ray(ray, workers: int | None, address: str | None) -> None:
    """Start a local cluster (``address`` None) or join one; a one-sentence error if not."""
    env = {k: v for k, v in os.environ.items() if k.startswith("HER2VIEWER_")}
    try:
        ray.init(
            address=address,
            num_cpus=workers if address is None else None,
            include_dashboard=False,
            log_to_driver=False,
            logging_level=logging.WARNING,
            runtime_env={"env_vars": env},
        )
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"join the Ray cluster at {address}" if address else "start a local Ray cluster"
        raise ProjectError(f"Cannot {where}: {_one_line(exc)}") from exc


def run_ray(
    cases: list[list[Task]],
    on_outcomes: OnOutcomes,
    workers: int | None,
    address: str | None,
    gpus_per_task: float,
) -> None:
    """Run ``cases`` as Ray tasks (one per case) on a cluster or a local one.

    ``address`` None starts a local cluster with ``workers`` CPUs (all of them when None) and
    stops it at the end; a given address joins that cluster. Ray retries a task once
    (``max_retries``, ``retry_exceptions``); ``ray.wait`` keeps at most
    ``IN_FLIGHT_PER_WORKER`` x CPUs cases in flight.
    """
    try:
        import ray
    except ImportError as exc:
        raise ProjectError("--engine ray needs Ray: pip install 'ray>=2.9'.") from exc
    started_here = not ray.is_initialized()
    if started_here:
        _start_ray(ray, workers, address)
    try:
        capacity = int(ray.cluster_resources().get("CPU", 1)) * IN_FLIGHT_PER_WORKER
        remote = ray.remote(run_case).options(
            num_cpus=1, num_gpus=gpus_per_task, max_retries=ATTEMPTS - 1, retry_exceptions=True
        )
        pending = deque(cases)
        flight: dict = {}
        while pending or flight:
            while pending and len(flight) < capacity:
                case = pending.popleft()
                flight[remote.remote(case)] = case
            ready, _ = ray.wait(list(flight), num_returns=1)
            case = flight.pop(ready[0])
            try:
                on_outcomes(ray.get(ready[0]))
            except ray.exceptions.RayError as exc:
                on_outcomes(failed(case, _one_line(exc), ATTEMPTS))
    finally:
        if started_here:
            ray.shutdown()
