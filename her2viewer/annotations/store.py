"""The crash-safe annotation store of one slide: a GeoJSON snapshot and a journal of changes.

Every change of the document is appended at once to a journal (one JSON line,
flushed and fsynced before the edit returns), and the whole document is
rewritten atomically as a QuPath GeoJSON FeatureCollection at most ``delay_s``
(never more than a second) after the first unsaved change, by a background
thread; the journal is then emptied. After a kill, :meth:`AnnotationStore.open`
reads the snapshot and replays the journal, so at most the edit being written
is lost. Each journal line carries a sequence number and the snapshot records
the last one it includes, so a kill between the two steps replays nothing twice.

The snapshot holds this application's class list in a top-level ``her2viewer``
member (``{"classes": [{"name", "color"}], "version": 1, "seq": n}``) that
QuPath ignores.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path

from her2viewer.annotations.model import (
    DEFAULT_CLASSES,
    AnnotationDocument,
    AnnotationError,
    DocumentChange,
    PathClass,
    annotation_from_feature,
)
from her2viewer.errors import OutputError
from her2viewer.geometry.geojson import GeoJSONError, features_to_geojson, parse_features
from her2viewer.outputs import describe_os_error, output_error, write_text_atomic
from her2viewer.paths import data_dir

try:  # advisory file locks (POSIX); elsewhere two writers are not prevented
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

#: The longest a change may stay out of the snapshot, in seconds.
MAX_DELAY_S = 1.0

FORMAT_VERSION = 1

_META = "her2viewer"

#: What a damaged snapshot or journal line raises while it is parsed.
_DAMAGED = (ValueError, TypeError, KeyError, AttributeError, GeoJSONError, AnnotationError)


class AnnotationStoreError(AnnotationError):
    """An annotation store cannot be read, or another program has it open."""


def store_path(fingerprint: str) -> Path:
    """Return the store file of the slide with ``fingerprint`` (its folder is created).

    Parameters
    ----------
    fingerprint : str
        The slide's content fingerprint (``slide.fingerprint.file_fingerprint``).

    Returns
    -------
    Path
        ``paths.data_dir()/annotations/<fingerprint>.geojson``.
    """
    if not re.fullmatch(r"[0-9A-Za-z_-]+", fingerprint):
        raise AnnotationError(
            f"{fingerprint!r} is not a slide fingerprint (letters, digits, - and _ only)."
        )
    folder = data_dir() / "annotations"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise output_error(folder, exc, what="create") from exc
    return folder / f"{fingerprint}.geojson"


def journal_path(path: Path) -> Path:
    """Return the journal file beside the store file ``path``."""
    return path.with_name(path.name + ".journal")


def _lock(path: Path) -> int | None:
    """Hold an exclusive lock on ``<name>.lock`` beside the store file and return its descriptor.

    Raises
    ------
    AnnotationStoreError
        When another program (a window or a command) has the store open.
    """
    if fcntl is None:
        return None
    lock = path.with_name(path.name + ".lock")
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        raise output_error(lock, exc, what="create") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        raise AnnotationStoreError(
            f"the annotations in {path} are open in another her2viewer window or command; "
            "close it first."
        ) from exc
    return fd


def _aside_path(path: Path) -> Path:
    """Return where a damaged file is kept: ``<name>.corrupt-<time>`` beside it."""
    return path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")


def _read_bytes(path: Path) -> bytes | None:
    """Return the content of ``path``, None when it does not exist."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise AnnotationStoreError(
            f"cannot read the annotation store {path}: {describe_os_error(exc)}."
        ) from exc


def _classes_to_json(classes: list[PathClass]) -> list[dict]:
    """Return the class list as JSON objects."""
    return [{"name": c.name, "color": [int(v) for v in c.color]} for c in classes]


def _classes_from_json(items: list) -> list[PathClass]:
    """Return the class list of its JSON objects."""
    return [PathClass(str(c["name"]), tuple(int(v) for v in c["color"][:3])) for c in items]


