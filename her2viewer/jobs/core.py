"""Background jobs without Qt: a worker thread, progress reports and cancellation.

A job is a function ``fn(context)`` that calls ``context.report(done, total)``
and ``context.check()`` as it goes. The GUI observes a :class:`Job` through its
listeners (called on the worker thread; the Qt side re-emits them as signals);
the CLI runs the same function directly with :func:`run_inline`. Resuming is the
job's business: long jobs write their partial results to files and pick them up
when run again (see :func:`her2viewer.features.engine.extract_features`).

Background jobs (the GUI's analyses) give way to the work a user waits for, such as
the viewer's tiles: they run one at a time, at a low thread priority, with few torch
threads, and pause at each progress report while :data:`FOREGROUND` work is pending.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from her2viewer.errors import Her2ViewerError

#: How much nicer (lower priority) background job threads are than the thread starting them
#: (tile workers use 5, so analyses give way to tiles as well as to the GUI).
BACKGROUND_NICENESS = 15
#: Background jobs running at once; the others wait in state ``"pending"``.
BACKGROUND_SLOTS = 1
#: Longest pause of a background job at one report while foreground work is pending, so a
#: user who pans without stopping still sees the analysis advance.
MAX_PAUSE_S = 1.0


def lower_thread_priority(niceness: int) -> bool:
    """Make the calling thread ``niceness`` steps nicer (Linux: nice is per thread).

    Threads it starts afterwards (reader pools, torch's workers) inherit the value.
    Elsewhere, or when refused, it is a no-op returning ``False``.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + niceness)
        return True
    except OSError:
        return False


