"""One SQLite file per study: definition, readers, append-only answers.

The file is opened in WAL mode with ``synchronous=FULL``; every answer is
inserted in its own ``BEGIN IMMEDIATE ... COMMIT`` transaction, so an answer
whose :meth:`StudyStore.record_answer` call returned survives a crash of the
process (or of the machine). Answers are never updated or deleted (triggers
forbid it): changing an answer appends a new revision, and the current answer
is the highest revision.

Version 2 of the layout adds readers' PIN records, the reader's mark, HER2 score
and membrane percentage of an answer, the cases' registrations and the append-only
access log; a version-1 file is migrated the first time it is opened for writing
(opened read-only, it is read as it is).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import secrets
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from her2viewer.errors import StudyError
from her2viewer.outputs import atomic_output
from her2viewer.study import access
from her2viewer.study.access import AccessError
from her2viewer.study.definition import (
    CaseRow,
    Question,
    ReadingRules,
    check_seconds,
    parse_float,
    read_csv,
)
from her2viewer.study.marks import ReaderMark, check_mark
from her2viewer.tables import write_csv

#: Version of the table layout below; version 1 is migrated, any other is refused.
SCHEMA_VERSION = 2

#: Arms a study may have, and whether the model's output is shown in them.
ARMS = {"unassisted": False, "assisted": True}

SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE cases (
    case_id TEXT PRIMARY KEY, he_path TEXT NOT NULL, ihc_path TEXT NOT NULL, ordinal INTEGER
);
CREATE TABLE truth (case_id TEXT PRIMARY KEY REFERENCES cases, truth TEXT NOT NULL);
CREATE TABLE model_predictions (
    case_id TEXT PRIMARY KEY REFERENCES cases, prediction TEXT NOT NULL, probability REAL
);
CREATE TABLE model_overlays (
    case_id TEXT PRIMARY KEY REFERENCES cases, name TEXT NOT NULL, downsample REAL NOT NULL,
    height INTEGER NOT NULL, width INTEGER NOT NULL, scores BLOB NOT NULL
);
CREATE TABLE arms (arm TEXT PRIMARY KEY, ordinal INTEGER, opens_at TEXT, shows_model INTEGER);
CREATE TABLE readers (reader TEXT PRIMARY KEY, seed INTEGER NOT NULL, created_at TEXT NOT NULL);
CREATE TABLE orders (
    reader TEXT NOT NULL REFERENCES readers, arm TEXT NOT NULL REFERENCES arms,
    position INTEGER NOT NULL, case_id TEXT NOT NULL REFERENCES cases,
    PRIMARY KEY (reader, arm, position)
);
CREATE TABLE answers (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    reader TEXT NOT NULL REFERENCES readers, arm TEXT NOT NULL REFERENCES arms,
    case_id TEXT NOT NULL REFERENCES cases, revision INTEGER NOT NULL,
    answer TEXT NOT NULL, confidence REAL, seconds REAL, comment TEXT NOT NULL DEFAULT '',
    source TEXT NOT NULL, answered_at TEXT NOT NULL,
    UNIQUE (reader, arm, case_id, revision)
);
CREATE TRIGGER answers_no_update BEFORE UPDATE ON answers
    BEGIN SELECT RAISE(ABORT, 'answers are append-only'); END;
CREATE TRIGGER answers_no_delete BEFORE DELETE ON answers
    BEGIN SELECT RAISE(ABORT, 'answers are append-only'); END;
CREATE VIEW current_answers AS
    SELECT a.* FROM answers a
    WHERE a.revision = (SELECT MAX(revision) FROM answers b
                        WHERE b.reader = a.reader AND b.arm = a.arm AND b.case_id = a.case_id);
"""

#: What version 2 adds to version 1 (run on every new file too, so the columns line up).
MIGRATION_2 = """
ALTER TABLE readers ADD COLUMN secret TEXT;
ALTER TABLE answers ADD COLUMN her2_score TEXT;
ALTER TABLE answers ADD COLUMN membrane_percent REAL;
ALTER TABLE answers ADD COLUMN mark TEXT;
CREATE TABLE registrations (
    case_id TEXT PRIMARY KEY REFERENCES cases, matrix TEXT NOT NULL, method TEXT NOT NULL,
    error_px REAL
);
CREATE TABLE access_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, who TEXT NOT NULL,
    role TEXT NOT NULL, action TEXT NOT NULL, outcome TEXT NOT NULL
);
CREATE TRIGGER access_log_no_update BEFORE UPDATE ON access_log
    BEGIN SELECT RAISE(ABORT, 'the access log is append-only'); END;
CREATE TRIGGER access_log_no_delete BEFORE DELETE ON access_log
    BEGIN SELECT RAISE(ABORT, 'the access log is append-only'); END;
UPDATE meta SET value = '2' WHERE key = 'schema_version';
"""


