"""One SQLite file per study: definition, readers, append-only answers.

The file is opened in WAL mode with ``synchronous=FULL``; every answer is
inserted in its own ``BEGIN IMMEDIATE ... COMMIT`` transaction, so an answer
whose :meth:`StudyStore.record_answer` call returned survives a crash of the
process (or of the machine). Answers are never updated or deleted (triggers
forbid it): changing an answer appends a new revision, and the current answer
is the highest revision.
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

from her2viewer.errors import StudyError
from her2viewer.outputs import atomic_output
from her2viewer.study.definition import (
    CaseRow,
    Question,
    check_seconds,
    parse_float,
    read_csv,
)
from her2viewer.tables import write_csv

#: Version of the table layout below; a file with another version is refused.
SCHEMA_VERSION = 1

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
            conn.executescript(SCHEMA)
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
        if self.hidden_tables:
            self.conn.set_authorizer(self._authorize)
        try:
            version = self.meta("schema_version")
        except (*DATABASE_ERRORS, StudyError) as exc:
            self.conn.close()
            raise StudyError(f"{self.path.name} is not a study file.") from exc
        if version != str(SCHEMA_VERSION):
            self.conn.close()
            raise StudyError(
                f"{self.path.name} has study schema {version}; this version reads {SCHEMA_VERSION}."
            )
        try:
            self.question = Question.from_dict(json.loads(self.meta("question")), self.path.name)
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
        """
        path = Path(path)
        arm_list = _parse_arms(arms, second_arm_opens)
        seed = secrets.randbits(31) if seed is None else int(seed)

        def fill(conn: sqlite3.Connection) -> None:
            meta = {
                "schema_version": str(SCHEMA_VERSION),
                "question": json.dumps(question.to_dict()),
                "seed": str(seed),
                "created_at": utc_now(),
                "open_enrolment": "0" if list(readers) else "1",
            }
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
            for reader in readers:
                _insert_reader(conn, reader, seed)

        _write_study_file(path, fill)
        return cls(path)

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
    ) -> int:
        """Append one answer in its own committed transaction and return its row id.

        When this returns, the answer is on disk. Giving a new answer to a case
        appends a new revision; older revisions are kept.
        """
        label = self.question.normalise(answer)
        confidence = self.question.check_confidence(confidence)
        seconds = check_seconds(seconds)
        self._check_keys(reader, arm, case_id)
        with self.transaction():
            return self._insert_answer(
                reader, arm, case_id, label, confidence, seconds, comment, source
            )

    def _check_keys(self, reader: str, arm: str, case_id: str) -> None:
        if reader not in self.readers():
            raise StudyError(f"reader {reader!r} is not enrolled in this study.")
        self.arm(arm)
        found = self.conn.execute("SELECT 1 FROM cases WHERE case_id = ?", (case_id,)).fetchone()
        if found is None:
            raise StudyError(f"case {case_id!r} is not in this study.")

    def _insert_answer(
        self, reader, arm, case_id, label, confidence, seconds, comment, source, answered_at=None
    ):
        (revision,) = self.conn.execute(
            "SELECT COALESCE(MAX(revision), 0) + 1 FROM answers "
            "WHERE reader = ? AND arm = ? AND case_id = ?",
            (reader, arm, case_id),
        ).fetchone()
        cursor = self.conn.execute(
            "INSERT INTO answers (reader, arm, case_id, revision, answer, confidence, seconds, "
            "comment, source, answered_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
                + (r["comment"], None)
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
            answers = package.answers(current_only=False)
        seen = {(a.reader, a.arm, a.case_id, a.answered_at) for a in self.answers(False)}
        parsed = [
            self._checked_row(
                a.reader, a.arm, a.case_id, a.answer, a.confidence, a.seconds, path.name
            )
            + (a.comment, a.answered_at)
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

    def _append(self, parsed: list[tuple], source: str) -> int:
        """Append checked answers (enrolling unknown readers) in one transaction."""
        with self.transaction():
            known = self.readers()
            for reader in sorted({p[0] for p in parsed} - set(known)):
                _insert_reader(self.conn, reader, self.seed)
            for *row, answered_at in parsed:
                self._insert_answer(*row, source, answered_at)
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
        tables = ["meta", "cases", "arms", "readers"]
        tables += ["model_predictions", "model_overlays"] if with_model else []
        source = f"{self.path.resolve().as_uri()}?mode=ro"
        marks = {
            "reader_package": "1",
            "model_included": str(int(with_model)),
            "study_created_at": self.meta("created_at"),
        }

        def fill(conn: sqlite3.Connection) -> None:
            for table in tables:
                conn.execute(f"INSERT INTO {table} SELECT * FROM source.{table}")
            conn.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", marks.items())

        _write_study_file(Path(path), fill, source)

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


def _insert_reader(conn: sqlite3.Connection, reader: str, study_seed: int) -> int:
    name = check_reader_name(reader)
    seed = reader_seed(study_seed, name)
    conn.execute("INSERT INTO readers VALUES (?, ?, ?)", (name, seed, utc_now()))
    return seed


def _blank(value: float | None) -> str:
    return "" if value is None else f"{value:g}"
