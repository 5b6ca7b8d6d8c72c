"""What a study asks and which cases it reads: question types and the input CSVs.

A study asks one question per case:

- ``status``: binary HER2 status, answers ``positive`` / ``negative``;
- ``ihc_score``: ordinal IHC score, answers ``0`` / ``1+`` / ``2+`` / ``3+``
  (status derives from it: 2+ and 3+ are positive, as in the ASCO/CAP rule);
- ``custom``: nominal answers given by the study author, optionally with one
  positive label for binary metrics.

Input CSVs (UTF-8, header row): cases ``case_id, he_path[, ihc_path]`` with paths
relative to the CSV; truth ``case_id, truth``; model predictions
``case_id, prediction[, probability]``; imported answers
``reader, case_id, answer[, confidence, arm, seconds, comment]``.

The question stored in a study file is checked by the pydantic model
:class:`QuestionRecord`, so a damaged definition is one sentence naming the file and
the field.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictStr,
    ValidationInfo,
    field_validator,
)

from her2viewer.errors import StudyError
from her2viewer.manifests import validated

#: Question type name -> (answer labels in order, positive labels, ordinal).
QUESTION_TYPES = {
    "status": (("negative", "positive"), ("positive",), False),
    "ihc_score": (("0", "1+", "2+", "3+"), ("2+", "3+"), True),
}

#: Confidence scales: name -> (low, high); ``0-100`` is the probability of positive in percent.
CONFIDENCE_SCALES = {"none": None, "1-5": (1, 5), "0-100": (0, 100)}

#: Longest reading time of one case accepted (a day); more is a clock or typing error.
MAX_READING_SECONDS = 86400.0

_ALIASES = {"pos": "positive", "neg": "negative", "1": "1+", "2": "2+", "3": "3+"}


@dataclass(frozen=True)
class Question:
    """The question of a study.

    Attributes
    ----------
    kind : str
        ``status``, ``ihc_score`` or ``custom``.
    labels : tuple of str
        Allowed answers, in order (the order is the ordinal scale for ``ihc_score``).
    positive : tuple of str
        Labels that count as positive for binary metrics; empty when none apply.
    ordinal : bool
        Whether labels are ordered (weighted kappa then applies).
    confidence : str
        Key of :data:`CONFIDENCE_SCALES`.
    """

    kind: str
    labels: tuple[str, ...]
    positive: tuple[str, ...]
    ordinal: bool
    confidence: str = "none"

    @property
    def binary(self) -> bool:
        """Whether answers map to positive/negative status."""
        return bool(self.positive)

    def normalise(self, answer: str, where: str = "") -> str:
        """Return the canonical form of an answer, or raise :class:`StudyError`.

        Parameters
        ----------
        answer : str
            Answer as typed (case and surrounding blanks are ignored; ``pos``, ``2`` ... accepted).
        where : str
            Context for the error message, e.g. ``"answers.csv line 4"``.
        """
        text = str(answer).strip()
        lowered = text.lower()
        for label in self.labels:
            if lowered == label.lower():
                return label
        if self.kind in QUESTION_TYPES and _ALIASES.get(lowered) in self.labels:
            return _ALIASES[lowered]
        prefix = f"{where}: " if where else ""
        raise StudyError(
            f"{prefix}answer {text!r} is not one of {', '.join(self.labels)} "
            f"for a {self.kind} question."
        )

    def is_positive(self, label: str) -> bool:
        """Whether a canonical label counts as positive."""
        return label in self.positive

    def check_confidence(self, value: float | None, where: str = "") -> float | None:
        """Return a confidence inside the study's scale, or raise :class:`StudyError`."""
        if value is None:
            return None
        scale = CONFIDENCE_SCALES[self.confidence]
        prefix = f"{where}: " if where else ""
        if scale is None:
            raise StudyError(f"{prefix}this study records no confidence, but one was given.")
        if not scale[0] <= value <= scale[1]:
            raise StudyError(
                f"{prefix}confidence {value:g} is outside the study's scale {self.confidence}."
            )
        return float(value)

    def to_dict(self) -> dict:
        """Return a JSON-ready dict (stored in the study file)."""
        return {
            "kind": self.kind,
            "labels": list(self.labels),
            "positive": list(self.positive),
            "ordinal": self.ordinal,
            "confidence": self.confidence,
        }

    @classmethod
    def from_dict(cls, data: object, path: str | Path = "the study file") -> Question:
        """Inverse of :meth:`to_dict`, checked by :class:`QuestionRecord`.

        Raises
        ------
        StudyError
            One sentence naming ``path`` and the first wrong field.
        """
        record = validated(QuestionRecord, data, path, "the study definition", StudyError)
        return cls(
            record.kind,
            tuple(record.labels),
            tuple(record.positive),
            record.ordinal,
            record.confidence,
        )