def utc_now() -> str:
    """Return the current UTC time as ISO 8601 text."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def reader_seed(study_seed: int, reader: str) -> int:
    """Derive a reader's randomisation seed from the study seed and the reader's name."""
    digest = hashlib.sha256(f"{study_seed}:{reader}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


@dataclass(frozen=True)
class Arm:
    """An arm of a study: name, opening date (ISO, or None) and whether it shows the model."""

    name: str
    opens_at: str | None
    shows_model: bool


@dataclass(frozen=True)
class ModelOverlay:
    """A model's score map on a case's H&E slide, shown as a layer in an assisted arm.

    Attributes
    ----------
    name : str
        Layer name, e.g. ``"model attention"``.
    downsample : float
        Level-0 pixels per score pixel.
    scores : numpy.ndarray
        ``(H, W)`` float32 scores in [0, 1], NaN where there is none.
    """

    name: str
    downsample: float
    scores: object

    def row(self, case_id: str) -> tuple:
        """Return the ``model_overlays`` table row for a case."""
        scores = self.scores.astype("<f4", copy=False)
        return (case_id, self.name, float(self.downsample), *scores.shape, scores.tobytes())


@dataclass(frozen=True)
class CaseRegistration:
    """A case's IHC -> H&E registration (level-0 px), computed when the study is created."""

    matrix: np.ndarray
    method: str
    error_px: float | None

    def row(self, case_id: str) -> tuple:
        """Return the ``registrations`` table row for a case."""
        matrix = json.dumps(np.asarray(self.matrix, float).reshape(3, 3).tolist())
        error = None if self.error_px is None or not np.isfinite(self.error_px) else self.error_px
        return (case_id, matrix, self.method, error)


@dataclass(frozen=True)
class Answer:
    """One stored answer (one revision)."""

    id: int
    reader: str
    arm: str
    case_id: str
    revision: int
    answer: str
    confidence: float | None
    seconds: float | None
    comment: str
    source: str
    answered_at: str
    her2_score: str | None = None
    membrane_percent: float | None = None
    mark: str | None = None

    def reader_mark(self) -> ReaderMark | None:
        """The reader's mark, parsed (``None`` when the answer has none)."""
        if self.mark is None:
            return None
        return ReaderMark.from_text(self.mark, f"the mark of answer {self.id}")


@dataclass(frozen=True)
class LogEntry:
    """One line of a study's access log: who opened it, when, for what, and the outcome."""

    id: int
    at: str
    who: str
    role: str
    action: str
    outcome: str


#: Errors SQLite raises on a damaged file: its own, and text that is no longer UTF-8.
DATABASE_ERRORS = (sqlite3.DatabaseError, UnicodeDecodeError)


#: SQLite's (stable) messages for failures that are not damage -> the sentence the user reads.
_SQLITE_CAUSES = {
    "disk is full": "cannot write {path}: the disk is full",
    "readonly database": "cannot write {path}: the file or its folder is read-only",
    "unable to open": "cannot open {path}: the file or its folder cannot be written or read",
    "disk i/o error": "cannot use {path}: a disk input/output error occurred (is the disk full?)",
    "locked": "cannot use {path}: another program is using it",
}


def database_error(path: Path, exc: Exception) -> StudyError:
    """Return the one-sentence :class:`StudyError` for a SQLite failure on a study file.

    A full disk, a read-only or immutable file and a locked file are named as
    such (SQLite has then rolled back, so nothing was changed); a file that is
    not SQLite is "not a study file"; any other failure means it is damaged.
    """
    text = str(exc).lower()
    for fragment, sentence in _SQLITE_CAUSES.items():
        if fragment in text:
            return StudyError(sentence.format(path=path) + "; nothing was changed.")
    if "not a database" in text:
        return StudyError(f"{path.name} is not a study file.")
    if isinstance(exc, UnicodeDecodeError) or "decode" in text:
        text = "a text value is not valid UTF-8"
    return StudyError(f"{path.name} is damaged ({text}); restore it from a backup.")


def connect(path: Path, readonly: bool = False) -> sqlite3.Connection:
    """Open a study file with the pragmas every connection uses (autocommit, WAL, FULL sync).

    SQLite's ``PRAGMA quick_check`` runs first, so a damaged file is refused
    in one sentence before anything is read from it or written to it.
    """
    uri = f"{Path(path).resolve().as_uri()}?mode={'ro' if readonly else 'rw'}"
    try:
        conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout = 10000")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
    except DATABASE_ERRORS as exc:
        raise database_error(Path(path), exc) from exc
    try:
        verdict = conn.execute("PRAGMA quick_check").fetchone()[0]
    except DATABASE_ERRORS as exc:
        conn.close()
        raise database_error(Path(path), exc) from exc
    if verdict != "ok":
        conn.close()
        problem = verdict.replace("*** in database main ***", "").strip().splitlines()[0]
        raise StudyError(
            f"{Path(path).name} is damaged (SQLite finds: {problem[:120]}); "
            "restore it from a backup."
        )
    return conn


def is_study_file(path: Path) -> bool:
    """Whether ``path`` is a SQLite file (a study or a reader package), by its header."""
    try:
        with open(path, "rb") as handle:
            return handle.read(16) == b"SQLite format 3\x00"
    except OSError:
        return False


