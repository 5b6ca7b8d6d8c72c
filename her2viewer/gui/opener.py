"""Opening slides off the GUI thread (rule 3): a plain image is decoded and its pyramid
built, and a slide on a slow disk is read, on a worker while the window keeps drawing."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PySide6.QtCore import QObject, Signal

from her2viewer.errors import Her2ViewerError
from her2viewer.slide import open_slide


class SlideOpener(QObject):
    """Opens a slide (with an optional paired one and overlay) on a worker thread.

    Only the latest request counts: a result that is stale when it arrives is
    closed and dropped, by the worker or by the receiver (compare ``token``).

    Parameters
    ----------
    parent : QObject, optional
        Owner of the opener.
    failure : str, optional
        Sentence sent instead of the error's own (a blinded study names no file).

    Signals
    -------
    opened(token, slide, paired, overlay)
        The slides are open (``paired`` and ``overlay`` may be ``None``).
    failed(token, message)
        A slide could not be opened; ``message`` is one sentence.
    """

    opened = Signal(int, object, object, object)
    failed = Signal(int, str)

    def __init__(self, parent=None, failure: str | None = None):
        super().__init__(parent)
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="slide-open")
        self.failure = failure
        self.token = 0

    def request(
        self, path: Path, paired: Path | None = None, overlay: Callable[[], object] | None = None
    ) -> int:
        """Open the slides (and call ``overlay()``) in the background; return the token."""
        self.token += 1
        self._pool.submit(self._open, self.token, path, paired, overlay)
        return self.token

    def _open(self, token: int, path: Path, paired: Path | None, overlay) -> None:
        if token != self.token:
            return
        slides = []
        try:
            slides.append(open_slide(path))
            slides.append(open_slide(paired) if paired else None)
            extra = overlay() if overlay else None
        except Her2ViewerError as exc:
            _close(slides)
            self.failed.emit(token, self.failure or str(exc))
            return
        if token != self.token:
            _close(slides)
            return
        self.opened.emit(token, *slides, extra)

    def shutdown(self) -> None:
        """Stop the worker (pending opens are dropped)."""
        self.token += 1
        self._pool.shutdown(wait=True, cancel_futures=True)


def _close(slides) -> None:
    for slide in slides:
        if slide is not None:
            slide.close()
