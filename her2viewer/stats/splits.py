"""Patient-level cross-validation folds, shared by every model family's training.

Slides of one patient never span two sets, and each fold keeps the share of every
class as even as possible (scikit-learn's ``StratifiedGroupKFold``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from her2viewer.errors import ModelError


@dataclass(frozen=True)
class Fold:
    """Indices of one cross-validation fold."""

    index: int
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


def patient_folds(labels, patients, n_folds: int = 5, seed: int = 0) -> list[Fold]:
    """Stratified, patient-level k-fold splits into train / validation / test.

    Patients are split into ``n_folds`` stratified groups; fold ``k`` tests on
    group ``k``, validates (early stopping, model selection) on group ``k+1`` and
    trains on the rest, so every slide is tested exactly once (60/20/20 for 5 folds).

    Raises
    ------
    ModelError
        When a class has fewer patients than folds.
    """
    labels, patients = np.asarray(labels), np.asarray(patients)
    if n_folds < 3:
        raise ModelError("Cross-validation needs at least 3 folds (train, validation, test).")
    for cls in np.unique(labels):
        n = len(np.unique(patients[labels == cls]))
        if n < n_folds:
            raise ModelError(
                f"{n_folds}-fold cross-validation needs {n_folds} patients of class {cls}, got {n}."
            )
    splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    groups = [test for _, test in splitter.split(np.zeros(len(labels)), labels, patients)]
    folds = []
    for k in range(n_folds):
        val = groups[(k + 1) % n_folds]
        train = np.sort(
            np.concatenate([g for i, g in enumerate(groups) if i not in (k, (k + 1) % n_folds)])
        )
        folds.append(Fold(k, train, np.sort(val), np.sort(groups[k])))
    return folds
