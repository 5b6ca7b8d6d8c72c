"""Detected cells against the truth: one-to-one matching, F1, per-class confusion.

A detection matches a true cell when their centres are within ``max_distance`` (4 um by
default, about half a nucleus); the matching is one-to-one and maximises the number of
matches, nearest pairs first among equals (a linear assignment over the candidate pairs).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

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