class QuestionRecord(BaseModel):
    """A question as a study file stores it (:meth:`Question.to_dict`).

    ``status`` and ``ihc_score`` questions must hold their type's fixed labels,
    positive labels and order; a ``custom`` one needs two or more distinct labels, and
    its positive labels are among them.
    """

    kind: Literal["status", "ihc_score", "custom"]
    labels: Annotated[list[StrictStr], Field(min_length=2)]
    positive: list[StrictStr]
    ordinal: StrictBool
    confidence: Literal[tuple(CONFIDENCE_SCALES)] = "none"

    @field_validator("labels")
    @classmethod
    def _distinct(cls, labels: list[str], info: ValidationInfo) -> list[str]:
        if len(set(labels)) != len(labels):
            raise ValueError("the labels must be distinct")
        return _fixed(labels, info, 0)

    @field_validator("positive")
    @classmethod
    def _among_labels(cls, positive: list[str], info: ValidationInfo) -> list[str]:
        if not set(positive) <= set(info.data.get("labels", positive)):
            raise ValueError("the positive labels must be among the labels")
        return _fixed(positive, info, 1)

    @field_validator("ordinal")
    @classmethod
    def _ordinal(cls, ordinal: bool, info: ValidationInfo) -> bool:
        return _fixed(ordinal, info, 2)


def _fixed(value, info: ValidationInfo, index: int):
    """Refuse a field of a ``status`` or ``ihc_score`` question that is not its type's."""
    fixed = QUESTION_TYPES.get(info.data.get("kind"))
    if fixed and (tuple(value) if isinstance(value, list) else value) != fixed[index]:
        raise ValueError(f"{info.data['kind']} questions have {info.field_name} {fixed[index]}")
    return value


#: The HER2 scores a reader may add to a call (``ReadingRules.ask_her2_score``).
HER2_SCORES = QUESTION_TYPES["ihc_score"][0]


class ReadingRules(BaseModel):
    """How a study is read, beyond its question (stored as the ``reading`` study setting).

    Attributes
    ----------
    idle_limit_s : float or None
        A gap without any mouse or key input longer than this counts only this
        long in a case's reading time (``None``: every second counts).
    ask_her2_score : bool
        Readers give a HER2 score (0, 1+, 2+, 3+) with each answer.
    ask_membrane_percent : bool
        Readers estimate the percentage of tumour cells with complete membrane staining.
    """

    model_config = ConfigDict(extra="forbid")

    idle_limit_s: Annotated[float, Field(gt=0, le=MAX_READING_SECONDS)] | None = None
    ask_her2_score: StrictBool = False
    ask_membrane_percent: StrictBool = False

    @classmethod
    def from_text(cls, text: str, path: str | Path) -> ReadingRules:
        """Read the stored JSON, or raise :class:`StudyError` naming ``path`` and the field."""
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise StudyError(f"{path}: the study's reading rules are not JSON.") from exc
        return validated(cls, data, path, "the study's reading rules", StudyError)

    def check(
        self,
        her2_score: str | None,
        membrane_percent: float | None,
        where: str = "",
        require: bool = True,
    ) -> tuple[str | None, float | None]:
        """Return a checked HER2 score and membrane percentage (when ``require``: if asked)."""
        prefix = f"{where}: " if where else ""
        if her2_score is not None:
            her2_score = _ALIASES.get(str(her2_score).strip(), str(her2_score).strip())
            if her2_score not in HER2_SCORES:
                raise StudyError(
                    f"{prefix}HER2 score {her2_score!r} is not one of {', '.join(HER2_SCORES)}."
                )
        elif require and self.ask_her2_score:
            raise StudyError(f"{prefix}this study asks for a HER2 score with each answer.")
        if membrane_percent is not None:
            if not (math.isfinite(membrane_percent) and 0 <= membrane_percent <= 100):
                raise StudyError(
                    f"{prefix}membrane staining {membrane_percent:g}% is not a percentage 0-100."
                )
            membrane_percent = float(membrane_percent)
        elif require and self.ask_membrane_percent:
            raise StudyError(
                f"{prefix}this study asks for the percentage of complete membrane staining."
            )
        return her2_score, membrane_percent


