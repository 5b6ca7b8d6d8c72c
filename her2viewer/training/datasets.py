"""Slide-level datasets over features files, and patient-level stratified CV splits."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

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
