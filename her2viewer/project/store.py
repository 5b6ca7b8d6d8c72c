"""The project database: ``project.sqlite`` in the project folder (WAL, versioned schema).

A project is a folder holding ``project.sqlite`` (cases, their slides with fingerprints,
metadata columns, registration, and one result row per case and analysis), ``artefacts/``
(every file an analysis wrote, per case), ``features/`` (the features h5 of each slide) and
``annotations/`` (the annotation store of each project slide). Paths inside the project folder
are stored relative to it, so a project folder can be moved whole.

>>> project = Project.create("cohort.h2vproj")  # doctest: +SKIP
>>> project.add_case(Case("case000", he="case000/he.svs"))  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from her2viewer.errors import Her2ViewerError
from her2viewer.outputs import output_error

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; one run at a time is up to the user
    fcntl = None

#: The file that makes a folder a project.
DB_NAME = "project.sqlite"
#: The slide roles of a case.
ROLES = ("he", "ihc")

#: Schema scripts: entry ``i`` moves a database from version ``i`` to ``i + 1``
#: (``PRAGMA user_version``). Append a script to change the schema; never edit one.
MIGRATIONS = (
    """
    CREATE TABLE cases (
        case_id TEXT PRIMARY KEY,
        patient_id TEXT,
        metadata TEXT NOT NULL DEFAULT '{}'
    );
    CREATE TABLE slides (
        case_id TEXT NOT NULL REFERENCES cases(case_id) ON DELETE CASCADE,
        role TEXT NOT NULL CHECK (role IN ('he', 'ihc')),
        path TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        PRIMARY KEY (case_id, role)
    );
    CREATE TABLE results (
        case_id TEXT NOT NULL REFERENCES cases(case_id) ON DELETE CASCADE,
        analysis TEXT NOT NULL,
        task_key TEXT NOT NULL,
        bundle_hash TEXT,
        options TEXT NOT NULL DEFAULT '{}',
        version TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('done', 'failed')),
        error TEXT,
        started REAL,
        seconds REAL,
        attempts INTEGER NOT NULL DEFAULT 1,
        summary TEXT NOT NULL DEFAULT '{}',
        artefacts TEXT NOT NULL DEFAULT '[]',
        PRIMARY KEY (case_id, analysis)
    );
    """,
    """
    ALTER TABLE cases ADD COLUMN registration TEXT;
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)
_CASE_ID = re.compile(r"[0-9A-Za-z][0-9A-Za-z_.\-]*")


class ProjectError(Her2ViewerError):
    """A project folder, case or result that cannot be used (one sentence)."""


@dataclass
class Case:
    """One case: a patient's H&E and/or IHC slide and its metadata.

    Attributes
    ----------
    case_id : str
        Unique in the project (letters, digits, ``_ . -``).
    he, ihc : str, optional
        Slide paths (absolute, or relative to the project folder).
    he_fingerprint, ihc_fingerprint : str, optional
        Content fingerprints of the slides (found again by :func:`relink`).
    patient_id : str, optional
    metadata : dict
        Metadata columns (from a cohort CSV).
    registration : list, optional
        The 3x3 level-0 H&E -> IHC matrix, when one was fitted.
    """

    case_id: str
    he: str | None = None
    ihc: str | None = None
    he_fingerprint: str | None = None
    ihc_fingerprint: str | None = None
    patient_id: str | None = None
    metadata: dict = field(default_factory=dict)
    registration: list | None = None

    def slide(self, role: str) -> tuple[str | None, str | None]:
        """``(path, fingerprint)`` of the ``"he"`` or ``"ihc"`` slide."""
        return getattr(self, role), getattr(self, f"{role}_fingerprint")


@dataclass
class ResultRow:
    """One analysis of one case, as stored (``summary`` and ``artefacts`` decoded)."""

    case_id: str
    analysis: str
    task_key: str
    status: str
    version: str
    bundle_hash: str | None = None
    options: dict = field(default_factory=dict)
    error: str | None = None
    started: float | None = None
    seconds: float | None = None
    attempts: int = 1
    summary: dict = field(default_factory=dict)
    artefacts: list[str] = field(default_factory=list)


