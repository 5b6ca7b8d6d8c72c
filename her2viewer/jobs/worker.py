"""One worker process for background jobs: its own interpreter, so its own GIL.

A niced thread that runs Python still holds the GIL the GUI thread needs; on a busy
machine the scheduler leaves it waiting with the GIL held and frames stall (measured in
``benchmarks/bench_viewer.py --background-analysis``). A job in this process competes
with the viewer only for CPU, where its nice value lets the viewer go first.

The process is started (spawned, never forked from a process with Qt and torch threads)
on the first job and kept for the next ones. The job's function must pickle: a
module-level function or a :func:`functools.partial` of one. Progress comes back through
a queue; cancellation and "foreground work pending" go out through two events.
"""

from __future__ import annotations

import atexit
import contextlib
import multiprocessing as mp
import os
import queue
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from her2viewer.jobs import core

#: How often the parent forwards progress, cancellation and foreground state.
POLL_S = 0.02

_lock = threading.Lock()
_worker: dict[str, Any] = {}  # parent: the pool and its channels; child: its channel ends


class _Idle:
    """The child's view of the parent's foreground: set while no tile work is pending."""

    def __init__(self, event) -> None:
        self._event = event

    def wait_idle(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the parent's foreground work to finish."""
        return self._event.wait(timeout)


def _start_child(progress, cancel, idle, nice: int, threads: int) -> None:
    """Initialise the worker process: at nice value ``nice``, with few math threads."""
    with contextlib.suppress(OSError, AttributeError):  # not on every platform
        os.setpriority(os.PRIO_PROCESS, 0, nice)
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = str(threads)
    _worker.update(progress=progress, cancel=cancel, idle=idle, threads=threads)


def _run_child(fn: Callable[[core.JobContext], Any]) -> Any:
    """Run one job in the worker process with a context wired to the parent."""
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(_worker["threads"])
    context = core.JobContext(
        token=core.CancelToken(_worker["cancel"]),
        listeners=[_worker["progress"].put],
        foreground=_Idle(_worker["idle"]),
    )
    try:
        return fn(context)
    finally:
        _worker["progress"].put(None)  # after every report: the parent has seen them all


def _pool() -> dict[str, Any]:
    """The worker process and its channels, started on first use."""
    with _lock:
        if _worker.get("closed"):
            raise core.Cancelled("The app is closing: no background process starts now.")
        if "pool" not in _worker:
            spawn = mp.get_context("spawn")
            channels = {"progress": spawn.Queue(), "cancel": spawn.Event(), "idle": spawn.Event()}
            _worker["pool"] = ProcessPoolExecutor(
                1,
                mp_context=spawn,
                initializer=_start_child,
                initargs=(
                    *channels.values(),
                    _app_nice() + core.BACKGROUND_NICENESS,
                    core.background_torch_threads(),
                ),
            )
            _worker.update(channels)
        return _worker


def _app_nice() -> int:
    """Nice value of the app's main thread (0 where there is none to read)."""
    with contextlib.suppress(OSError, AttributeError):
        return os.getpriority(os.PRIO_PROCESS, os.getpid())
    return 0


def run_in_worker(fn: Callable[[core.JobContext], Any], context: core.JobContext) -> Any:
    """Run ``fn`` in the worker process, relaying progress, cancellation and foreground state.

    Call it holding a background slot (one job at a time). Waits for the job to stop,
    also after a cancel, so the next job never sees this one's cancellation.
    """
    worker = _pool()
    worker["cancel"].clear()
    try:
        future = worker["pool"].submit(_run_child, fn)
        while not _relay(worker, context):
            if future.done() and isinstance(future.exception(), BrokenProcessPool):
                break  # the process died (e.g. out of memory) before its last word
        return future.result()
    except BrokenProcessPool:
        _worker.pop("pool", None)  # the next job starts a new process
        raise


def _relay(worker: dict[str, Any], context: core.JobContext) -> bool:
    """Pass queued progress to ``context`` and the parent's state to the child.

    Returns True once the job's last word (after its last report) arrived.
    """
    if context.token.cancelled:
        worker["cancel"].set()
    if core.FOREGROUND.busy:
        worker["idle"].clear()
    else:
        worker["idle"].set()
    wait = True
    try:
        while (progress := worker["progress"].get(wait, POLL_S)) is not None:
            context.publish(progress)
            wait = False
        return True
    except queue.Empty:
        return False


@atexit.register
def _stop() -> None:
    """Ask a running job to stop, let the worker process end with the app, and start none
    after: a job still pending (on a daemon thread) would otherwise spawn one once
    multiprocessing's exit clean-up has run, and its semaphores would leak (the resource
    tracker's "leaked semaphore objects" warning at exit)."""
    with _lock:
        _worker["closed"] = True
    if "pool" in _worker:
        _worker["cancel"].set()
        _worker["pool"].shutdown(wait=True, cancel_futures=True)