def _load_snapshot(
    path: Path, mpp: float | None, notices: list[str]
) -> tuple[AnnotationDocument, int]:
    """Return the document of the snapshot file and the last journal number it includes.

    A damaged snapshot is renamed aside (never overwritten) and the document
    starts empty; ``notices`` gets one sentence saying so.
    """
    raw = _read_bytes(path)
    if raw is None:
        return AnnotationDocument(mpp=mpp), 0
    try:
        data = json.loads(raw.decode("utf-8"))
        features = parse_features(data, str(path))
        meta = data.get(_META, {}) if isinstance(data, dict) else {}
        classes = _classes_from_json(meta["classes"]) if "classes" in meta else DEFAULT_CLASSES
        document = AnnotationDocument.from_features(features, mpp, classes)
        return document, int(meta.get("seq", 0))
    except _DAMAGED:
        aside = _aside_path(path)
        os.replace(path, aside)
        notices.append(
            f"the annotation store {path} was damaged and is kept as {aside.name}; "
            "the annotations start from its journal of recent changes."
        )
        return AnnotationDocument(mpp=mpp), 0


def _apply(document: AnnotationDocument, entry: dict) -> None:
    """Apply one journal entry to ``document`` (changes to absent annotations are skipped)."""
    op = entry["op"]
    if op == "classes":
        document._set_classes(_classes_from_json(entry["classes"]))
        return
    if op == "removed":
        present = [i for i in entry["ids"] if i in document]
        if present:
            document._remove(present)
        return
    anns = [annotation_from_feature(f) for f in parse_features(entry["features"], "journal")]
    if op == "added":
        new = [(i, a) for i, a in zip(entry["index"], anns, strict=True) if a.id not in document]
        if new:
            document._insert([a for _, a in new], [i for i, _ in new])
    elif op == "changed":
        present = [a for a in anns if a.id in document]
        if present:
            document._put(*present)
    else:
        raise ValueError(f"unknown journal operation {op!r}")


def _replay(document: AnnotationDocument, journal: Path, after: int, notices: list[str]) -> int:
    """Apply the journal entries numbered above ``after``; return the last number seen.

    The last line may be torn by a kill and is ignored. A damaged line before it
    stops the replay; the journal is then kept aside and ``notices`` says so.
    """
    raw = _read_bytes(journal)
    if not raw:
        return after
    lines = raw.split(b"\n")
    last = after
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line.decode("utf-8"))
            if entry["seq"] > after:
                _apply(document, entry)
            last = max(last, int(entry["seq"]))
        except _DAMAGED:
            if any(rest.strip() for rest in lines[number:]):
                aside = _aside_path(journal)
                os.replace(journal, aside)
                notices.append(
                    f"line {number} of the annotation journal {journal} is damaged; the changes "
                    f"before it were restored and the journal is kept as {aside.name}."
                )
            break
    return last


#: The stores this process has open, by resolved path (see :meth:`AnnotationStore.open`).
_OPEN: dict[Path, AnnotationStore] = {}
_OPEN_LOCK = threading.Lock()


