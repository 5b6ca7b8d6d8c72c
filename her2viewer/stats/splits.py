"""Patient-level splits, shared by every model family's training.

Slides of one patient never span two sets, and each set keeps the share of every class
as even as possible: k-fold cross-validation (:func:`patient_folds`, scikit-learn's
``StratifiedGroupKFold``) or, for a cohort too small for it, one train/validation/test
split (:func:`patient_split`).
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


def patient_split(
    labels, patients, fractions=(0.6, 0.2, 0.2), seed: int = 0
) -> dict[str, np.ndarray]:
    """One train/validation/test split by patient, stratified by each patient's highest label.

    Every grade is represented in each set when it has enough patients, and every set gets
    at least one patient when there are three or more.

    Parameters
    ----------
    labels : array-like
        Ordinal label of each case (e.g. the IHC score).
    patients : array-like
        Patient of each case.
    fractions : (float, float, float)
        Shares of train, validation and test patients.
    seed : int
        Seed of the shuffle.

    Returns
    -------
    dict
        ``train``, ``validation`` and ``test`` case indices, in cohort order.

    Raises
    ------
    ModelError
        When there are fewer than three patients.
    """
    labels, patients = np.asarray(labels), np.asarray(patients)
    names = sorted(set(patients.tolist()))
    if len(names) < 3:
        raise ModelError(
            f"A train/validation/test split needs 3 or more patients, got {len(names)}."
        )
    rng = np.random.default_rng(seed)
    top = {p: labels[patients == p].max() for p in names}
    groups: dict[str, list[str]] = {"train": [], "validation": [], "test": []}
    for label in sorted(set(top.values())):
        members = rng.permutation([p for p in names if top[p] == label]).tolist()
        n_val = int(round(fractions[1] * len(members)))
        n_test = int(round(fractions[2] * len(members)))
        groups["validation"] += members[:n_val]
        groups["test"] += members[n_val : n_val + n_test]
        groups["train"] += members[n_val + n_test :]
    for name in ("test", "validation", "train"):
        if not groups[name]:
            donor = max(groups, key=lambda n: len(groups[n]))
            groups[name].append(groups[donor].pop())
    return {name: np.flatnonzero(np.isin(patients, ids)) for name, ids in groups.items()}
