"""Exports of a study's answers for analysis elsewhere (the owner's side: they unblind).

- :func:`long_rows` yields one row per reader, arm (modality) and case with its
  current answer, the truth and the rating, the plain long table that MRMCaov,
  RJafroc (after reshaping) and any statistics package read; :func:`write_long_csv`
  writes it through :func:`her2viewer.tables.write_csv`. The columns are
  :data:`LONG_COLUMNS` (documented in ``docs/researcher.md``).
- :func:`write_marks` writes every reader's mark as QuPath GeoJSON through
  :mod:`her2viewer.geometry.geojson`, in the H&E slide's level-0 pixels.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from her2viewer.geometry.geojson import Feature, write_features
from her2viewer.geometry.shapes import apply_matrix
from her2viewer.study.stats import reader_score
from her2viewer.study.store import StudyStore
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


def long_rows(store: StudyStore) -> Iterator[dict]:
    """Yield the study's current answers as long rows (keys :data:`LONG_COLUMNS`).

    ``truth`` is 1 (positive) or 0 for a question with positive answers and a case
    with a truth, else empty; ``truth_label`` is the truth as answered;
    ``rating`` is :func:`her2viewer.study.stats.reader_score` (the position on an
    ordinal scale, or the confidence of a binary call), empty when the answer has none.
    Cases follow the study's order, then readers and arms as answered.
    """
    question, truth = store.question, store.truth()
    order = {c.case_id: i for i, c in enumerate(store.cases())}
    answers = sorted(store.answers(), key=lambda a: (order[a.case_id], a.reader, a.arm))
    for a in answers:
        label = truth.get(a.case_id)
        rating = reader_score(question, a.answer, a.confidence)
        yield {
            "reader": a.reader,
            "modality": a.arm,
            "case": a.case_id,
            "truth": ""
            if label is None or not question.binary
            else int(question.is_positive(label)),
            "rating": "" if rating is None else rating,
            "answer": a.answer,
            "truth_label": label or "",
            "confidence": _blank(a.confidence),
            "her2_score": a.her2_score or "",
            "membrane_percent": _blank(a.membrane_percent),
            "seconds": _blank(a.seconds),
            "has_mark": int(a.mark is not None),
            "revision": a.revision,
            "answered_at": a.answered_at,
        }


def write_long_csv(store: StudyStore, path: Path) -> int:
    """Write :func:`long_rows` to a CSV (formula-escaped, atomic); return the row count."""
    rows = [[row[c] for c in LONG_COLUMNS] for row in long_rows(store)]
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
