"""Background jobs without Qt: a worker thread, progress reports and cancellation.

A job is a function ``fn(context)`` that calls ``context.report(done, total)``
and ``context.check()`` as it goes. The GUI observes a :class:`Job` through its
listeners (called on the worker thread; the Qt side re-emits them as signals);
the CLI runs the same function directly with :func:`run_inline`. Resuming is the
job's business: long jobs write their partial results to files and pick them up
when run again (see :func:`her2viewer.features.engine.extract_features`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from her2viewer.errors import Her2ViewerError


class Cancelled(Her2ViewerError):
    """Raised inside a job when its user asked to cancel it."""


class CancelToken:
    """A thread-safe flag that a job polls to stop early."""

    def __init__(self) -> None:
        self._event = threading.Event()

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
    """What a running job sees: its cancel token and a progress reporter."""

    token: CancelToken = field(default_factory=CancelToken)
    listeners: list[Callable[[Progress], None]] = field(default_factory=list)
    progress: Progress = field(default_factory=Progress)

    def report(self, done: int, total: int, message: str = "") -> None:
        """Record progress, tell the listeners and stop here if cancelled."""
        self.progress = Progress(done, total, message)
        for listener in list(self.listeners):
            listener(self.progress)
        self.token.check()

    def check(self) -> None:
        """Stop here if the job was cancelled."""
        self.token.check()


class Job:
    """Run ``fn(context)`` on a daemon thread.

    Attributes
    ----------
    state : str
        ``"pending"``, ``"running"``, ``"done"``, ``"failed"`` or ``"cancelled"``.
    result : Any
        The function's return value once done.
    error : BaseException or None
        What it raised when failed or cancelled.
    """

    def __init__(self, fn: Callable[[JobContext], Any], name: str = "job") -> None:
        self.name = name
        self.context = JobContext()
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
        """Start the worker thread and return self."""
        self.state = "running"
        self._thread.start()
        return self

    def cancel(self) -> None:
        """Ask the job to stop; it ends in state ``"cancelled"`` at its next check."""
        self.context.token.cancel()

    def _run(self) -> None:
        try:
            self.result = self._fn(self.context)
            self.state = "done"
        except Cancelled as exc:
            self.error, self.state = exc, "cancelled"
        except BaseException as exc:  # reported to the caller through wait()
            self.error, self.state = exc, "failed"
        finally:
            self._finished.set()

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
