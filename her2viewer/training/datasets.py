"""Slide-level datasets over features files, and patient-level stratified CV splits."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from her2viewer.errors import ModelError
from her2viewer.features.store import find_features, read_features

NAME_COLUMNS = ("slide_id", "case_id")
LABEL_COLUMNS = ("label", "her2_status")
PATIENT_COLUMNS = ("patient_id", "case_id")


@dataclass
class Bag:
    """One slide: its features (N, D), coordinates and class index."""

    slide_id: str
    patient_id: str
    label: int
    features: np.ndarray
    coords: np.ndarray | None


@dataclass
class Cohort:
    """Labelled bags with their class names and the encoder that made the features."""

    bags: list[Bag]
    class_names: list[str]
    encoder: dict
    patch_attrs: dict

    @property
    def labels(self) -> np.ndarray:
        """Class index per bag."""
        return np.array([b.label for b in self.bags])

    @property
    def patients(self) -> np.ndarray:
        """Patient id per bag."""
        return np.array([b.patient_id for b in self.bags])


def _pick(columns, choices, what: str, given: str | None, path: Path) -> str | None:
    if given is not None:
        if given not in columns:
            raise ModelError(f"{path.name} has no column '{given}'.")
        return given
    found = next((c for c in choices if c in columns), None)
    if found is None and what:
        raise ModelError(f"{path.name} needs a {what} column (one of {', '.join(choices)}).")
    return found


def load_cohort(
    features_dir: str | Path,
    labels_csv: str | Path,
    label_column: str | None = None,
    class_names: list[str] | None = None,
) -> Cohort:
    """Read a labels CSV and every slide's features.

    Parameters
    ----------
    features_dir : path
        Folder written by ``her2viewer extract`` (or CLAM): ``h5_files/<slide>.h5``.
    labels_csv : path
        One row per slide with a slide name (``slide_id`` or ``case_id``), a label
        (``label`` or ``her2_status``) and optionally ``patient_id``.
    label_column : str, optional
    class_names : list of str, optional
        Class order; defaults to the sorted distinct labels (negative, positive).

    Raises
    ------
    ModelError
        Missing columns or files, unknown labels, fewer than two classes, or
        features of different sizes.
    """
    path = Path(labels_csv)
    if not path.is_file():
        raise ModelError(f"Labels CSV not found: {path}.")
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    columns = list(rows[0]) if rows else []
    name_col = _pick(columns, NAME_COLUMNS, "slide name", None, path)
    label_col = _pick(columns, LABEL_COLUMNS, "label", label_column, path)
    patient_col = _pick(columns, PATIENT_COLUMNS, "", None, path)
    names = class_names or sorted({r[label_col] for r in rows})
    if len(names) < 2:
        raise ModelError(f"{path.name}: training needs at least two classes, found {names}.")
    bags, encoders, attrs = [], set(), {}
    for row in rows:
        if row[label_col] not in names:
            raise ModelError(f"{path.name}: label '{row[label_col]}' is not one of {names}.")
        feats = read_features(find_features(features_dir, row[name_col]))
        encoders.add(feats.encoder.get("encoder_description", "{}"))
        attrs = attrs or feats.attrs
        patient = row[patient_col] if patient_col else row[name_col]
        bags.append(
            Bag(row[name_col], patient, names.index(row[label_col]), feats.features, feats.coords)
        )
    dims = {b.features.shape[1] for b in bags}
    if len(dims) > 1 or len(encoders) > 1:
        raise ModelError(f"Features in {features_dir} come from different encoders; re-extract.")
    return Cohort(bags, list(names), json.loads(encoders.pop()), attrs)


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
                f"Class {cls} has {n} patients, fewer than the {n_folds} folds; use fewer folds."
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