class AnnotationStore:
    """Keep a document saved: a journal line per change, a snapshot within ``delay_s``.

    The store takes ``document`` as the truth: it is written to ``path`` at once
    (unless nothing is stored there yet and the document is empty). Use
    :meth:`open` to continue a stored document.

    Parameters
    ----------
    path : Path
        The store file (see :func:`store_path`); its journal lies beside it.
    document : AnnotationDocument
        The document to keep saved; the store subscribes to its changes.
    delay_s : float
        How long after the first unsaved change the snapshot is written (0 to 1 s).

    Attributes
    ----------
    error : OutputError or None
        The last saving failure (a full disk), None once a save succeeds again.
    on_error : callable or None
        Called with each saving failure; from the background thread for snapshots,
        so a GUI must hand it to its own thread.
    notices : list of str
        Sentences for the user about damaged files found by :meth:`open`.
    """

    def __init__(
        self,
        path: Path,
        document: AnnotationDocument,
        delay_s: float = 0.5,
        *,
        _lock_fd: int | None = None,
    ) -> None:
        if not 0.0 <= delay_s <= MAX_DELAY_S:
            raise ValueError(f"delay_s must be between 0 and {MAX_DELAY_S} s, not {delay_s}")
        self.path = Path(path)
        self._lock_fd = _lock_fd if _lock_fd is not None else _lock(self.path)
        self._users = 1
        self.journal = journal_path(self.path)
        self.document = document
        self.delay_s = delay_s
        self.error: OutputError | None = None
        self.on_error: Callable[[OutputError], None] | None = None
        self.notices: list[str] = []
        self._cond = threading.Condition()
        self._snapshot_lock = threading.Lock()
        self._seq = 0
        self._saved_seq = 0
        self._pending = False
        self._first_unsaved = 0.0
        self._journal_ok = True
        self._closing = False
        self._fd: int | None = None
        if (self.path.exists() or self.journal.exists() or len(document)) and not (
            self._try_snapshot()
        ):
            self._journal_ok = False  # the old journal stays until a snapshot replaces it
        document.subscribe(self._on_change)
        self._thread = threading.Thread(target=self._run, name="annotation-store", daemon=True)
        self._thread.start()

    @classmethod
    def open(cls, path: Path, mpp: float | None = None, delay_s: float = 0.5) -> AnnotationStore:
        """Load the stored document of ``path`` (snapshot, then journal) and keep it saved.

        A damaged snapshot or journal is kept aside, never overwritten, and
        :attr:`notices` says so in one sentence each. Opening a store this
        process already has open returns that store (two panes showing one slide
        share its document); each :meth:`open` needs its :meth:`close`.

        Raises
        ------
        AnnotationStoreError
            When a store file exists but cannot be read (permissions), or another
            program has the store open.
        """
        path = Path(path)
        with _OPEN_LOCK:
            shared = _OPEN.get(path.resolve())
            if shared is not None:
                shared._users += 1
                return shared
            lock_fd = _lock(path)
            try:
                notices: list[str] = []
                document, seq = _load_snapshot(path, mpp, notices)
                _replay(document, journal_path(path), seq, notices)
                store = cls(path, document, delay_s, _lock_fd=lock_fd)
            except BaseException:
                if lock_fd is not None:
                    os.close(lock_fd)
                raise
            store.notices = notices
            _OPEN[path.resolve()] = store
            return store

    # journal ------------------------------------------------------------------------------------

    def _entry(self, change: DocumentChange) -> dict:
        """Return the journal entry of ``change`` (read from the document as it now is)."""
        document = self.document
        if change.kind == "removed":
            return {"op": "removed", "ids": list(change.ids)}
        if change.kind == "classes":
            return {"op": "classes", "classes": _classes_to_json(document.classes)}
        anns = [document.get(i) for i in change.ids]
        features = [document.to_feature(a) for a in anns]
        entry = {"op": change.kind, "features": features_to_geojson(features, as_list=True)}
        if change.kind == "added":
            order = {a.id: i for i, a in enumerate(document)}
            entry["index"] = [order[i] for i in change.ids]
        return entry

    def _append(self, entry: dict) -> None:
        """Append one line to the journal and fsync it; a failure leaves the journal as it was."""
        data = (json.dumps(entry, separators=(",", ":")) + "\n").encode("utf-8")
        size = None
        try:
            if self._fd is None:
                self._fd = os.open(self.journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
            size = os.fstat(self._fd).st_size
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view) :]
            os.fsync(self._fd)
        except OSError as exc:
            if size is not None:
                with contextlib.suppress(OSError):
                    os.ftruncate(self._fd, size)
            raise output_error(self.journal, exc) from exc

    def _truncate_journal(self) -> None:
        """Empty the journal once a snapshot holds everything in it."""
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            os.fsync(self._fd)
        elif self.journal.exists():
            os.truncate(self.journal, 0)

    def _on_change(self, change: DocumentChange) -> None:
        """Journal ``change`` now and arm the snapshot timer (called under the document's lock)."""
        if change.kind == "mpp":  # the slide's pixel size: not saved with the annotations
            return
        with self._cond:
            self._seq += 1
            if self._journal_ok:
                try:
                    self._append({"seq": self._seq, **self._entry(change)})
                except OutputError as exc:
                    self._journal_ok = False  # no line after a missing one: wait for a snapshot
                    self._report(exc)
            if not self._pending:
                self._pending = True
                self._first_unsaved = time.monotonic()
                self._cond.notify_all()

    # snapshot -----------------------------------------------------------------------------------

    def _report(self, exc: OutputError) -> None:
        """Record a saving failure and tell :attr:`on_error`."""
        self.error = exc
        if self.on_error is not None:
            self.on_error(exc)

    def _snapshot(self) -> None:
        """Write the whole document atomically, then empty the journal if it holds nothing newer."""
        with self._snapshot_lock:
            with self.document.lock, self._cond:
                anns = list(self.document)
                classes = list(self.document.classes)
                seq = self._seq
                self._pending = False
            frozen = AnnotationDocument(anns, classes, self.document.mpp)
            data = features_to_geojson(frozen.to_features())
            data[_META] = {
                "classes": _classes_to_json(classes),
                "version": FORMAT_VERSION,
                "seq": seq,
            }
            write_text_atomic(self.path, json.dumps(data, separators=(",", ":")))
            with self._cond:
                self._saved_seq = seq
                self.error = None
                if self._seq == seq or not self._journal_ok:
                    try:
                        self._truncate_journal()
                    except OSError as exc:
                        raise output_error(self.journal, exc) from exc
                    self._journal_ok = self._seq == seq

    def _try_snapshot(self) -> bool:
        """Write a snapshot and return True; a failure is recorded and False returned."""
        try:
            self._snapshot()
        except OutputError as exc:
            self._report(exc)
            return False
        return True

    def _run(self) -> None:
        """Background thread: write a snapshot ``delay_s`` after the first unsaved change."""
        while True:
            with self._cond:
                while not (self._pending or self._closing):
                    self._cond.wait()
                if self._closing:
                    return
                deadline = self._first_unsaved + self.delay_s
                while not self._closing and (remaining := deadline - time.monotonic()) > 0:
                    self._cond.wait(remaining)
                if self._closing:
                    return
            self._try_snapshot()

    def flush(self) -> None:
        """Write the snapshot now if anything is unsaved.

        Raises
        ------
        OutputError
            One sentence when it cannot be written (a full disk); the document keeps
            its state and the next change tries again.
        """
        with self._cond:
            unsaved = self._seq != self._saved_seq or not self._journal_ok or self.error
        if unsaved:
            try:
                self._snapshot()
            except OutputError as exc:
                self._report(exc)
                raise

    def close(self) -> None:
        """Stop watching the document, write what is unsaved and stop the background thread.

        A store opened more than once stays open (saving) until its last close.
        """
        with _OPEN_LOCK:
            self._users -= 1
            still_used = self._users > 0
            if not still_used and _OPEN.get(self.path.resolve()) is self:
                del _OPEN[self.path.resolve()]
        if still_used:
            self.flush()
            return
        if not self._closing:
            self.document.unsubscribe(self._on_change)
            with self._cond:
                self._closing = True
                self._cond.notify_all()
            self._thread.join()
        try:
            self.flush()
        finally:
            for fd in (self._fd, self._lock_fd):
                if fd is not None:
                    os.close(fd)
            self._fd = self._lock_fd = None