def make_question(
    kind: str,
    labels: list[str] | None = None,
    positive: str | None = None,
    confidence: str = "none",
) -> Question:
    """Build a :class:`Question` from command-line style options.

    Parameters
    ----------
    kind : str
        ``status``, ``ihc_score`` or ``custom``.
    labels : list of str, optional
        Answers of a ``custom`` question (at least two, distinct).
    positive : str, optional
        The positive label of a ``custom`` question, for binary metrics.
    confidence : str
        ``none``, ``1-5`` or ``0-100``.
    """
    if confidence not in CONFIDENCE_SCALES:
        raise StudyError(
            f"confidence scale {confidence!r} is unknown; "
            f"use one of {', '.join(CONFIDENCE_SCALES)}."
        )
    if kind in QUESTION_TYPES:
        if labels:
            raise StudyError(f"a {kind} question has fixed answers; --labels is for custom only.")
        answers, pos, ordinal = QUESTION_TYPES[kind]
        return Question(kind, answers, pos, ordinal, confidence)
    if kind != "custom":
        raise StudyError(f"question {kind!r} is unknown; use status, ihc_score or custom.")
    labels = [label.strip() for label in labels or [] if label.strip()]
    if len(labels) < 2 or len(set(labels)) != len(labels):
        raise StudyError("a custom question needs at least two distinct --labels.")
    if positive is not None and positive not in labels:
        raise StudyError(f"--positive {positive!r} is not one of the labels {', '.join(labels)}.")
    return Question("custom", tuple(labels), (positive,) if positive else (), False, confidence)


