"""Helpers for the study tests: write small CSVs and study files."""

from __future__ import annotations

from pathlib import Path

from her2viewer.study.definition import load_cases, load_predictions, load_truth, make_question
from her2viewer.study.store import StudyStore


def write_csv(path: Path, header: str, rows: list[str]) -> Path:
    """Write a CSV from a header line and data lines."""
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


def make_study(
    tmp: Path,
    n: int = 6,
    question: str = "status",
    arms=("unassisted", "assisted"),
    readers=(),
    slide: Path | None = None,
    seed: int = 7,
    confidence: str = "none",
) -> Path:
    """A study whose case ids, folders and file names reveal the truth (to test blinding).

    Cases alternate positive/negative; the model predicts each case with probability
    0.8731 (positive) or 0.1269 (negative), wrong on case 0. ``slide`` is linked in as
    every case's H&E (and IHC) file when given.
    """
    q = make_question(question, confidence=confidence)
    labels = ["positive", "negative"] if question == "status" else ["3+", "0"]
    truth_rows, pred_rows, case_rows = [], [], []
    for i in range(n):
        label = labels[i % 2]
        tag = "POS" if i % 2 == 0 else "NEG"
        case_id = f"HER2{tag}_case{i:02d}"
        folder = tmp / f"truth_{tag}_{i:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        if slide is not None:
            for name in ("he_truth.svs", "ihc_truth.svs"):
                target = folder / name
                if not target.exists():
                    target.symlink_to(slide)
        case_rows.append(f"{case_id},{folder.name}/he_truth.svs,{folder.name}/ihc_truth.svs")
        truth_rows.append(f"{case_id},{label}")
        predicted = labels[(i + (i == 0)) % 2]
        prob = 0.8731 if predicted == labels[0] else 0.1269
        pred_rows.append(f"{case_id},{predicted},{prob}")
    cases = write_csv(tmp / "cases.csv", "case_id,he_path,ihc_path", case_rows)
    truth = write_csv(tmp / "truth.csv", "case_id,truth", truth_rows)
    preds = write_csv(tmp / "preds.csv", "case_id,prediction,probability", pred_rows)
    case_list = load_cases(cases)
    ids = {c.case_id for c in case_list}
    path = tmp / "study.h2study"
    StudyStore.create(
        path, q, case_list, load_truth(truth, q, ids), load_predictions(preds, q, ids), arms,
        readers, seed,
    ).close()  # fmt: skip
    return path