def _write_study_file(
    path: Path, fill: Callable[[sqlite3.Connection], None], source: str | None = None
) -> None:
    """Write a new study file atomically: the schema, then ``fill(conn)`` in one transaction.

    ``source``, a SQLite URI, is attached as the schema ``source`` for ``fill`` to copy from.

    The file is built under a temporary name in rollback-journal mode, switched
    to WAL once complete, flushed and renamed into place; a full disk or an
    unwritable folder raises one sentence and leaves nothing behind.
    """
    if path.exists():
        raise StudyError(f"{path} already exists; choose another name or remove it.")
    if not path.parent.is_dir():
        raise StudyError(f"{path.parent}: no such folder.")
    with atomic_output(path, overwrite=False) as tmp:
        conn = sqlite3.connect(tmp.resolve().as_uri(), uri=True, isolation_level=None)
        try:
            conn.execute("PRAGMA synchronous = FULL")
            conn.executescript(SCHEMA + MIGRATION_2)
            if source is not None:
                conn.execute("ATTACH DATABASE ? AS source", (source,))
            conn.execute("BEGIN")
            fill(conn)
            conn.execute("COMMIT")
            if source is not None:
                conn.execute("DETACH DATABASE source")
            conn.execute("PRAGMA journal_mode = WAL")
        except DATABASE_ERRORS as exc:
            raise database_error(path, exc) from exc
        finally:
            conn.close()
            for suffix in ("-journal", "-wal", "-shm"):
                Path(f"{tmp}{suffix}").unlink(missing_ok=True)


def _parse_arms(arms: Iterable[str], second_arm_opens: str | None) -> list[Arm]:
    names = [a.strip() for a in arms if a.strip()]
    unknown = [a for a in names if a not in ARMS]
    if unknown or not names or len(set(names)) != len(names):
        raise StudyError(
            f"arms must be distinct names among {', '.join(ARMS)}; "
            f"got {', '.join(names) or 'none'}."
        )
    if second_arm_opens is not None:
        if len(names) < 2:
            raise StudyError("a washout date needs two arms.")
        try:
            datetime.fromisoformat(second_arm_opens)
        except ValueError as exc:
            raise StudyError(
                f"washout date {second_arm_opens!r} is not an ISO date like 2026-12-01."
            ) from exc
    return [
        Arm(name, second_arm_opens if i == 1 else None, ARMS[name]) for i, name in enumerate(names)
    ]