def read_csv(path: Path, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> list[dict]:
    """Read a CSV into dicts, checking its header.

    Parameters
    ----------
    path : Path
        The CSV file.
    required, optional : tuple of str
        Column names that must / may appear (other columns are ignored).

    Returns
    -------
    list of dict
        One dict per data row with blanks stripped; missing optional columns are ``""``;
        each dict also holds its line number under ``"_line"``.
    """
    path = Path(path)
    if not path.is_file():
        raise StudyError(f"{path}: no such file.")
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            header = [name.strip() for name in reader.fieldnames or []]
            missing = [name for name in required if name not in header]
            if missing:
                raise StudyError(
                    f"{path.name} lacks the column(s) {', '.join(missing)}; "
                    f"it needs {', '.join(required)}."
                )
            rows = []
            for line, raw in enumerate(reader, start=2):
                if None in raw:
                    raise StudyError(
                        f"{path.name} line {line} has more cells than its header; "
                        "quote cells that hold commas."
                    )
                row = {(k or "").strip(): (v or "").strip() for k, v in raw.items()}
                if not any(row.values()):
                    continue
                entry = {name: row.get(name, "") for name in required + optional}
                entry["_line"] = line
                rows.append(entry)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise StudyError(f"{path.name} is not a readable UTF-8 CSV file ({exc}).") from exc
    if not rows:
        raise StudyError(f"{path.name} has a header but no rows.")
    return rows


def _unique_ids(rows: list[dict], path: Path) -> None:
    seen: dict[str, int] = {}
    for row in rows:
        case_id = row["case_id"]
        if not case_id:
            raise StudyError(f"{path.name} line {row['_line']}: case_id is empty.")
        if case_id in seen:
            raise StudyError(
                f"{path.name} line {row['_line']}: case_id {case_id!r} "
                f"repeats line {seen[case_id]}."
            )
        seen[case_id] = row["_line"]


@dataclass(frozen=True)
class CaseRow:
    """One case of a study: its id and absolute slide paths (``ihc_path`` may be empty)."""

    case_id: str
    he_path: str
    ihc_path: str


def load_cases(path: Path) -> list[CaseRow]:
    """Read the cases CSV; relative slide paths are resolved against the CSV's folder.

    Missing slide files are allowed here (such a case can still be analysed from
    imported answers); :func:`missing_slides` lists them.
    """
    path = Path(path)
    rows = read_csv(path, ("case_id", "he_path"), ("ihc_path",))
    _unique_ids(rows, path)
    base = path.resolve().parent

    def resolve(text: str) -> str:
        return str((base / text).resolve()) if text else ""

    return [CaseRow(r["case_id"], resolve(r["he_path"]), resolve(r["ihc_path"])) for r in rows]


def missing_slides(cases: list[CaseRow]) -> list[str]:
    """Return the ids of cases whose H&E (or given IHC) slide file does not exist."""
    return [
        c.case_id
        for c in cases
        if not (c.he_path and Path(c.he_path).is_file())
        or (c.ihc_path and not Path(c.ihc_path).is_file())
    ]


def _known(rows: list[dict], case_ids: set[str], path: Path) -> None:
    _unique_ids(rows, path)
    for row in rows:
        if row["case_id"] not in case_ids:
            raise StudyError(
                f"{path.name} line {row['_line']}: case_id {row['case_id']!r} is not in the study."
            )


def load_truth(path: Path, question: Question, case_ids: set[str]) -> dict[str, str]:
    """Read the truth CSV (``case_id, truth``) into canonical labels."""
    path = Path(path)
    rows = read_csv(path, ("case_id", "truth"))
    _known(rows, case_ids, path)
    return {
        r["case_id"]: question.normalise(r["truth"], f"{path.name} line {r['_line']}") for r in rows
    }


def parse_float(text: str, what: str, where: str) -> float | None:
    """Parse an optional finite number from a CSV cell; blank gives ``None``."""
    if text == "":
        return None
    try:
        value = float(text)
    except ValueError as exc:
        raise StudyError(f"{where}: {what} {text!r} is not a number.") from exc
    if not math.isfinite(value):
        raise StudyError(f"{where}: {what} {text!r} is not a finite number.")
    return value


def check_seconds(value: float | None, where: str = "") -> float | None:
    """Return a reading time in seconds, or raise :class:`StudyError` when it is impossible.

    A reading time is a finite number from 0 to :data:`MAX_READING_SECONDS`;
    ``None`` (not recorded) passes.
    """
    if value is None:
        return None
    if not (math.isfinite(value) and 0 <= value <= MAX_READING_SECONDS):
        prefix = f"{where}: " if where else ""
        raise StudyError(
            f"{prefix}seconds {value:g} is not a reading time from 0 to "
            f"{MAX_READING_SECONDS:g} seconds."
        )
    return float(value)


def load_predictions(
    path: Path, question: Question, case_ids: set[str]
) -> dict[str, tuple[str, float | None]]:
    """Read model predictions (``case_id, prediction[, probability]``).

    Returns
    -------
    dict
        case_id -> (canonical label, probability of positive in [0, 1] or None).
    """
    path = Path(path)
    rows = read_csv(path, ("case_id", "prediction"), ("probability",))
    _known(rows, case_ids, path)
    result = {}
    for r in rows:
        where = f"{path.name} line {r['_line']}"
        probability = parse_float(r["probability"], "probability", where)
        if probability is not None and not 0.0 <= probability <= 1.0:
            raise StudyError(f"{where}: probability {probability:g} is outside 0-1.")
        result[r["case_id"]] = (question.normalise(r["prediction"], where), probability)
    return result