def background_torch_threads() -> int:
    """Torch intra-op threads of a background job: half the cores, leaving the rest to the
    GUI thread and the tile workers."""
    return max(1, (os.cpu_count() or 2) // 2)


class _TorchThreads:
    """Limit torch's intra-op threads while background jobs run; restore them after the last."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users = 0
        self._saved: int | None = None

    @contextmanager
    def limited(self, count: int) -> Iterator[None]:
        """Use at most ``count`` torch threads inside the block (if torch is imported).

        torch is never imported here: jobs that use it have imported it before they run.
        """
        torch = sys.modules.get("torch")
        if torch is None:
            yield
            return
        with self._lock:
            if self._users == 0:
                self._saved = torch.get_num_threads()
            self._users += 1
            torch.set_num_threads(min(count, self._saved))
        try:
            yield
        finally:
            with self._lock:
                self._users -= 1
                if self._users == 0:
                    torch.set_num_threads(self._saved)


TORCH_THREADS = _TorchThreads()


class Foreground:
    """Work a user is waiting for (the viewer's tiles); background jobs pause while it is pending.

    Producers mark themselves busy or idle as their queues change; a background job's
    progress reports wait until none is busy.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._busy: set[int] = set()

    def mark(self, source: object, busy: bool) -> None:
        """Record whether ``source`` has foreground work queued or running."""
        with self._cond:
            if busy:
                self._busy.add(id(source))
            else:
                self._busy.discard(id(source))
                self._cond.notify_all()

    @property
    def busy(self) -> bool:
        """True while any source has foreground work pending."""
        with self._cond:
            return bool(self._busy)

    def wait_idle(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for no foreground work; True when there is none."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._busy, timeout)


FOREGROUND = Foreground()
_SLOTS = threading.BoundedSemaphore(BACKGROUND_SLOTS)


class Cancelled(Her2ViewerError):
    """Raised inside a job when its user asked to cancel it."""


class CancelToken:
    """A thread-safe flag that a job polls to stop early."""

    def __init__(self, event=None) -> None:
        self._event = event if event is not None else threading.Event()

    def cancel(self) -> None:
        """Ask the job to stop at its next check."""
        self._event.set()

    @property
    def cancelled(self) -> bool:
        """True once :meth:`cancel` was called."""
        return self._event.is_set()

    def check(self) -> None:
        """Raise :class:`Cancelled` when cancellation was asked for."""
        if self._event.is_set():
            raise Cancelled("Cancelled by the user.")


@dataclass
class Progress:
    """The latest progress report of a job."""

    done: int = 0
    total: int = 0
    message: str = ""

    @property
    def fraction(self) -> float:
        """Completed fraction in [0, 1] (0 while the total is unknown)."""
        return min(1.0, self.done / self.total) if self.total else 0.0


@dataclass
class JobContext:
    """What a running job sees: its cancel token and a progress reporter.

    ``foreground``, set for background jobs, is the work that each report and check
    gives way to (for at most :data:`MAX_PAUSE_S`).
    """

    token: CancelToken = field(default_factory=CancelToken)
    listeners: list[Callable[[Progress], None]] = field(default_factory=list)
    progress: Progress = field(default_factory=Progress)
    foreground: Foreground | None = None

    def report(self, done: int, total: int, message: str = "") -> None:
        """Record progress, tell the listeners and stop here if cancelled."""
        self.publish(Progress(done, total, message))
        self.check()

    def publish(self, progress: Progress) -> None:
        """Record ``progress`` and tell the listeners."""
        self.progress = progress
        for listener in list(self.listeners):
            listener(progress)

    def check(self) -> None:
        """Let pending foreground work go first, then stop here if the job was cancelled."""
        if self.foreground is not None:
            self.foreground.wait_idle(MAX_PAUSE_S)
        self.token.check()


class Job:
    """Run ``fn(context)`` on a daemon thread.

    A ``background`` job (an analysis in the GUI) waits for a free slot (at most
    :data:`BACKGROUND_SLOTS` run at once), runs :data:`BACKGROUND_NICENESS` steps nicer
    with at most :func:`background_torch_threads` torch threads, and gives way to
    :data:`FOREGROUND` work at each report. A ``process`` job is a background job run in
    the worker process (:mod:`her2viewer.jobs.worker`; ``fn`` must pickle), so its Python
    never holds the GIL the GUI thread needs: the better choice for long analyses.

    Attributes
    ----------
    state : str
        ``"pending"``, ``"running"``, ``"done"``, ``"failed"`` or ``"cancelled"``.
    result : Any
        The function's return value once done.
    error : BaseException or None
        What it raised when failed or cancelled.
    """

    def __init__(
        self,
        fn: Callable[[JobContext], Any],
        name: str = "job",
        background: bool = False,
        process: bool = False,
    ) -> None:
        self.name = name
        self.background = background or process
        self.process = process
        self.context = JobContext(foreground=FOREGROUND if background else None)
        self.state = "pending"
        self.result: Any = None
        self.error: BaseException | None = None
        self._fn = fn
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._finished = threading.Event()

    @property
    def progress(self) -> Progress:
        """The latest progress report."""
        return self.context.progress

    def on_progress(self, listener: Callable[[Progress], None]) -> None:
        """Call ``listener(progress)`` on every report (from the worker thread)."""
        self.context.listeners.append(listener)

    def start(self) -> Job:
        """Start the worker thread and return self (a background job may stay pending)."""
        if not self.background:
            self.state = "running"
        self._thread.start()
        return self

    def cancel(self) -> None:
        """Ask the job to stop; it ends in state ``"cancelled"`` at its next check."""
        self.context.token.cancel()

    def _run(self) -> None:
        try:
            if self.background:
                self.result = self._run_background()
            else:
                self.result = self._fn(self.context)
            self.state = "done"
        except Cancelled as exc:
            self.error, self.state = exc, "cancelled"
        except BaseException as exc:  # reported to the caller through wait()
            self.error, self.state = exc, "failed"
        finally:
            self._finished.set()

    def _run_background(self) -> Any:
        """Run in a free slot, in the worker process or at low priority with few torch threads."""
        lower_thread_priority(BACKGROUND_NICENESS)
        with _SLOTS:
            self.context.token.check()  # cancelled while pending
            self.state = "running"
            if self.process:
                from her2viewer.jobs.worker import run_in_worker

                return run_in_worker(self._fn, self.context)
            with TORCH_THREADS.limited(background_torch_threads()):
                return self._fn(self.context)

    def wait(self, timeout: float | None = None) -> Any:
        """Wait for the job, return its result, or re-raise its error.

        Raises
        ------
        TimeoutError
            When it is still running after ``timeout`` seconds.
        """
        if not self._finished.wait(timeout):
            raise TimeoutError(f"Job {self.name} still running after {timeout} s.")
        if self.error is not None:
            raise self.error
        return self.result


def run_inline(
    fn: Callable[[JobContext], Any], listener: Callable[[Progress], None] | None = None
) -> Any:
    """Run a job function on the calling thread (the CLI's way)."""
    context = JobContext(listeners=[listener] if listener else [])
    return fn(context)
