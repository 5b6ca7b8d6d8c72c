"""The reader's side of a study: blinded cases in a per-reader random order.

A :class:`ReadingSession` is everything the reading mode (GUI or headless) may
touch. Its database connection cannot read the ``truth`` table, nor, in an arm
that does not show the model, the ``model_predictions`` and ``model_overlays``
tables: SQLite refuses such queries. It only ever queries the identified reader's own answers, and
what it hands out (:class:`BlindedCase`) names a case by its position in the
reader's order, never by case id or file name.

On a protected study (one with an owner secret) a session opens only with the
reader's PIN, and every opening, granted or refused, is written to the study's
access log. :class:`ActiveClock` measures a case's reading time without pauses
and without idle time beyond the study's limit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import numpy as np

from her2viewer.errors import StudyError
from her2viewer.study.marks import ReaderMark
from her2viewer.study.store import Arm, ModelOverlay, StudyStore

#: Tables the reading mode never reads, and those it reads only in an arm showing the model.
TRUTH_TABLES = ("truth",)
MODEL_TABLES = ("model_predictions", "model_overlays")


@dataclass(frozen=True)
class ModelHint:
    """The model's output on a case, shown only in an assisted arm."""

    prediction: str
    probability: float | None


@dataclass(frozen=True)
class BlindedCase:
    """What a reader may see of one case.

    Attributes
    ----------
    position : int
        0-based position in this reader's order for this arm.
    total : int
        Number of cases in the arm.
    title : str
        Neutral name shown to the reader, e.g. ``"Case 12 of 21"``.
    has_ihc : bool
        Whether the case has an IHC slide to show beside the H&E.
    slide_available : bool
        Whether the slide files exist on this computer.
    answer, confidence, comment : str, float or None, str
        The reader's own current answer, or ``None`` / ``""`` when unanswered.
    seconds : float
        Reading time already recorded for this case (0 when unanswered).
    model : ModelHint or None
        The model's output, in an assisted arm only.
    her2_score, membrane_percent, mark : str, float, ReaderMark or None
        The reader's own HER2 score, membrane percentage and mark with the current answer.
    """

    position: int
    total: int
    title: str
    has_ihc: bool
    slide_available: bool
    answer: str | None
    confidence: float | None
    comment: str
    seconds: float
    model: ModelHint | None
    her2_score: str | None = None
    membrane_percent: float | None = None
    mark: ReaderMark | None = None


def case_order(case_ids: list[str], seed: int, arm_index: int) -> list[str]:
    """Shuffle case ids reproducibly from a reader's seed and the arm's index."""
    rng = np.random.default_rng([seed, arm_index])
    return [case_ids[i] for i in rng.permutation(len(case_ids))]


def arm_is_open(arm: Arm, today: date | None = None) -> bool:
    """Whether an arm's washout date (if any) has come."""
    if arm.opens_at is None:
        return True
    return (today or date.today()) >= datetime.fromisoformat(arm.opens_at).date()


class ActiveClock:
    """Reading time of one case visit: pauses excluded, idle gaps capped at a limit.

    Each input event (:meth:`activity`) ends a gap; a gap longer than
    ``idle_limit`` counts as ``idle_limit`` seconds. Times come from the caller
    (a monotonic clock), so the rules are tested without waiting.

    Parameters
    ----------
    idle_limit : float or None
        Longest gap without input that counts in full (``None``: no limit).
    """

    def __init__(self, idle_limit: float | None = None) -> None:
        self.idle_limit = idle_limit
        self._counted = 0.0
        self._since: float | None = None

    @property
    def running(self) -> bool:
        """Whether the clock runs (not paused, not stopped)."""
        return self._since is not None

    def _gap(self, now: float) -> float:
        gap = max(now - self._since, 0.0)
        return gap if self.idle_limit is None else min(gap, self.idle_limit)

    def start(self, now: float) -> None:
        """Start (or resume) counting from ``now``."""
        if self._since is None:
            self._since = now

    def stop(self, now: float) -> None:
        """Stop counting (pause); the seconds so far are kept."""
        if self._since is not None:
            self._counted += self._gap(now)
            self._since = None

    def activity(self, now: float) -> None:
        """Note mouse or key input at ``now``: the gap before it counts, up to the limit."""
        if self._since is not None:
            self._counted += self._gap(now)
            self._since = now

    def seconds(self, now: float) -> float:
        """Seconds counted up to ``now``."""
        return self._counted + (0.0 if self._since is None else self._gap(now))