class StudyStore:
    """A study file: its definition, readers and answers.

    Parameters
    ----------
    path : Path
        An existing ``.h2study`` file (make one with :meth:`create`).
    readonly : bool
        Open without write access (reports).
    hidden_tables : iterable of str
        Tables this connection may not read at all (SQLite refuses the query);
        the reading mode hides ``truth`` and, in the unassisted arm, ``model_predictions``.
    """

    def __init__(
        self, path: Path, readonly: bool = False, hidden_tables: Iterable[str] = ()
    ) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise StudyError(f"{self.path}: no such study file.")
        self.conn = connect(self.path, readonly)
        self.hidden_tables = frozenset(hidden_tables)
        self._owner_key: bytes | None = None
        if self.hidden_tables:
            self.conn.set_authorizer(self._authorize)
        try:
            version = self.meta("schema_version")
        except (*DATABASE_ERRORS, StudyError) as exc:
            self.conn.close()
            raise StudyError(f"{self.path.name} is not a study file.") from exc
        if version not in ("1", str(SCHEMA_VERSION)):
            self.conn.close()
            raise StudyError(
                f"{self.path.name} has study schema {version}; this version reads {SCHEMA_VERSION}."
            )
        try:
            if version == "1" and not readonly:
                self._migrate()
            self.question = Question.from_dict(json.loads(self.meta("question")), self.path.name)
            self.rules = ReadingRules.from_text(self.meta("reading", "{}"), self.path.name)
        except StudyError:
            self.conn.close()
            raise
        except (*DATABASE_ERRORS, ValueError, TypeError) as exc:
            self.conn.close()
            raise database_error(self.path, exc) from exc

    def _authorize(self, action, table, column, database, source) -> int:
        if action == sqlite3.SQLITE_READ and table in self.hidden_tables:
            return sqlite3.SQLITE_DENY
        return sqlite3.SQLITE_OK

    def _migrate(self) -> None:
        """Turn a version-1 file into version 2 in one transaction (all or nothing)."""
        try:
            self.conn.executescript(f"BEGIN IMMEDIATE; {MIGRATION_2} COMMIT;")
        except DATABASE_ERRORS as exc:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            self.conn.close()
            raise database_error(self.path, exc) from exc

    # -- creation -------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        path: Path,
        question: Question,
        cases: list[CaseRow],
        truth: dict[str, str] | None = None,
        predictions: dict[str, tuple[str, float | None]] | None = None,
        arms: Iterable[str] = ("unassisted",),
        readers: Iterable[str] = (),
        seed: int | None = None,
        second_arm_opens: str | None = None,
        overlays: dict[str, ModelOverlay] | None = None,
        owner_secret: str | None = None,
        rules: ReadingRules | None = None,
        registrations: dict[str, CaseRegistration] | None = None,
    ) -> StudyStore:
        """Write a new study file atomically and return it opened.

        Parameters
        ----------
        path : Path
            Where to write; must not exist.
        question : Question
            What is asked per case.
        cases : list of CaseRow
            The cases, in a neutral order.
        truth, predictions : dict, optional
            Ground truth labels and model predictions by case id.
        arms : iterable of str
            ``unassisted`` and/or ``assisted``, in reading order.
        readers : iterable of str
            Readers allowed to read; when empty, any reader who identifies joins.
        seed : int, optional
            Study randomisation seed; a random one is drawn and stored when omitted.
        second_arm_opens : str, optional
            ISO date (washout) before which the second arm refuses to open.
        overlays : dict of str to ModelOverlay, optional
            Model score maps by case id, shown as layers in an assisted arm.
        owner_secret : str, optional
            The owner's secret: unblinding (truth, model outputs, every reader's
            answers) then needs it, and readers need their PIN. Without one the
            study is unprotected (as files of version 1 were).
        rules : ReadingRules, optional
            Idle limit, HER2 score and membrane percentage asked.
        registrations : dict of str to CaseRegistration, optional
            IHC -> H&E registration by case id, for the reading window.
        """
        path = Path(path)
        arm_list = _parse_arms(arms, second_arm_opens)
        seed = secrets.randbits(31) if seed is None else int(seed)
        owner_record, key = None, None
        if owner_secret is not None:
            owner_record = access.new_record(owner_secret, "owner secret")
            key = access.verify(owner_secret, owner_record, "the new owner secret")

        def fill(conn: sqlite3.Connection) -> None:
            meta = {
                "schema_version": str(SCHEMA_VERSION),
                "question": json.dumps(question.to_dict()),
                "seed": str(seed),
                "created_at": utc_now(),
                "open_enrolment": "0" if list(readers) else "1",
                "reading": (rules or ReadingRules()).model_dump_json(),
            }
            if owner_record is not None:
                meta["owner_secret"] = owner_record
            conn.executemany("INSERT INTO meta VALUES (?, ?)", meta.items())
            conn.executemany(
                "INSERT INTO cases VALUES (?, ?, ?, ?)",
                [(c.case_id, c.he_path, c.ihc_path, i) for i, c in enumerate(cases)],
            )
            conn.executemany("INSERT INTO truth VALUES (?, ?)", (truth or {}).items())
            conn.executemany(
                "INSERT INTO model_predictions VALUES (?, ?, ?)",
                [(k, p, q) for k, (p, q) in (predictions or {}).items()],
            )
            conn.executemany(
                "INSERT INTO model_overlays VALUES (?, ?, ?, ?, ?, ?)",
                [o.row(case_id) for case_id, o in (overlays or {}).items()],
            )
            conn.executemany(
                "INSERT INTO arms VALUES (?, ?, ?, ?)",
                [(a.name, i, a.opens_at, int(a.shows_model)) for i, a in enumerate(arm_list)],
            )
            conn.executemany(
                "INSERT INTO registrations VALUES (?, ?, ?, ?)",
                [r.row(case_id) for case_id, r in (registrations or {}).items()],
            )
            for reader in readers:
                _insert_reader(conn, reader, seed)
            if key is not None:
                _seal_readers(conn, key)

        _write_study_file(path, fill)
        store = cls(path)
        if key is not None:
            store._owner_key = key
            store.log_access("owner", "owner", "create", "granted")
        return store

    # -- definition -----------------------------------------------------------------------

    def meta(self, key: str, default: str | None = None) -> str:
        """Return one value of the ``meta`` table (``default`` when absent and given)."""
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        if row is not None:
            return row[0]
        if default is None:
            raise StudyError(f"{self.path.name} lacks the study setting {key!r}.")
        return default

    @property
    def is_reader_package(self) -> bool:
        """Whether this file is a reader package (no truth) made by :meth:`export_for_reader`."""
        return self.meta("reader_package", "0") == "1"

    def require_owner(self, verb: str) -> None:
        """Raise :class:`StudyError` when this file is a reader package (``verb`` needs truth)."""
        if self.is_reader_package:
            raise StudyError(
                f"{self.path.name} is a reader package without the truth; "
                f"'study {verb}' needs the study owner's file."
            )

    # -- access -------------------------------------------------------------------------

    @property
    def protected(self) -> bool:
        """Whether the study has an owner secret (then unblinding and reading need secrets).

        A study whose readers were ever sealed stays protected: deleting the owner's
        record by hand leaves a study that refuses its owner verbs, not an open one.
        """
        return bool(self.meta("owner_secret", "") or self.meta("readers_seal", ""))

    @property
    def closed_at(self) -> str | None:
        """When the owner closed the study (no answers are taken since), or ``None``."""
        return self.meta("closed_at", "") or None

    def log_access(self, who: str, role: str, action: str, outcome: str) -> None:
        """Append one line to the access log (committed on return)."""
        with self.transaction():
            self.conn.execute(
                "INSERT INTO access_log (at, who, role, action, outcome) VALUES (?, ?, ?, ?, ?)",
                (utc_now(), who, role, action, outcome),
            )

    def access_log(self) -> list[LogEntry]:
        """Return the access log, oldest first."""
        return [LogEntry(*row) for row in self.conn.execute("SELECT * FROM access_log ORDER BY id")]

    def _refuse(self, who: str, role: str, action: str, message: str) -> AccessError:
        """Log a refused opening and return the error to raise."""
        self.log_access(who, role, action, "refused: " + message)
        return AccessError(message)

    def unlock(self, secret: str | None, action: str) -> None:
        """Open the study as its owner for ``action``: check the secret and the readers, log it.

        An unprotected study needs no secret. On a protected one the readers table
        must be as the owner last sealed it (readers added since are accepted in an
        open-enrolment study), and is sealed again.

        Raises
        ------
        AccessError
            The secret is missing or wrong, or the readers table was edited by hand;
            the refusal is logged.
        """
        name = self.path.name
        if not self.protected:
            self.log_access("owner", "owner (unprotected study)", action, "granted")
            return
        if secret is None:
            raise self._refuse(
                "owner", "owner", action,
                f"{name} is protected: 'study {action}' needs the owner secret (set "
                f"{access.OWNER_ENV} or run in a terminal to be asked).",
            )  # fmt: skip
        record = self.meta("owner_secret", "")
        try:
            access.parse_record(record, f"the stored owner secret of {name}")
        except AccessError as exc:
            raise self._refuse("owner", "owner", action, str(exc)) from None
        try:
            key = access.verify(secret, record, f"owner secret of {name}")
        except AccessError:
            raise self._refuse(
                "owner", "owner", action, f"wrong owner secret of {name}; 'study {action}' refused."
            ) from None
        problem = self._seal_problem(key)
        if problem:
            raise self._refuse(
                "owner", "owner", action,
                f"the readers table of {name} was edited outside her2viewer ({problem}); "
                "restore the file from a backup.",
            )  # fmt: skip
        self._owner_key = key
        with self.transaction():
            self._seal_readers()
        self.log_access("owner", "owner", action, "granted")

    def _seal_problem(self, key: bytes) -> str | None:
        """Say how the readers table differs from the owner's last seal, or None."""
        rows = _reader_rows(self.conn)
        try:
            sealed = json.loads(self.meta("sealed_readers", "[]"))
        except ValueError:
            return "its seal is damaged"
        removed = [n for n in sealed if n not in rows]
        if removed:
            return f"reader {removed[0]!r} was removed"
        if _seal_of(self.conn, key, sealed, rows) != self.meta("readers_seal", ""):
            return "a reader's name, seed or PIN record, or the enrolment rule, was changed"
        added = [n for n in rows if n not in sealed]
        if added and self.meta("open_enrolment") != "1":
            return f"reader {added[0]!r} was added"
        return None

    def _seal_readers(self) -> None:
        """Seal the current readers table with the owner's key (inside a transaction)."""
        _seal_readers(self.conn, self._owner_key)

    def protect(self, secret: str) -> None:
        """Give an unprotected study an owner secret (opened with :meth:`unlock` first)."""
        if self.protected:
            raise AccessError(f"{self.path.name} already has an owner secret.")
        record = access.new_record(secret, "owner secret")
        self._owner_key = access.verify(secret, record, "the new owner secret")
        with self.transaction():
            self.conn.execute("INSERT INTO meta VALUES ('owner_secret', ?)", (record,))
            self._seal_readers()

    def pin_needed(self, reader: str) -> bool:
        """Whether opening a reading session as ``reader`` asks for a PIN."""
        row = self.conn.execute(
            "SELECT secret FROM readers WHERE reader = ?", (str(reader).strip(),)
        ).fetchone()
        return self.protected or (row is not None and row[0] is not None)

    def _require_owner_key(self, what: str) -> None:
        if self.protected and self._owner_key is None:
            raise AccessError(f"{what} needs the owner secret of {self.path.name}.")

    def set_reader_pin(self, reader: str, pin: str) -> None:
        """Enrol a reader (if new) with a PIN, or reset a reader's PIN (the owner's act)."""
        reader = check_reader_name(reader)
        self._require_owner_key("setting a reader's PIN")
        record = access.new_record(pin)
        with self.transaction():
            if reader in self.readers():
                self.conn.execute(
                    "UPDATE readers SET secret = ? WHERE reader = ?", (record, reader)
                )
            else:
                _insert_reader(self.conn, reader, self.seed, record)
            if self._owner_key is not None:
                self._seal_readers()

    def close_study(self) -> str:
        """Close the study (the owner's act): no answers are taken from now on."""
        self._require_owner_key("closing the study")
        closed = self.closed_at or utc_now()
        with self.transaction():
            self.conn.execute("INSERT OR REPLACE INTO meta VALUES ('closed_at', ?)", (closed,))
        return closed

    def _check_open(self) -> None:
        if self.closed_at:
            raise StudyError(
                f"{self.path.name} was closed on {self.closed_at[:10]}; it takes no more answers."
            )

    def open_reader(self, reader: str, pin: str | None, action: str) -> int:
        """Check a reader's PIN (enrolling a new reader where allowed); return their seed.

        Every opening, granted or refused, is logged. A reader with a PIN needs it;
        on a protected study every reader needs one (a new reader of an
        open-enrolment study chooses theirs now).

        Raises
        ------
        AccessError
            Missing or wrong PIN, or a protected study's reader without a PIN.
        StudyError
            The reader is not enrolled and the study does not enrol readers.
        """
        reader = check_reader_name(reader)
        self._check_open()
        row = self.conn.execute(
            "SELECT seed, secret FROM readers WHERE reader = ?", (reader,)
        ).fetchone()
        name, needs = self.path.name, f"set {access.READER_ENV} or run in a terminal to be asked"
        if row is None:
            if self.meta("open_enrolment") != "1":
                raise self._refuse(
                    reader, "reader", action,
                    f"reader {reader!r} is not enrolled in this study; ask the study coordinator.",
                )  # fmt: skip
            if self.protected and pin is None:
                raise self._refuse(
                    reader, "reader", action, f"a new reader of {name} chooses a PIN: {needs}."
                )
            record = None if pin is None else access.new_record(pin)
            with self.transaction():
                seed = _insert_reader(self.conn, reader, self.seed, record)
            self.log_access(reader, "reader", action, "granted (enrolled)")
            return seed
        seed, record = row
        if record is None and self.protected:
            raise self._refuse(
                reader, "reader", action,
                f"reader {reader!r} has no PIN yet in {name}; ask the study owner to set one "
                "with 'study add-reader'.",
            )  # fmt: skip
        if record is not None:
            if pin is None:
                raise self._refuse(
                    reader, "reader", action, f"reader {reader!r} needs their PIN: {needs}."
                )
            try:
                access.verify(pin, record, f"PIN for reader {reader!r} of {name}")
            except AccessError as exc:
                raise self._refuse(reader, "reader", action, str(exc)) from None
        self.log_access(reader, "reader", action, "granted")
        return seed

    def registration(self, case_id: str) -> np.ndarray | None:
        """The case's IHC -> H&E level-0 matrix stored at creation, or ``None``."""
        from her2viewer.registration.transform import matrix_problem

        row = self.conn.execute(
            "SELECT matrix FROM registrations WHERE case_id = ?", (case_id,)
        ).fetchone()
        if row is None:
            return None
        try:
            problem = matrix_problem(json.loads(row[0]))
        except ValueError:
            problem = "it is not JSON"
        if problem:
            raise StudyError(f"a registration stored in {self.path.name} is unusable: {problem}.")
        return np.asarray(json.loads(row[0]), float).reshape(3, 3)

    @property
    def seed(self) -> int:
        """The study's randomisation seed."""
        return int(self.meta("seed"))

    def arms(self) -> list[Arm]:
        """Return the arms in reading order."""
        rows = self.conn.execute("SELECT arm, opens_at, shows_model FROM arms ORDER BY ordinal")
        return [Arm(a, o, bool(s)) for a, o, s in rows]

    def arm(self, name: str) -> Arm:
        """Return one arm by name, or raise :class:`StudyError`."""
        for arm in self.arms():
            if arm.name == name:
                return arm
        names = ", ".join(a.name for a in self.arms())
        raise StudyError(f"this study has no arm {name!r}; its arms are {names}.")

    def cases(self) -> list[CaseRow]:
        """Return every case in the study's neutral order."""
        rows = self.conn.execute("SELECT case_id, he_path, ihc_path FROM cases ORDER BY ordinal")
        return [CaseRow(*row) for row in rows]

    def truth(self) -> dict[str, str]:
        """Return ground truth labels by case id (coordinator side; never used by reading)."""
        return dict(self.conn.execute("SELECT case_id, truth FROM truth"))

    def predictions(self) -> dict[str, tuple[str, float | None]]:
        """Return model predictions by case id as (label, probability or None)."""
        rows = self.conn.execute("SELECT case_id, prediction, probability FROM model_predictions")
        return {case_id: (label, prob) for case_id, label, prob in rows}

    # -- readers --------------------------------------------------------------------------

    def readers(self) -> dict[str, int]:
        """Return reader name -> randomisation seed."""
        return dict(self.conn.execute("SELECT reader, seed FROM readers ORDER BY reader"))

    def ensure_reader(self, reader: str) -> int:
        """Return a reader's seed, enrolling the reader when the study allows it."""
        reader = check_reader_name(reader)
        known = self.readers()
        if reader in known:
            return known[reader]
        if self.meta("open_enrolment") != "1":
            raise StudyError(
                f"reader {reader!r} is not enrolled in this study; ask the study coordinator."
            )
        with self.transaction():
            return _insert_reader(self.conn, reader, self.seed)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """Run the block in one ``BEGIN IMMEDIATE ... COMMIT``, all or nothing.

        Raises
        ------
        StudyError
            One sentence when SQLite fails (full disk, read-only file, damage);
            the transaction is then rolled back and the file is as it was.
        """
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
                self.conn.execute("COMMIT")
            finally:
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
        except DATABASE_ERRORS as exc:
            raise database_error(self.path, exc) from exc

    # -- answers --------------------------------------------------------------------------

    def record_answer(
        self,
        reader: str,
        arm: str,
        case_id: str,
        answer: str,
        confidence: float | None = None,
        seconds: float | None = None,
        comment: str = "",
        source: str = "reading",
        her2_score: str | None = None,
        membrane_percent: float | None = None,
        mark: ReaderMark | None = None,
    ) -> int:
        """Append one answer in its own committed transaction and return its row id.

        When this returns, the answer is on disk. Giving a new answer to a case
        appends a new revision; older revisions are kept. ``her2_score`` and
        ``membrane_percent`` are required when the study's reading rules ask for
        them; ``mark`` is the point or outline behind the call.
        """
        label = self.question.normalise(answer)
        confidence = self.question.check_confidence(confidence)
        seconds = check_seconds(seconds)
        extras = (*self.rules.check(her2_score, membrane_percent), _mark_text(mark))
        self._check_keys(reader, arm, case_id)
        self._check_open()
        with self.transaction():
            return self._insert_answer(
                reader, arm, case_id, label, confidence, seconds, comment, source, extras=extras
            )

    def _check_keys(self, reader: str, arm: str, case_id: str) -> None:
        if reader not in self.readers():
            raise StudyError(f"reader {reader!r} is not enrolled in this study.")
        self.arm(arm)
        found = self.conn.execute("SELECT 1 FROM cases WHERE case_id = ?", (case_id,)).fetchone()
        if found is None:
            raise StudyError(f"case {case_id!r} is not in this study.")

    def _insert_answer(
        self,
        reader,
        arm,
        case_id,
        label,
        confidence,
        seconds,
        comment,
        source,
        answered_at=None,
        extras=(None, None, None),
    ):
        (revision,) = self.conn.execute(
            "SELECT COALESCE(MAX(revision), 0) + 1 FROM answers "
            "WHERE reader = ? AND arm = ? AND case_id = ?",
            (reader, arm, case_id),
        ).fetchone()
        cursor = self.conn.execute(
            "INSERT INTO answers (reader, arm, case_id, revision, answer, confidence, seconds, "
            "comment, source, answered_at, her2_score, membrane_percent, mark) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                reader,
                arm,
                case_id,
                revision,
                label,
                confidence,
                seconds,
                comment,
                source,
                answered_at or utc_now(),
                *extras,
            ),
        )
        return cursor.lastrowid

    def answers(self, current_only: bool = True) -> list[Answer]:
        """Return all readers' answers (coordinator side), current revisions only by default."""
        table = "current_answers" if current_only else "answers"
        rows = self.conn.execute(f"SELECT * FROM {table} ORDER BY id")
        return [Answer(*row) for row in rows]

    # -- exchange -------------------------------------------------------------------------

    def export_csv(self, path: Path) -> int:
        """Write every answer revision to a CSV and return the number of rows.

        Columns: reader, arm, case_id, answer, confidence, seconds, comment,
        revision, current (1 for the latest revision), source, answered_at.
        Cells are escaped against formula injection; a reader package is refused.
        """
        self.require_owner("export")
        current = {a.id for a in self.answers()}
        rows = self.answers(current_only=False)
        columns = ["reader", "arm", "case_id", "answer", "confidence", "seconds", "comment"]
        columns += ["revision", "current", "source", "answered_at"]
        write_csv(
            path,
            columns,
            (
                [a.reader, a.arm, a.case_id, a.answer, _blank(a.confidence), _blank(a.seconds)]
                + [a.comment, a.revision, int(a.id in current), a.source, a.answered_at]
                for a in rows
            ),
        )
        return len(rows)

    def import_csv(self, path: Path) -> int:
        """Import answers collected elsewhere, all or nothing; return the number imported.

        Columns: reader, case_id, answer and optionally confidence, arm (default:
        the first arm), seconds, comment. Unknown readers are enrolled. Rows are
        appended in file order, so a later row for the same case is a new revision.
        """
        path = Path(path)
        rows = read_csv(
            path, ("reader", "case_id", "answer"), ("confidence", "arm", "seconds", "comment")
        )
        parsed = []
        for r in rows:
            where = f"{path.name} line {r['_line']}"
            confidence = parse_float(r["confidence"], "confidence", where)
            seconds = parse_float(r["seconds"], "seconds", where)
            parsed.append(
                self._checked_row(
                    r["reader"], r["arm"], r["case_id"], r["answer"], confidence, seconds, where
                )
                + (r["comment"], None, (None, None, None))
            )
        return self._append(parsed, "import")

    def import_package(self, path: Path) -> int:
        """Import the answers a reader gave in a reader package; return the number imported.

        The package must come from this study (:meth:`export_for_reader`). Every
        revision is appended with its original time, all or nothing; answers
        imported before (same reader, arm, case and time) are skipped, so
        importing a package again adds only what is new.
        """
        path = Path(path)
        with StudyStore(path, readonly=True) as package:
            if not package.is_reader_package:
                raise StudyError(
                    f"{path.name} is not a reader package; import answers from a CSV file "
                    "or a package made by 'study export-for-reader'."
                )
            if package.meta("study_created_at", "") != self.meta("created_at"):
                raise StudyError(f"{path.name} is a reader package of another study.")
            self._check_package_seal(package)
            answers = package.answers(current_only=False)
        seen = {(a.reader, a.arm, a.case_id, a.answered_at) for a in self.answers(False)}
        parsed = [
            self._checked_row(
                a.reader, a.arm, a.case_id, a.answer, a.confidence, a.seconds, path.name
            )
            + (a.comment, a.answered_at, self._package_extras(a, path.name))
            for a in answers
            if (a.reader, a.arm, a.case_id, a.answered_at) not in seen
        ]
        return self._append(parsed, "package")

    def _checked_row(self, reader, arm, case_id, answer, confidence, seconds, where) -> tuple:
        """Return (reader, arm, case_id, label, confidence, seconds) of an answer to import."""
        reader = check_reader_name(reader, where)
        if case_id not in {c.case_id for c in self.cases()}:
            raise StudyError(f"{where}: case_id {case_id!r} is not in this study.")
        arm = arm or self.arms()[0].name
        try:
            self.arm(arm)
        except StudyError as exc:
            raise StudyError(f"{where}: {exc}") from exc
        label = self.question.normalise(answer, where)
        confidence = self.question.check_confidence(confidence, where)
        return reader, arm, case_id, label, confidence, check_seconds(seconds, where)

    def _package_seal(self, exported_at: str) -> str:
        return access.seal(self._owner_key, json.dumps([self.meta("created_at"), exported_at]))

    def _check_package_seal(self, package: StudyStore) -> None:
        """Refuse a package the owner of a protected study did not seal, or with edited readers.

        Both would let someone answer in a reader's name (e.g. with a replaced PIN).
        """
        if not self.protected:
            return
        self._require_owner_key("importing a reader package")
        name = package.path.name
        if package.meta("package_seal", "") != self._package_seal(package.meta("exported_at", "")):
            raise AccessError(
                f"{name} was not exported by this study's owner since it has an owner secret, "
                "or it was edited; export a new package with 'study export-for-reader'."
            )
        problem = package._seal_problem(self._owner_key)
        if problem:
            raise AccessError(
                f"the readers table of {name} was edited outside her2viewer ({problem}); "
                "its answers are not imported."
            )

    def _package_extras(self, answer: Answer, where: str) -> tuple:
        """Checked HER2 score, membrane percentage and mark of an answer from a package."""
        where = f"{where} answer {answer.id}"
        score, percent = self.rules.check(
            answer.her2_score, answer.membrane_percent, where, require=False
        )
        mark = None if answer.mark is None else ReaderMark.from_text(answer.mark, where)
        return score, percent, _mark_text(mark)

    def _append(self, parsed: list[tuple], source: str) -> int:
        """Append checked answers (enrolling unknown readers) in one transaction."""
        self._check_open()
        with self.transaction():
            known = self.readers()
            for reader in sorted({p[0] for p in parsed} - set(known)):
                _insert_reader(self.conn, reader, self.seed)
            for *row, answered_at, extras in parsed:
                self._insert_answer(*row, source, answered_at, extras)
            if self._owner_key is not None:
                self._seal_readers()
        return len(parsed)

    def export_for_reader(self, path: Path, with_model: bool = False) -> None:
        """Write a reader package: a copy of the study without truth and other readers' answers.

        Parameters
        ----------
        path : Path
            The package to write; must not exist.
        with_model : bool
            Keep the model's predictions and score maps, which an assisted arm
            shows. Without them the package can only read arms that hide the
            model, and nothing in the file reveals the model's answers.
        """
        self.require_owner("export-for-reader")
        self._require_owner_key("exporting a reader package")
        tables = ["meta", "cases", "arms", "readers", "registrations"]
        tables += ["model_predictions", "model_overlays"] if with_model else []
        columns = {t: self._columns(t) for t in tables if t != "registrations" or self._columns(t)}
        source = f"{self.path.resolve().as_uri()}?mode=ro"
        marks = {
            "reader_package": "1",
            "model_included": str(int(with_model)),
            "study_created_at": self.meta("created_at"),
            "exported_at": utc_now(),
        }
        if self._owner_key is not None:
            marks["package_seal"] = self._package_seal(marks["exported_at"])

        def fill(conn: sqlite3.Connection) -> None:
            for table, names in columns.items():
                listed = ", ".join(names)
                conn.execute(f"INSERT INTO {table} ({listed}) SELECT {listed} FROM source.{table}")
            conn.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", marks.items())

        _write_study_file(Path(path), fill, source)

    def _columns(self, table: str) -> list[str]:
        """Column names of a table of this file (empty when a version-1 file lacks it)."""
        return [row[1] for row in self.conn.execute(f"PRAGMA table_info({table})")]

    def integrity_check(self) -> str:
        """Return SQLite's ``PRAGMA integrity_check`` verdict (``"ok"`` when healthy)."""
        return self.conn.execute("PRAGMA integrity_check").fetchone()[0]

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()

    def __enter__(self) -> StudyStore:
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        """Close the file; a SQLite error inside the block becomes one :class:`StudyError`."""
        self.close()
        if isinstance(exc, DATABASE_ERRORS):
            raise database_error(self.path, exc) from exc


