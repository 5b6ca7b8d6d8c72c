"""Exports of a study's answers for analysis elsewhere (the owner's side: they unblind).

- :func:`long_rows` builds the long table, one row per reader, arm (modality) and case
  with its current answer, the truth and the rating, that MRMCaov, RJafroc (after
  reshaping) and any statistics package read: of every answer (``study export --format
  long``) or of an MRMC data set (``study mrmc --long-csv``: the readings analysed, the
  model's included); :func:`write_long_csv` writes it through
  :func:`her2viewer.tables.write_csv`. The columns are :data:`LONG_COLUMNS` (documented in
  ``her2viewer/guide/researcher.md``); the first five are :data:`her2viewer.stats.mrmc.COLUMNS`.
- :func:`write_marks` writes every reader's mark as QuPath GeoJSON through
  :mod:`her2viewer.geometry.geojson`, in the H&E slide's level-0 pixels.
"""

from __future__ import annotations

from itertools import product
from pathlib import Path

from her2viewer.geometry.geojson import Feature, write_features
from her2viewer.geometry.shapes import apply_matrix
from her2viewer.stats.mrmc import Ratings
from her2viewer.study.definition import Question
from her2viewer.study.stats import MODEL, reader_score
from her2viewer.study.store import Answer, StudyStore
from her2viewer.tables import write_csv

#: Columns of the long table, one row per reader, modality (arm) and case.
LONG_COLUMNS = (
    "reader",
    "modality",
    "case",
    "truth",
    "rating",
    "answer",
    "truth_label",
    "confidence",
    "her2_score",
    "membrane_percent",
    "seconds",
    "has_mark",
    "revision",
    "answered_at",
)


def long_rows(store: StudyStore | None = None, data: Ratings | None = None) -> list[dict]:
    """Return the long table: one row per reader, modality and case (keys :data:`LONG_COLUMNS`).

    The one builder of the table that ``study export --format long`` and ``study mrmc
    --long-csv`` write.

    Parameters
    ----------
    store : StudyStore, optional
        The owner's study. Without ``data``, its current answers are the rows: ``truth`` is
        1 (positive) or 0 for a question with positive answers and a case with a truth,
        else empty; ``rating`` is :func:`her2viewer.study.stats.reader_score`, empty when
        the answer has none.
    data : Ratings, optional
        An MRMC data set (:func:`her2viewer.study.mrmc.study_ratings` of ``store``, or a
        ratings file): its readings are the rows, with the truth and the rating the analysis
        uses; the answer columns come from ``store`` when given (the model's rows carry its
        answer) and are empty otherwise.

    Returns
    -------
    list of dict
        In the study's case order (``data``'s without a store), then by reader and modality.
    """
    answers = {(a.arm, a.reader, a.case_id): a for a in store.answers()} if store else {}
    labels = store.truth() if store else {}
    if data is None:
        question = store.question
        cells = {
            key: (_truth(question, labels.get(key[2])), _rating(question, a))
            for key, a in answers.items()
        }
    else:
        cells = {
            (m, r, c): (int(data.truth[k]), float(data.values[i, j, k]))
            for (i, m), (j, r), (k, c) in product(
                enumerate(data.modalities), enumerate(data.readers), enumerate(data.cases)
            )
        }
    model = store.predictions() if store and data and MODEL in data.modalities else {}
    rows = [
        _row(key, truth, rating, answers.get(key), labels.get(key[2]), model.get(key[2]))
        for key, (truth, rating) in cells.items()
    ]
    cases = [c.case_id for c in store.cases()] if store else data.cases
    order = {case: i for i, case in enumerate(cases)}
    return sorted(rows, key=lambda row: (order[row["case"]], row["reader"], row["modality"]))


def _truth(question: Question, label: str | None) -> int | str:
    """1 or 0 for a case with a truth under a question with positive answers, else empty."""
    return "" if label is None or not question.binary else int(question.is_positive(label))


def _rating(question: Question, answer: Answer) -> float | str:
    rating = reader_score(question, answer.answer, answer.confidence)
    return "" if rating is None else rating


def _row(
    key: tuple[str, str, str],
    truth: int | str,
    rating: float | str,
    answer: Answer | None,
    truth_label: str | None,
    prediction: tuple | None,
) -> dict:
    """One row of the long table; a reading without an answer is the model's, if any."""
    modality, reader, case = key
    row = dict.fromkeys(LONG_COLUMNS, "")
    row.update(reader=reader, modality=modality, case=case, truth=truth, rating=rating)
    row["truth_label"] = truth_label or ""
    if answer is not None:
        row.update(
            answer=answer.answer,
            confidence=_blank(answer.confidence),
            her2_score=answer.her2_score or "",
            membrane_percent=_blank(answer.membrane_percent),
            seconds=_blank(answer.seconds),
            has_mark=int(answer.mark is not None),
            revision=answer.revision,
            answered_at=answer.answered_at,
        )
    elif prediction is not None:
        row["answer"] = prediction[0]
    return row


def write_long_csv(store: StudyStore | None, path: Path, data: Ratings | None = None) -> int:
    """Write :func:`long_rows` to a CSV (formula-escaped, atomic); return the row count."""
    rows = [[row[c] for c in LONG_COLUMNS] for row in long_rows(store, data)]
    write_csv(path, LONG_COLUMNS, rows)
    return len(rows)


def write_marks(store: StudyStore, path: Path) -> int:
    """Write every current answer's mark as QuPath GeoJSON; return the number of marks.

    Marks drawn on the IHC pane are mapped onto the H&E slide through the case's
    stored registration (``drawn_on`` says which pane; ``slide`` which frame the
    geometry is in: ``ihc`` when the case has no registration).
    """
    features = []
    for a in store.answers():
        mark = a.reader_mark()
        if mark is None:
            continue
        geometry, frame = mark.geometry, mark.slide
        matrix = store.registration(a.case_id) if frame == "ihc" else None
        if matrix is not None:
            geometry, frame = apply_matrix(geometry, matrix), "he"
        properties = {
            "reader": a.reader,
            "arm": a.arm,
            "case_id": a.case_id,
            "answer": a.answer,
            "her2_score": a.her2_score,
            "membrane_percent": a.membrane_percent,
            "drawn_on": mark.slide,
            "slide": frame,
            "answered_at": a.answered_at,
        }
        features.append(
            Feature(
                geometry,
                class_name=a.answer,
                name=f"{a.reader} / {a.arm} / {a.case_id}",
                properties=properties,
            )
        )
    write_features(path, features)
    return len(features)


def _blank(value: float | None) -> str | float:
    return "" if value is None else value
