"""Detected cells against the truth: one-to-one matching, F1, per-class confusion.

A detection matches a true cell when their centres are within ``max_distance`` (4 um by
default, about half a nucleus); the matching is one-to-one and maximises the number of
matches, nearest pairs first among equals (a linear assignment over the candidate pairs).

:func:`evaluate_cohort` runs the engine over a cohort of synthetic cell-truth cases
(:mod:`her2viewer.cells.truth`) through the slide room, as any slide is read, and reports
detection F1, count and positive-% errors, the per-class confusion and the case category
accuracy (per kind of case too: HER2-ultralow is told from null only by a few faint cells).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from her2viewer.cells.engine import Cells, class_of_cells, decide, detect_cells
from her2viewer.cells.profiles import ScoringProfile, load_profile
from her2viewer.cells.truth import CellTruthError, read_cell_truth
from her2viewer.jobs.core import JobContext
from her2viewer.slide import open_slide
from her2viewer.tables import read_csv_rows

#: Centre distance within which a detection counts as finding a true cell (um).
MATCH_DISTANCE_UM = 4.0
#: Cost of a detection/truth pair that is not a candidate (never chosen).
NOT_A_PAIR = 1.0


@dataclass(frozen=True)
class Matching:
    """The outcome of matching detections to true cells.

    Attributes
    ----------
    pairs : numpy.ndarray
        ``(k, 2)`` indices (detection, truth) of the matched pairs.
    n_detected, n_truth : int
        Numbers of detections and of true cells.
    """

    pairs: np.ndarray
    n_detected: int
    n_truth: int

    @property
    def true_positives(self) -> int:
        return int(len(self.pairs))

    @property
    def precision(self) -> float:
        return self.true_positives / self.n_detected if self.n_detected else 0.0

    @property
    def recall(self) -> float:
        return self.true_positives / self.n_truth if self.n_truth else 0.0

    @property
    def f1(self) -> float:
        total = self.n_detected + self.n_truth
        return 2 * self.true_positives / total if total else 1.0

    def to_dict(self) -> dict:
        """Counts and scores, JSON-ready."""
        return {
            "n_detected": self.n_detected,
            "n_truth": self.n_truth,
            "true_positives": self.true_positives,
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
        }


def match_cells(detected: np.ndarray, truth: np.ndarray, max_distance: float) -> Matching:
    """Match detections to true cells one to one within ``max_distance``.

    Parameters
    ----------
    detected, truth : numpy.ndarray
        ``(n, 2)`` centres, in the same units as ``max_distance``.

    Returns
    -------
    Matching
    """
    detected = np.asarray(detected, float).reshape(-1, 2)
    truth = np.asarray(truth, float).reshape(-1, 2)
    empty = Matching(np.zeros((0, 2), np.int64), len(detected), len(truth))
    if len(detected) == 0 or len(truth) == 0:
        return empty
    near = cKDTree(detected).sparse_distance_matrix(
        cKDTree(truth), max_distance, output_type="coo_matrix"
    )
    if near.nnz == 0:
        return empty
    rows, cols = _assign(near.row, near.col, near.data, len(detected), len(truth))
    return Matching(np.column_stack([rows, cols]).astype(np.int64), len(detected), len(truth))


def _assign(rows, cols, distances, n_rows, n_cols) -> tuple[np.ndarray, np.ndarray]:
    """Most matches, then least total distance, over the candidate pairs only.

    Candidate pairs form small groups (cells crowd only locally), so each connected group
    of the bipartite candidate graph is solved exactly by a dense assignment of its own.
    """
    graph = coo_matrix((np.ones(len(rows)), (rows, n_rows + cols)), shape=(n_rows + n_cols,) * 2)
    _, group = connected_components(graph, directed=False)
    pair_group = group[rows]
    matched_rows, matched_cols = [], []
    for g in np.unique(pair_group):
        chosen = pair_group == g
        r_ids, r = np.unique(rows[chosen], return_inverse=True)
        c_ids, c = np.unique(cols[chosen], return_inverse=True)
        # a cost below any distance makes every candidate pair cheaper than leaving it out
        cost = np.full((r_ids.size, c_ids.size), NOT_A_PAIR)
        cost[r, c] = distances[chosen] / (distances[chosen].max() + 1.0) - 1.0
        i, j = linear_sum_assignment(cost)
        keep = cost[i, j] < 0
        matched_rows.append(r_ids[i[keep]])
        matched_cols.append(c_ids[j[keep]])
    return np.concatenate(matched_rows), np.concatenate(matched_cols)


def class_confusion(
    matching: Matching, detected_classes: np.ndarray, true_classes: np.ndarray, n: int = 4
) -> np.ndarray:
    """``(n, n)`` counts of matched cells, rows the true class, columns the detected one."""
    confusion = np.zeros((n, n), np.int64)
    d, t = matching.pairs[:, 0], matching.pairs[:, 1]
    np.add.at(confusion, (np.asarray(true_classes)[t], np.asarray(detected_classes)[d]), 1)
    return confusion


def score_cells(cells: Cells, truth_xy: np.ndarray, truth_classes: np.ndarray, truth: dict) -> dict:
    """Compare classed cells with a case's truth.

    Parameters
    ----------
    cells : Cells
        What the engine found, centres in the truth's pixel frame.
    truth_xy, truth_classes : numpy.ndarray
        True centres ``(n, 2)`` and classes.
    truth : dict
        The case's ``truth.json`` (its ``decision`` is the true category).

    Returns
    -------
    dict
        ``detection`` (precision, recall, F1), ``count_error`` (detected minus true),
        ``positive_percent`` (truth, detected, error), ``confusion`` (rows true class) and
        ``category`` (true and found category and label, ``correct`` when both agree).
    """
    detected_xy = np.column_stack([cells.table.x, cells.table.y])
    matching = match_cells(detected_xy * cells.mpp, truth_xy * cells.mpp, MATCH_DISTANCE_UM)
    confusion = class_confusion(matching, cells.classes, truth_classes)
    found = decide(cells)
    true_positive = 100.0 * int(np.count_nonzero(truth_classes)) / max(1, len(truth_classes))
    positive = 100.0 * int(np.count_nonzero(cells.classes)) / max(1, len(cells))
    expected = truth["decision"]
    return {
        "case_id": truth["case_id"],
        "kind": truth["kind"],
        "detection": matching.to_dict(),
        "count_error": len(cells) - len(truth_classes),
        "positive_percent": {
            "truth": true_positive,
            "detected": positive,
            "error": positive - true_positive,
        },
        "confusion": confusion.tolist(),
        "category": {
            "truth": expected["category"],
            "truth_label": expected["label"],
            "detected": found.category,
            "detected_label": found.label,
            "correct": (found.category, found.label) == (expected["category"], expected["label"]),
        },
    }


def evaluate_case(
    case_dir: str | Path,
    profile: ScoringProfile | None = None,
    workers: int = 2,
    context: JobContext | None = None,
) -> dict:
    """Open a cell-truth case's slide, run the engine over all of it and score it.

    Parameters
    ----------
    case_dir : str or Path
        A case folder written by :func:`her2viewer.cells.truth.write_cell_cohort`.
    profile : ScoringProfile, optional
        The marker's default profile when not given.
    workers : int
        Threads of the engine.
    context : JobContext, optional
        Progress per tile and cancellation.

    Returns
    -------
    dict
        See :func:`score_cells`, plus ``n_cells``.
    """
    truth, truth_xy, truth_classes = read_cell_truth(case_dir)
    profile = profile or load_profile(None, truth["marker"])
    with open_slide(Path(case_dir) / truth["ihc_path"]) as slide:
        mpp = slide.info.mpp_x or truth["mpp"]
        table = detect_cells(
            lambda x, y, w, h: slide.read_region((x, y), 0, (w, h)),
            (0, 0, slide.info.width, slide.info.height),
            mpp,
            profile,
            context=context,
            workers=workers,
        )
    cells = Cells(table, class_of_cells(table, profile), truth["marker"], mpp)
    return score_cells(cells, truth_xy, truth_classes, truth) | {"n_cells": len(cells)}


def summarise(cases: list[dict]) -> dict:
    """Pool per-case scores (:func:`score_cells`) into one JSON-ready report.

    Detection is pooled over all cells (and its per-case mean and minimum F1 given);
    the confusion is summed; positive-% and count errors are absolute means and maxima;
    the category accuracy is given overall and per kind of case.
    """
    detection = [c["detection"] for c in cases]
    tp = sum(d["true_positives"] for d in detection)
    n_detected = sum(d["n_detected"] for d in detection)
    n_truth = sum(d["n_truth"] for d in detection)
    confusion = np.sum([c["confusion"] for c in cases], axis=0)
    positive_error = np.abs([c["positive_percent"]["error"] for c in cases])
    count_error = np.abs([c["count_error"] / max(1, c["detection"]["n_truth"]) for c in cases])
    by_kind: dict[str, dict] = {}
    for case in cases:
        kind = by_kind.setdefault(case["kind"], {"n_cases": 0, "correct": 0})
        kind["n_cases"] += 1
        kind["correct"] += int(case["category"]["correct"])
    for kind in by_kind.values():
        kind["accuracy"] = kind["correct"] / kind["n_cases"]
    f1s = [d["f1"] for d in detection]
    return {
        "n_cases": len(cases),
        "detection": {
            "n_detected": n_detected,
            "n_truth": n_truth,
            "true_positives": tp,
            "precision": tp / n_detected if n_detected else 0.0,
            "recall": tp / n_truth if n_truth else 0.0,
            "f1": 2 * tp / (n_detected + n_truth) if n_detected + n_truth else 1.0,
            "f1_mean": float(np.mean(f1s)),
            "f1_min": float(np.min(f1s)),
        },
        "count_error_percent": {
            "mean_abs": 100 * float(count_error.mean()),
            "max_abs": 100 * float(count_error.max()),
        },
        "positive_percent_error": {
            "mean_abs": float(positive_error.mean()),
            "max_abs": float(positive_error.max()),
        },
        "confusion": confusion.tolist(),
        "class_accuracy": float(np.trace(confusion) / max(1, confusion.sum())),
        "category_accuracy": float(np.mean([c["category"]["correct"] for c in cases])),
        "category_by_kind": by_kind,
        "cases": cases,
    }


def evaluate_cohort(
    folder: str | Path,
    profile: ScoringProfile | None = None,
    workers: int = 2,
    context: JobContext | None = None,
) -> dict:
    """Evaluate the engine on every case of a cell-truth cohort (its ``labels.csv``).

    The cohort must be held out: none of its cases may have been used to choose a
    threshold of the profile. Progress is reported per case.

    Returns
    -------
    dict
        See :func:`summarise`.

    Raises
    ------
    CellTruthError
        When the folder has no cell-truth ``labels.csv`` or a case has no truth.
    """
    folder = Path(folder)
    rows = read_csv_rows(folder / "labels.csv", ["case_id", "cells_path"], CellTruthError,
                         "Cell cohort labels")  # fmt: skip
    cases = []
    for done, row in enumerate(rows):
        if context is not None:
            context.report(done, len(rows), f"cells: case {row['case_id']}")
        cases.append(evaluate_case(folder / row["case_id"], profile, workers))
    return summarise(cases)
