"""Progress of the long verbs on stderr: a rich bar in a terminal, plain lines otherwise.

A verb wraps its work in :func:`progress_reporter` and hands the reporter (or its
:meth:`Reporter.context`, a :class:`~her2viewer.jobs.JobContext`) to the library, which
calls ``report(done, total, message)`` per unit of work, as it does for the GUI's jobs.

- stderr is a terminal: one rich bar (description, bar, done/total, rate, elapsed, ETA,
  the current message), left drawn in its last state and closed on a new line when the
  verb ends or fails, so that an error is the line after it;
- stderr is not a terminal (a pipe, a log file): plain lines such as
  ``extract: 40/100 patches (12.3/s, ETA 5 s)``, printed for the first report of a
  stage, every tenth of the work (:data:`PLAIN_STEPS`) or :data:`PLAIN_INTERVAL_S`, and the last;
- ``--quiet``: nothing.

A report whose total changes or whose count goes back starts a new stage (the next
epoch loop, fold or slide): the rate and ETA start again there.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
from rich.progress import Progress as RichProgress

from her2viewer.jobs import JobContext, Progress

#: Plain lines per stage at most, besides the first and those due to time (one per tenth).
PLAIN_STEPS = 10
#: Most seconds between two plain lines.
PLAIN_INTERVAL_S = 5.0


class Reporter:
    """Where a verb reports its progress; this base class, used under ``--quiet``, shows nothing.

    Parameters
    ----------
    description : str
        What runs, e.g. ``"extract"``; the first word of every line.
    unit : str
        What is counted, e.g. ``"patches"``.
    """

    def __init__(self, description: str, unit: str) -> None:
        self.description = description
        self.unit = unit
        self._last: tuple[int, int] | None = None  # (done, total) of the last report
        self._origin = (0.0, 0)  # (time, done) the rate of this stage is measured from

    def __call__(self, done: int, total: int, message: str = "") -> None:
        """Record that ``done`` of ``total`` units are done (``total`` 0: unknown)."""
        now = time.monotonic()
        new_stage = self._last is None or total != self._last[1] or done < self._last[0]
        if new_stage:
            self._origin = (now, done)
        self._last = (done, total)
        self._show(done, total, message, new_stage)

    def listener(self, progress: Progress) -> None:
        """Take a :class:`~her2viewer.jobs.Progress` (a ``JobContext`` listener)."""
        self(progress.done, progress.total, progress.message)

    def context(self) -> JobContext:
        """Return a job context whose reports come here (for library functions taking one)."""
        return JobContext(listeners=[self.listener])

    def stage(self, description: str) -> None:
        """Start a new stage named ``description`` at the next report."""
        self.description = description
        self._last = None

    def rate(self, done: int) -> float | None:
        """Units per second since the stage's first report, or None before a second one."""
        start, first = self._origin
        elapsed = time.monotonic() - start
        return (done - first) / elapsed if done > first and elapsed > 0 else None

    def _show(self, done: int, total: int, message: str, new_stage: bool) -> None:
        """Show a report (nothing here)."""

    def close(self) -> None:
        """End the display (nothing here)."""


class PlainReporter(Reporter):
    """Plain, rate-limited lines on stderr for logs and pipes."""

    def __init__(self, description: str, unit: str) -> None:
        super().__init__(description, unit)
        self._printed: tuple[float, int] | None = None  # (time, done) of the last line

    def _show(self, done: int, total: int, message: str, new_stage: bool) -> None:
        now = time.monotonic()
        if new_stage or self._printed is None:
            due = True
        else:
            last_time, last_done = self._printed
            due = done != last_done and (
                (total and done >= total)
                or (total and PLAIN_STEPS * (done - last_done) >= total)
                or now - last_time >= PLAIN_INTERVAL_S
            )
        if due:
            print(self.line(done, total, message), file=sys.stderr, flush=True)
            self._printed = (now, done)

    def line(self, done: int, total: int, message: str = "") -> str:
        """One progress line, e.g. ``extract: 40/100 patches (12.3/s, ETA 5 s)``."""
        count = f"{done}/{total}" if total else f"{done}"
        text = f"{self.description}: {count} {self.unit}"
        rate = self.rate(done)
        if rate:
            eta = f", ETA {format_seconds((total - done) / rate)}" if total > done else ""
            text += f" ({rate:.1f}/s{eta})"
        return f"{text} - {message}" if message else text


class RichReporter(Reporter):
    """One rich progress bar on a terminal's stderr."""

    def __init__(self, description: str, unit: str) -> None:
        super().__init__(description, unit)
        self.bar = RichProgress(
            TextColumn("{task.description}", markup=False),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[unit]}", markup=False),
            TextColumn("{task.fields[rate]}", style="progress.data.speed"),
            TimeElapsedColumn(),
            TextColumn("ETA {task.fields[eta]}", style="progress.remaining"),
            TextColumn("{task.fields[message]}", markup=False),
            console=Console(stderr=True, force_terminal=True),
            # stdout through the bar's console only when both are the terminal: a verb's
            # stdout redirected to a file must stay there
            redirect_stdout=sys.stdout.isatty(),
            redirect_stderr=True,
        )
        self.task = None  # the bar appears at the first report: an error before it stays alone

    def _show(self, done: int, total: int, message: str, new_stage: bool) -> None:
        rate = self.rate(done)
        fields = dict(
            total=total or None,
            completed=done,
            message=message,
            rate="?/s" if rate is None else f"{rate:.1f}/s",
            eta=format_seconds((total - done) / rate) if rate and total else "?",
        )
        if not new_stage:
            self.bar.update(self.task, **fields)
            return
        if self.task is not None:  # a new task: the rate, elapsed time and ETA start again
            self.bar.remove_task(self.task)
        self.task = self.bar.add_task(self.description, unit=self.unit, **fields)
        if not self.bar.live.is_started:
            self.bar.start()

    def close(self) -> None:
        """Draw the last state and move to a new line (also when the verb failed)."""
        if self.bar.live.is_started:
            self.bar.stop()


def format_seconds(seconds: float) -> str:
    """Return a duration for people: ``5 s``, ``2 min 5 s``, ``1 h 3 min``."""
    if not math.isfinite(seconds):
        return "?"
    whole = max(0, round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min {secs} s" if minutes else f"{secs} s"


def stderr_is_terminal() -> bool:
    """True when stderr is a terminal (the only case that gets a rich bar)."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed stream
        return False


@contextmanager
def progress_reporter(args, description: str, unit: str = "items") -> Iterator[Reporter]:
    """Show a verb's progress on stderr while the block runs.

    Parameters
    ----------
    args : argparse.Namespace
        The verb's arguments; ``args.progress`` False (``--quiet``) shows nothing.
    description : str
        The verb, e.g. ``"extract"``.
    unit : str
        What is counted, e.g. ``"patches"``.

    Yields
    ------
    Reporter
        Call it with ``(done, total, message)``, give its ``listener`` to
        :func:`~her2viewer.jobs.run_inline` or its ``context()`` to a library function.
    """
    if not getattr(args, "progress", True):
        reporter = Reporter(description, unit)
    elif stderr_is_terminal():
        reporter = RichReporter(description, unit)
    else:
        reporter = PlainReporter(description, unit)
    try:
        yield reporter
    finally:
        reporter.close()