class ReadingSession:
    """One reader reading one arm of a study.

    Parameters
    ----------
    path : Path
        The study file.
    reader : str
        The reader's name (enrolled on first use when the study allows it).
    arm : str, optional
        Arm to read; the first arm when omitted.
    today : date, optional
        Today's date, for the washout check (tests pass a fixed one).
    pin : str, optional
        The reader's PIN or passphrase (needed on a protected study, and by a
        reader who has one).

    Raises
    ------
    AccessError
        A missing or wrong PIN (the refusal is logged in the study file).
    StudyError
        A closed study, an unknown reader or arm, an arm not yet open.
    """

    def __init__(
        self,
        path: Path,
        reader: str,
        arm: str | None = None,
        today: date | None = None,
        pin: str | None = None,
    ) -> None:
        probe = StudyStore(path, hidden_tables=TRUTH_TABLES + MODEL_TABLES)
        try:
            arms = probe.arms()
            self.arm = probe.arm(arm) if arm else arms[0]
            without_model = probe.meta("model_included", "1") == "0"
        finally:
            probe.close()
        if self.arm.shows_model and without_model:
            raise StudyError(
                f"this reader package holds no model output, so its {self.arm.name} arm cannot "
                "be read; ask the study coordinator for the package of that arm."
            )
        if not arm_is_open(self.arm, today):
            raise StudyError(
                f"the {self.arm.name} arm opens on {self.arm.opens_at} (washout); come back then."
            )
        hidden = TRUTH_TABLES if self.arm.shows_model else TRUTH_TABLES + MODEL_TABLES
        self._store = StudyStore(path, hidden_tables=hidden)
        self.question = self._store.question
        self.rules = self._store.rules
        self.reader = reader.strip()
        try:
            seed = self._store.open_reader(self.reader, pin, f"read {self.arm.name} arm")
        except Exception:
            self._store.close()
            raise
        arm_index = [a.name for a in arms].index(self.arm.name)
        self._order = self._load_or_make_order(seed, arm_index)

    def _load_or_make_order(self, seed: int, arm_index: int) -> list[str]:
        conn = self._store.conn
        query = "SELECT case_id FROM orders WHERE reader = ? AND arm = ? ORDER BY position"
        order = [row[0] for row in conn.execute(query, (self.reader, self.arm.name))]
        if order:
            return order
        order = case_order([c.case_id for c in self._store.cases()], seed, arm_index)
        with self._store.transaction():
            conn.executemany(
                "INSERT OR IGNORE INTO orders VALUES (?, ?, ?, ?)",
                [(self.reader, self.arm.name, i, c) for i, c in enumerate(order)],
            )
        return [row[0] for row in conn.execute(query, (self.reader, self.arm.name))]

    @property
    def total(self) -> int:
        """Number of cases in this arm."""
        return len(self._order)

    def _own_answers(self) -> dict[str, tuple]:
        rows = self._store.conn.execute(
            "SELECT case_id, answer, confidence, comment, seconds, her2_score, membrane_percent, "
            "mark FROM current_answers WHERE reader = ? AND arm = ?",
            (self.reader, self.arm.name),
        )
        return {row[0]: row[1:] for row in rows}

    def _model_hint(self, case_id: str) -> ModelHint | None:
        if not self.arm.shows_model:
            return None
        row = self._store.conn.execute(
            "SELECT prediction, probability FROM model_predictions WHERE case_id = ?", (case_id,)
        ).fetchone()
        return ModelHint(*row) if row else None

    def _case_row(self, position: int):
        if not 0 <= position < self.total:
            raise StudyError(f"case position {position + 1} is outside 1-{self.total}.")
        row = self._store.conn.execute(
            "SELECT he_path, ihc_path FROM cases WHERE case_id = ?", (self._order[position],)
        ).fetchone()
        return self._order[position], row[0], row[1]

    def case(self, position: int) -> BlindedCase:
        """Return what the reader may see of the case at a 0-based position."""
        case_id, he_path, ihc_path = self._case_row(position)
        answer, confidence, comment, seconds, score, percent, mark = self._own_answers().get(
            case_id, (None, None, "", None, None, None, None)
        )
        available = Path(he_path).is_file() and (not ihc_path or Path(ihc_path).is_file())
        return BlindedCase(
            position,
            self.total,
            f"Case {position + 1} of {self.total}",
            bool(ihc_path),
            available,
            answer,
            confidence,
            comment or "",
            float(seconds or 0.0),
            self._model_hint(case_id),
            score,
            percent,
            mark and ReaderMark.from_text(mark, f"the mark of case {position + 1}"),
        )

    def slide_paths(self, position: int) -> tuple[Path, Path | None]:
        """Return the H&E and IHC slide paths, for the slide loader only (never shown).

        Raises
        ------
        StudyError
            When a slide file is missing; the message names the position, not the file.
        """
        _, he_path, ihc_path = self._case_row(position)
        paths = (Path(he_path), Path(ihc_path) if ihc_path else None)
        if any(p is not None and not p.is_file() for p in paths):
            raise StudyError(
                f"the slide of case {position + 1} is missing on this computer; "
                "skip it and tell the study coordinator."
            )
        return paths

    def registration(self, position: int) -> np.ndarray | None:
        """The case's IHC -> H&E level-0 matrix computed at creation (``None``: none stored)."""
        return self._store.registration(self._case_row(position)[0])

    def model_overlay(self, position: int) -> ModelOverlay | None:
        """The model's score map for the case at a position, in an assisted arm only.

        Reads a blob from the study file: call it from a worker thread in the GUI.
        """
        if not self.arm.shows_model:
            return None
        case_id, _, _ = self._case_row(position)
        row = self._store.conn.execute(
            "SELECT name, downsample, height, width, scores FROM model_overlays WHERE case_id = ?",
            (case_id,),
        ).fetchone()
        if row is None:
            return None
        name, downsample, height, width, blob = row
        scores = np.frombuffer(blob, dtype="<f4").reshape(height, width).astype(np.float32)
        return ModelOverlay(name, downsample, scores)

    def answer(
        self,
        position: int,
        answer: str,
        confidence: float | None = None,
        seconds: float | None = None,
        comment: str = "",
        her2_score: str | None = None,
        membrane_percent: float | None = None,
        mark: ReaderMark | None = None,
    ) -> int:
        """Record the reader's answer to the case at a position (committed on return).

        ``her2_score`` and ``membrane_percent`` are required where the study asks for
        them; ``mark`` is the point or outline behind the call (seen by this reader only).
        """
        case_id, _, _ = self._case_row(position)
        return self._store.record_answer(
            self.reader, self.arm.name, case_id, answer, confidence, seconds, comment,
            her2_score=her2_score, membrane_percent=membrane_percent, mark=mark,
        )  # fmt: skip

    def answered(self) -> int:
        """Number of cases of this arm the reader has answered."""
        return len(self._own_answers())

    def resume_position(self) -> int:
        """Position of the first unanswered case (the last case when all are answered)."""
        done = self._own_answers()
        for position, case_id in enumerate(self._order):
            if case_id not in done:
                return position
        return max(self.total - 1, 0)

    def close(self) -> None:
        """Close the study file."""
        self._store.close()

    def __enter__(self) -> ReadingSession:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