class Project:
    """A project folder and its database; every method opens a short connection.

    Parameters
    ----------
    folder : path
        An existing project folder (see :meth:`create` and :meth:`open`).
    """

    def __init__(self, folder: str | Path):
        self.folder = Path(folder).resolve()
        self.db_path = self.folder / DB_NAME

    # ---- opening ------------------------------------------------------------------------
    @classmethod
    def create(cls, folder: str | Path) -> Project:
        """Make ``folder`` (new or empty) a project and return it.

        Raises
        ------
        ProjectError
            The folder already holds a project or other files, or cannot be written.
        """
        folder = Path(folder)
        if (folder / DB_NAME).exists():
            raise ProjectError(f"{folder} already holds a project ({DB_NAME}).")
        if folder.is_file() or (folder.is_dir() and any(folder.iterdir())):
            raise ProjectError(f"{folder} is not an empty folder: create a project in a new one.")
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            message = f"Cannot create the project folder {folder}: {exc.strerror}."
            raise ProjectError(message) from exc
        project = cls(folder)
        project.migrate()
        return project

    @classmethod
    def open(cls, folder: str | Path) -> Project:
        """Open an existing project (its schema migrated to :data:`SCHEMA_VERSION`).

        Raises
        ------
        ProjectError
            No project there, or one written by a newer her2viewer.
        """
        project = cls(folder)
        if not project.db_path.is_file():
            raise ProjectError(
                f"{folder} is not a project (no {DB_NAME}); make one with 'project create'."
            )
        project.migrate()
        return project

    @contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        """A connection in WAL mode with foreign keys; committed on success, else rolled back."""
        try:
            connection = sqlite3.connect(self.db_path, timeout=30)
        except sqlite3.Error as exc:
            raise ProjectError(f"Cannot open {self.db_path}: {exc}.") from exc
        with closing(connection):
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA foreign_keys=ON")
            try:
                with connection:
                    yield connection
            except sqlite3.DatabaseError as exc:
                raise ProjectError(f"{self.db_path} cannot be used: {exc}.") from exc

    def migrate(self) -> int:
        """Bring the schema to :data:`SCHEMA_VERSION`; return the version found before."""
        with self.connect() as db:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise ProjectError(
                    f"{self.db_path} has schema version {version}, newer than this her2viewer's "
                    f"{SCHEMA_VERSION}: update her2viewer."
                )
            for number in range(version, SCHEMA_VERSION):
                for statement in MIGRATIONS[number].split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute(f"PRAGMA user_version = {number + 1}")
        return version

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold the project's lock (``run.lock``): one ``run`` or ``gc`` at a time.

        Raises
        ------
        ProjectError
            Another run or gc holds it (the lock goes with its process, even a killed one).
        """
        if fcntl is None:
            yield
            return
        lock = self.folder / "run.lock"
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as exc:
            raise output_error(lock, exc, what="create") from exc
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                raise ProjectError(
                    f"{self.folder} is busy: another 'project run' or 'project gc' is using it."
                ) from exc
            yield
        finally:
            os.close(fd)

    # ---- paths --------------------------------------------------------------------------
    def resolve(self, path: str) -> Path:
        """An absolute path for a stored one (relative paths are inside the project folder)."""
        return self.folder / path

    def relative(self, path: str | Path) -> str:
        """``path`` as stored: relative when inside the project folder, else absolute."""
        path = Path(path).resolve()
        return str(path.relative_to(self.folder)) if path.is_relative_to(self.folder) else str(path)

    def annotation_path(self, fingerprint: str) -> Path:
        """The annotation store of a project slide (``annotations/<fingerprint>.geojson``).

        Open it with :meth:`her2viewer.annotations.store.AnnotationStore.open`: project slides
        keep their annotations in the project folder, not in the user data folder.
        """
        if not re.fullmatch(r"[0-9A-Za-z_-]+", fingerprint):
            raise ProjectError(f"{fingerprint!r} is not a slide fingerprint.")
        return self.folder / "annotations" / f"{fingerprint}.geojson"

    # ---- cases --------------------------------------------------------------------------
    def add_case(self, case: Case, *, replace: bool = False) -> None:
        """Store ``case`` (its slides and metadata).

        Raises
        ------
        ProjectError
            A bad case id, or one that exists already (unless ``replace``).
        """
        if not _CASE_ID.fullmatch(case.case_id):
            raise ProjectError(
                f"{case.case_id!r} is not a case id (letters, digits, '_', '.' and '-')."
            )
        with self.connect() as db:
            exists = db.execute("SELECT 1 FROM cases WHERE case_id = ?", (case.case_id,))
            if exists.fetchone() and not replace:
                raise ProjectError(f"Case {case.case_id} is already in the project.")
            db.execute(
                "INSERT INTO cases (case_id, patient_id, metadata, registration) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (case_id) DO UPDATE SET "
                "patient_id = excluded.patient_id, metadata = excluded.metadata, "
                "registration = excluded.registration",
                (
                    case.case_id,
                    case.patient_id,
                    json.dumps(case.metadata),
                    json.dumps(case.registration) if case.registration is not None else None,
                ),
            )
            db.execute("DELETE FROM slides WHERE case_id = ?", (case.case_id,))
            for role in ROLES:
                path, fingerprint = case.slide(role)
                if path is not None:
                    db.execute(
                        "INSERT INTO slides VALUES (?, ?, ?, ?)",
                        (case.case_id, role, self.relative(path), fingerprint),
                    )

    def cases(self) -> list[Case]:
        """Every case, by case id."""
        with self.connect() as db:
            rows = db.execute(
                "SELECT case_id, patient_id, metadata, registration FROM cases ORDER BY case_id"
            ).fetchall()
            slides = db.execute("SELECT case_id, role, path, fingerprint FROM slides").fetchall()
        cases = {
            cid: Case(cid, patient_id=pid, metadata=json.loads(meta),
                      registration=json.loads(reg) if reg else None)
            for cid, pid, meta, reg in rows
        }  # fmt: skip
        for cid, role, path, fingerprint in slides:
            setattr(cases[cid], role, str(self.resolve(path)))
            setattr(cases[cid], f"{role}_fingerprint", fingerprint)
        return list(cases.values())

    def set_slide_path(self, fingerprint: str, path: str | Path) -> int:
        """Point every slide with ``fingerprint`` at ``path``; return how many rows changed."""
        with self.connect() as db:
            cursor = db.execute(
                "UPDATE slides SET path = ? WHERE fingerprint = ?",
                (self.relative(path), fingerprint),
            )
            return cursor.rowcount

    def set_registration(self, case_id: str, matrix: list | None) -> None:
        """Store the H&E -> IHC level-0 matrix of a case (None forgets it)."""
        with self.connect() as db:
            db.execute(
                "UPDATE cases SET registration = ? WHERE case_id = ?",
                (json.dumps(matrix) if matrix is not None else None, case_id),
            )

    # ---- results ------------------------------------------------------------------------
    def record(self, row: ResultRow) -> None:
        """Store the result of one analysis of one case, replacing the previous one."""
        with self.connect() as db:
            db.execute(
                "INSERT OR REPLACE INTO results VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    row.case_id, row.analysis, row.task_key, row.bundle_hash,
                    json.dumps(row.options), row.version, row.status, row.error, row.started,
                    row.seconds, row.attempts, json.dumps(row.summary), json.dumps(row.artefacts),
                ),
            )  # fmt: skip

    def results(self, status: str | None = None) -> list[ResultRow]:
        """Every stored result (only those with ``status`` when given), by case and analysis."""
        query = "SELECT * FROM results" + (" WHERE status = ?" if status else "")
        with self.connect() as db:
            rows = db.execute(query + " ORDER BY case_id, analysis", (status,) if status else ())
            rows = rows.fetchall()
        return [
            ResultRow(
                cid, analysis, key, st, version, bundle, json.loads(options), error, started,
                seconds, attempts, json.loads(summary), json.loads(artefacts),
            )  # fmt: skip
            for (cid, analysis, key, bundle, options, version, st, error, started, seconds,
                 attempts, summary, artefacts) in rows
        ]  # fmt: skip

    def done_keys(self) -> set[tuple[str, str, str]]:
        """``(case_id, analysis, task_key)`` of every finished result."""
        return {(r.case_id, r.analysis, r.task_key) for r in self.results("done")}
