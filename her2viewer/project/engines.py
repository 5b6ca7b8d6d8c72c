"""The engines of a cohort run: a local process pool, or Ray tasks and actors on any cluster.

Both run :func:`~her2viewer.project.tasks.run_case` per case and hand each case's outcomes to
``on_outcomes`` in the driver (which alone writes the database), keep a bounded number of cases
in flight (back-pressure), and give a case a second attempt when its worker dies or raises
something unexpected; a case that fails twice comes back as failed outcomes with a one-line
error, and the run goes on. With ``actors`` (or GPUs per task) the Ray engine runs the model
analyses of each case on Ray actors, processes that each hold a GPU share and keep their models
loaded for the whole run. Once ``stop()`` is true no case starts, and the cases in flight finish
and are handed on like any other (a cancelled run loses no finished work). A run stopped at once
(a second Ctrl-C) ends its Ray tasks and actors, and the local cluster it started, before it
returns. A local Ray cluster listens on the loopback interface only.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import multiprocessing
import os
import signal
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

from her2viewer.project.store import ProjectError
from her2viewer.project.tasks import Outcome, Task, failed, run_case, split_models

#: Attempts per case (a worker killed or an unexpected error gets one retry).
ATTEMPTS = 2
#: Cases in flight per worker: enough to keep workers busy, few results held by the driver.
IN_FLIGHT_PER_WORKER = 2

OnOutcomes = Callable[[list[Outcome]], None]
#: Whether the run is to stop starting cases.
Stop = Callable[[], bool]


def _never() -> bool:
    return False


def _halt(pending: deque, stop: Stop) -> None:
    """Once ``stop()`` is true, no pending case starts (the cases in flight finish)."""
    if stop():
        pending.clear()


def _start_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    signal.signal(signal.SIGINT, _first_interrupt)


def _first_interrupt(signum, frame) -> None:
    """A worker's first Ctrl-C (the terminal's reaches the whole pool) lets its case finish,
    as the driver stops starting cases; a second one interrupts it (KeyboardInterrupt)."""
    signal.signal(signal.SIGINT, signal.default_int_handler)


def run_local(
    cases: list[list[Task]], on_outcomes: OnOutcomes, workers: int, stop: Stop = _never
) -> None:
    """Run ``cases`` on a pool of ``workers`` spawned processes on this machine.

    A worker that dies breaks the pool: the cases in flight are resubmitted to a new pool
    (counted as an attempt each, since the pool cannot tell which one killed it). Once
    ``stop()`` is true, no case (nor a second attempt) starts; those in flight finish.
    """
    pending = deque((case, 1) for case in cases)
    threads = max(1, (os.cpu_count() or 1) // workers)

    def retry(case: list[Task], attempt: int, exc: BaseException) -> None:
        if attempt < ATTEMPTS:
            pending.append((case, attempt + 1))
        else:
            on_outcomes(failed(case, exc, attempt))

    context = multiprocessing.get_context("spawn")
    while pending and not stop():
        with ProcessPoolExecutor(workers, context, _start_worker, (threads,)) as pool:
            futures: dict = {}
            while pending or futures:
                _halt(pending, stop)
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


class _TokenAuthDefaultNotice(logging.Filter):
    """Drops Ray's notice that it turned token authentication on for a new local cluster.

    Ray (2.60 here) enables token authentication by default for the cluster ``ray.init``
    starts, with a token in ``~/.ray/auth_token``, and warns that it did unless
    ``RAY_AUTH_MODE`` is set. Token authentication is what a run wants (the cluster's ports,
    on the loopback interface, are open to every user of the machine, and a joined cluster's to
    its network), but the variable cannot say so from here: Ray reads it once,
    at import, and a value set later leaves this process without the token the cluster then
    asks for. So only that record is dropped; Ray's other warnings, and the one it gives
    when authentication is off, still show.
    """

    NOTICE = "Token authentication is enabled for this Ray cluster."

    def filter(self, record: logging.LogRecord) -> bool:
        """False for the default-token-authentication notice only."""
        return not record.getMessage().startswith(self.NOTICE)


_TOKEN_AUTH_NOTICE = _TokenAuthDefaultNotice()


@contextlib.contextmanager
def _single_machine() -> Iterator[None]:
    """Ray's single-machine mode while a local cluster starts: the node's address is the
    loopback one, and Ray binds every server of the node to it.

    Ray picks the loopback address for a node only when ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER``
    is off (its default on macOS and Windows); on Linux it takes the address of the network
    interface, rewrites a loopback ``_node_ip_address`` to it, and its GCS, raylet, object
    manager, workers and agents then listen on every interface. Ray reads the variable once,
    at import, into ``ray_constants.ENABLE_RAY_CLUSTER``, so the start sets that (a Ray
    without it is left as it is: :func:`_check_loopback` then judges where the node went).
    """
    from ray._private import ray_constants

    if not hasattr(ray_constants, "ENABLE_RAY_CLUSTER"):
        yield
        return
    cluster = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = cluster


def _check_loopback(ray) -> None:
    """A :class:`ProjectError` unless the local node Ray started is on the loopback interface."""
    node = ray.util.get_node_ip_address()
    if not ipaddress.ip_address(node).is_loopback:
        raise ProjectError(
            f"Ray {ray.__version__} put its local cluster on {node}, not on the loopback "
            "interface; start a cluster yourself and join it with --address."
        )


def start_ray(ray, workers: int | None, address: str | None) -> None:
    """Start a local cluster on the loopback interface (no ``address`` nor ``RAY_ADDRESS``)
    or join one as it is configured; a one-sentence error if not."""
    address = address or os.environ.get("RAY_ADDRESS") or None
    env = {k: v for k, v in os.environ.items() if k.startswith("HER2VIEWER_")}
    logging.getLogger("ray._private.authentication.authentication_token_setup").addFilter(
        _TOKEN_AUTH_NOTICE
    )
    try:
        with _single_machine() if address is None else contextlib.nullcontext():
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
    if address is None:
        _check_loopback(ray)


class _ModelWorker:
    """A Ray actor: one process, with its GPU share, whose models stay loaded across cases.

    :func:`~her2viewer.project.tasks.run_case` caches each bundle's model per process, so an
    actor loads each bundle once, on its first case.
    """

    def run(self, case: list[Task]) -> list[Outcome]:
        """Run the tasks of one case (its model analyses)."""
        return run_case(case)


class _Tasks:
    """Cases as Ray tasks: Ray retries a task once; at most ``capacity`` cases in flight."""

    def __init__(self, ray, cases: list[list[Task]], capacity: int, gpus: float) -> None:
        self.ray = ray
        self.pending = deque(cases)
        self.capacity = capacity
        self.flight: dict = {}
        self.remote = ray.remote(run_case).options(
            num_cpus=1, num_gpus=gpus, max_retries=ATTEMPTS - 1, retry_exceptions=True
        )

    def submit(self) -> None:
        """Submit pending cases up to the capacity."""
        while self.pending and len(self.flight) < self.capacity:
            case = self.pending.popleft()
            self.flight[self.remote.remote(case)] = case

    def finish(self, ref, on_outcomes: OnOutcomes) -> None:
        """Hand the outcomes of the finished ``ref`` on (failed ones after Ray's retry)."""
        case = self.flight.pop(ref)
        try:
            on_outcomes(self.ray.get(ref))
        except self.ray.exceptions.RayError as exc:
            on_outcomes(failed(case, _one_line(exc), ATTEMPTS))

    def close(self) -> None:
        """End the tasks still in flight (a run stopped at once): their workers exit."""
        for ref in self.flight:
            self.ray.cancel(ref, force=True)
        self.flight = {}


class _Actors:
    """Cases on ``count`` model actors, one case in flight each.

    A dead actor is restarted by Ray (``max_restarts``) and its case, the only one it held,
    is resubmitted as a second attempt; an unexpected error in a case is retried the same way.
    """

    def __init__(self, ray, cases: list[list[Task]], count: int, gpus: float) -> None:
        self.ray = ray
        self.pending = deque((case, 1) for case in cases)
        self.flight: dict = {}
        worker = ray.remote(_ModelWorker).options(
            num_cpus=1, num_gpus=gpus, max_restarts=len(cases) * ATTEMPTS, max_task_retries=0
        )
        self.idle = [worker.remote() for _ in range(min(count, len(cases)))]

    def submit(self) -> None:
        """Give each idle actor a pending case; release the actors when no case is left."""
        while self.pending and self.idle:
            case, attempt = self.pending.popleft()
            actor = self.idle.pop()
            self.flight[actor.run.remote(case)] = (case, attempt, actor)
        if not self.pending and not self.flight:
            self.close()  # their CPUs and GPUs go to the remaining tasks

    def finish(self, ref, on_outcomes: OnOutcomes) -> None:
        """Hand the outcomes of ``ref`` on, or resubmit its case if its actor died or raised."""
        case, attempt, actor = self.flight.pop(ref)
        self.idle.append(actor)
        try:
            outcomes = self.ray.get(ref)
        except self.ray.exceptions.RayError as exc:
            if attempt < ATTEMPTS:
                self.pending.append((case, attempt + 1))
            else:
                on_outcomes(failed(case, _one_line(exc), attempt))
            return
        for outcome in outcomes:
            outcome.attempts = attempt
        on_outcomes(outcomes)

    def close(self) -> None:
        """End the actors (a cluster that was joined gets their GPUs back)."""
        for actor in self.idle + [actor for _, _, actor in self.flight.values()]:
            self.ray.kill(actor)
        self.idle = []


def _actor_count(ray, actors: int, gpus_per_task: float) -> int:
    """``actors``, or one actor per ``gpus_per_task`` GPUs of the cluster.

    A :class:`ProjectError` when the cluster has fewer GPUs than one actor asks for.
    """
    gpus = ray.cluster_resources().get("GPU", 0)
    if gpus < gpus_per_task:
        raise ProjectError(
            f"--gpus-per-task {gpus_per_task:g} asks for more GPUs than the Ray cluster has "
            f"({gpus:g})."
        )
    return actors or max(1, int(gpus / gpus_per_task))


def _active(lanes: list, stop: Stop) -> bool:
    """Whether a lane has cases pending or in flight (none pending once ``stop()`` is true)."""
    for lane in lanes:
        _halt(lane.pending, stop)
    return any(lane.pending or lane.flight for lane in lanes)


def _drive(ray, lanes: list, on_outcomes: OnOutcomes, stop: Stop) -> None:
    """Submit and collect the cases of every lane until all are done (``ray.wait``), or,
    once ``stop()`` is true, until the cases in flight are."""
    while _active(lanes, stop):
        for lane in lanes:
            lane.submit()
        ready, _ = ray.wait([ref for lane in lanes for ref in lane.flight], num_returns=1)
        next(lane for lane in lanes if ready[0] in lane.flight).finish(ready[0], on_outcomes)


def run_ray(
    cases: list[list[Task]],
    on_outcomes: OnOutcomes,
    workers: int | None,
    address: str | None,
    gpus_per_task: float,
    actors: int = 0,
    stop: Stop = _never,
) -> None:
    """Run ``cases`` as Ray tasks (one per case) on a cluster or a local one.

    ``address`` None (and no ``RAY_ADDRESS``) starts a local cluster with ``workers`` CPUs
    (all of them when None), listening on the loopback interface only, and stops it at the
    end; a given address joins that cluster. Ray retries a task once
    (``max_retries``, ``retry_exceptions``); ``ray.wait`` keeps at most
    ``IN_FLIGHT_PER_WORKER`` x CPUs cases in flight. With ``actors`` > 0 or ``gpus_per_task``
    > 0, the model analyses of each case run on that many Ray actors (one per
    ``gpus_per_task`` GPUs of the cluster by default), each holding ``gpus_per_task`` GPUs and
    its models for the whole run, and the other analyses as CPU-only tasks. Once ``stop()``
    is true, no case starts; those in flight finish. A run left by an exception (a second
    Ctrl-C's KeyboardInterrupt) cancels its tasks in flight (``force``: their workers exit)
    and kills its actors, then stops the local cluster, so no worker of it outlives the run.
    """
    try:
        import ray
    except ImportError as exc:
        raise ProjectError("--engine ray needs Ray: pip install 'ray>=2.9'.") from exc
    started_here = not ray.is_initialized()
    lanes: list = []
    try:
        if started_here:
            start_ray(ray, workers, address)
        capacity = int(ray.cluster_resources().get("CPU", 1)) * IN_FLIGHT_PER_WORKER
        if actors or gpus_per_task:
            count = _actor_count(ray, actors, gpus_per_task)
            rest, models = split_models(cases)
            lanes = [_Tasks(ray, rest, capacity, 0), _Actors(ray, models, count, gpus_per_task)]
        else:
            lanes = [_Tasks(ray, cases, capacity, 0)]
        _drive(ray, lanes, on_outcomes, stop)
    finally:
        for lane in lanes:
            lane.close()
        if started_here:
            ray.shutdown()