def check_reader_name(reader: str, where: str = "") -> str:
    """Return a stripped reader name, or raise :class:`StudyError` when it is empty or odd."""
    name = str(reader).strip()
    prefix = f"{where}: " if where else ""
    if not name or len(name) > 64 or not name.isprintable():
        raise StudyError(f"{prefix}reader name {reader!r} must be 1-64 printable characters.")
    return name


def _insert_reader(
    conn: sqlite3.Connection, reader: str, study_seed: int, secret: str | None = None
) -> int:
    name = check_reader_name(reader)
    seed = reader_seed(study_seed, name)
    conn.execute(
        "INSERT INTO readers (reader, seed, created_at, secret) VALUES (?, ?, ?, ?)",
        (name, seed, utc_now(), secret),
    )
    return seed


def _reader_rows(conn: sqlite3.Connection) -> dict[str, list]:
    rows = conn.execute("SELECT reader, seed, secret FROM readers ORDER BY reader")
    return {name: [name, seed, secret] for name, seed, secret in rows}


def _seal_of(conn: sqlite3.Connection, key: bytes, names: list[str], rows: dict) -> str:
    """The owner's HMAC over the enrolment rule and the named readers' rows."""
    (rule,) = conn.execute("SELECT value FROM meta WHERE key = 'open_enrolment'").fetchone()
    return access.seal(key, json.dumps([rule, [rows[n] for n in names]]))


def _seal_readers(conn: sqlite3.Connection, key: bytes) -> None:
    """Seal the current readers table with the owner's key (inside a transaction)."""
    rows = _reader_rows(conn)
    names = sorted(rows)
    values = {"sealed_readers": json.dumps(names), "readers_seal": _seal_of(conn, key, names, rows)}
    conn.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", values.items())


def _mark_text(mark: ReaderMark | None) -> str | None:
    return None if mark is None else check_mark(mark).to_text()


def _blank(value: float | None) -> str:
    return "" if value is None else f"{value:g}"
